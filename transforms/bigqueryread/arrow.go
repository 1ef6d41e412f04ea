package bigqueryread

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/civil"
	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/ipc"

	"github.com/tandem-fp/tandem/schemas"
)

// batchDecoder decodes the Arrow record batches of one read session.
type batchDecoder struct {
	schemaBytes []byte
	schema      *arrow.Schema
	cols        map[string]int // column index by name
}

// newBatchDecoder reads the session's serialized Arrow schema and checks
// that it has a column for each field of set (the session selected them).
func newBatchDecoder(set *schemas.FeatureSet, schemaBytes []byte) (*batchDecoder, error) {
	r, err := ipc.NewReader(bytes.NewReader(schemaBytes))
	if err != nil {
		return nil, fmt.Errorf("read Arrow schema: %w", err)
	}
	defer r.Release()
	d := &batchDecoder{schemaBytes: schemaBytes, schema: r.Schema(), cols: make(map[string]int)}
	for i, f := range d.schema.Fields() {
		d.cols[f.Name] = i
	}
	for _, f := range set.Fields {
		if _, ok := d.cols[f.Name]; !ok {
			return nil, fmt.Errorf("the session's schema %s has no column %q", d.schema, f.Name)
		}
	}
	return d, nil
}

// decode decodes one serialized record batch and calls fn for each row;
// it returns the number of rows.
func (d *batchDecoder) decode(batch []byte, fn func(row)) (int64, error) {
	r, err := ipc.NewReader(io.MultiReader(bytes.NewReader(d.schemaBytes), bytes.NewReader(batch)), ipc.WithSchema(d.schema))
	if err != nil {
		return 0, err
	}
	defer r.Release()
	var n int64
	for r.Next() {
		rec := r.Record()
		for i := range int(rec.NumRows()) {
			fn(row{d: d, rec: rec, i: i})
		}
		n += rec.NumRows()
	}
	return n, r.Err()
}

// row is row i of a record batch, valid during the call to decode's fn.
type row struct {
	d   *batchDecoder
	rec arrow.Record
	i   int
}

// get returns the value of column name as the Go value DecodeRecord takes;
// nil for NULL.
func (r row) get(name string) (any, bool) {
	j, ok := r.d.cols[name]
	if !ok {
		return nil, false
	}
	return value(r.rec.Column(j), r.i), true
}

// value converts value i of col to a Go value for DecodeRecord, copying
// strings out of the batch's buffers.
func value(col arrow.Array, i int) any {
	if col.IsNull(i) {
		return nil
	}
	switch c := col.(type) {
	case *array.Int64:
		return c.Value(i)
	case *array.Int32:
		return int64(c.Value(i))
	case *array.Int16:
		return int64(c.Value(i))
	case *array.Int8:
		return int64(c.Value(i))
	case *array.Float64:
		return c.Value(i)
	case *array.Float32:
		return float64(c.Value(i))
	case *array.String:
		return strings.Clone(c.Value(i))
	case *array.LargeString:
		return strings.Clone(c.Value(i))
	case *array.Boolean:
		return c.Value(i)
	case *array.Timestamp: // TIMESTAMP (UTC), DATETIME (no zone: read as UTC)
		return c.Value(i).ToTime(c.DataType().(*arrow.TimestampType).Unit)
	case *array.Date32: // DATE
		return civil.DateOf(c.Value(i).ToTime())
	case *array.Decimal128: // NUMERIC
		return new(big.Rat).SetFrac(c.Value(i).BigInt(), pow10(c.DataType().(*arrow.Decimal128Type).Scale))
	case *array.Decimal256: // BIGNUMERIC
		return new(big.Rat).SetFrac(c.Value(i).BigInt(), pow10(c.DataType().(*arrow.Decimal256Type).Scale))
	}
	return col.ValueStr(i)
}

func pow10(n int32) *big.Int { return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil) }

// json returns the row as a JSON object, for a dead letter: timestamps in
// RFC 3339, decimals as exact numbers, NaN and infinities as strings.
func (r row) json() []byte {
	m := make(map[string]any, len(r.d.cols))
	for j, f := range r.d.schema.Fields() {
		col := r.rec.Column(j)
		var v any
		switch c := col.(type) {
		case *array.Decimal128, *array.Decimal256:
			if !c.IsNull(r.i) {
				v = json.Number(c.ValueStr(r.i))
			}
		default:
			v = value(col, r.i)
		}
		switch x := v.(type) {
		case time.Time:
			v = x.Format(time.RFC3339Nano)
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				v = strconv.FormatFloat(x, 'g', -1, 64)
			}
		}
		m[f.Name] = v
	}
	b, err := json.Marshal(m)
	if err != nil { // not expected: every value above has a JSON form
		return fmt.Appendf(nil, "%v", m)
	}
	return b
}
