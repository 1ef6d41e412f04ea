package trainpipe

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/apache/arrow/go/v15/parquet/file"
	"github.com/apache/arrow/go/v15/parquet/pqarrow"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/filesystem"

	"github.com/tandem-fp/tandem/pipelines/batch/batchpipe"
	"github.com/tandem-fp/tandem/schemas"
)

// Format is the format of spine and output files, told by the extension.
type Format int

// The file formats.
const (
	CSV       Format = iota // .csv, a header line then one record a row
	JSONLines               // .jsonl, .ndjson, .json: one JSON object a line
	Parquet                 // .parquet
	BigQuery                // a BigQuery table, not a file
)

func (f Format) String() string {
	switch f {
	case CSV:
		return "csv"
	case JSONLines:
		return "jsonl"
	case BigQuery:
		return "bigquery"
	}
	return "parquet"
}

// FormatOf tells the format of a file or glob from its extension (after
// an optional .gz, which Parquet does not take: it compresses inside).
func FormatOf(path string) (Format, error) {
	gz := strings.HasSuffix(strings.ToLower(path), ".gz")
	ext := strings.ToLower(filepath.Ext(strings.TrimSuffix(path, ".gz")))
	switch {
	case ext == ".csv":
		return CSV, nil
	case ext == ".jsonl" || ext == ".ndjson" || ext == ".json":
		return JSONLines, nil
	case ext == ".parquet" && !gz:
		return Parquet, nil
	}
	return 0, fmt.Errorf("%w: %q: cannot tell the format from the extension %q; name files .csv (CSV with a header), .jsonl, .ndjson or .json (JSON lines), optionally .gz, or .parquet",
		ErrConfig, path, ext)
}

// Column is a named, typed column of the spine or of the output.
type Column struct {
	Name string       `json:"name"`
	Type schemas.Type `json:"type"`
	// Elem is the element type of a List or Counts column (last_k,
	// first_k, top_k): the feature's field type.
	Elem schemas.Type `json:"elem,omitempty"`
	// Keys are the percentile names of a Quantiles column
	// (approx_percentile), in the definition's order.
	Keys []string `json:"keys,omitempty"`
}

// Spine is what the launcher learns from reading the spine once: its
// columns, in order, and the range of its instants, which bounds the
// event history every feature set is read for.
type Spine struct {
	Glob    string   `json:"glob"`
	Format  Format   `json:"format"`
	Columns []Column `json:"columns"`
	// Time is the index in Columns of the time column.
	Time int `json:"time"`
	// Table is the BigQuery table of a BigQuery spine (a query's result
	// table for a query), read as of Snapshot unless that is zero.
	Table    string    `json:"table,omitempty"`
	Snapshot time.Time `json:"snapshot,omitempty"`
	// MinAt and MaxAt are the earliest and latest instants of rows whose
	// time parses (Unix microseconds); Rows counts those rows.
	MinAt, MaxAt int64 `json:"-"`
	Rows         int64 `json:"-"`
}

// Row is one spine row: its ID, unique in the run (row number and file),
// its values, one per spine column, its instant (Unix microseconds) and
// the entity key of each request.
type Row struct {
	ID     string
	Values []schemas.Value
	At     int64
	Keys   []string
}

// record is one row as a file gives it: its column names (shared by every
// record of a CSV or Parquet file), values, and the raw text for a dead
// letter. num counts rows from 1 in the file; line is the line it starts on
// (CSV, JSON lines) or num (Parquet).
type record struct {
	names []string
	vals  []schemas.Value
	raw   func() []byte
	num   int64
	line  int
}

// spineFiles lists the files glob matches, sorted; a glob that matches
// nothing is an error.
func spineFiles(ctx context.Context, glob string) ([]string, error) {
	fsys, err := filesystem.New(ctx, glob)
	if err != nil {
		return nil, fmt.Errorf("%w: spine %q: %w", ErrConfig, glob, err)
	}
	defer fsys.Close()
	files, err := fsys.List(ctx, glob)
	if err != nil {
		return nil, fmt.Errorf("spine %q: %w", glob, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: spine %q: no file matches", ErrConfig, glob)
	}
	slices.Sort(files)
	return files, nil
}

// readSpineFile calls fn for each record of the spine file at path.
func readSpineFile(ctx context.Context, path string, f Format, fn func(record) error) error {
	fsys, err := filesystem.New(ctx, path)
	if err != nil {
		return fmt.Errorf("spine %s: %w", path, err)
	}
	defer fsys.Close()
	rc, err := fsys.OpenRead(ctx, path)
	if err != nil {
		return fmt.Errorf("open spine %s: %w", path, err)
	}
	defer rc.Close()
	var r io.Reader = rc
	if strings.HasSuffix(strings.ToLower(path), ".gz") {
		gz, err := gzip.NewReader(rc)
		if err != nil {
			return fmt.Errorf("spine %s: %w", path, err)
		}
		defer gz.Close()
		r = gz
	}
	switch f {
	case CSV:
		err = readCSV(r, fn)
	case JSONLines:
		err = readJSONLines(r, fn)
	default:
		err = readParquet(r, fn)
	}
	if err != nil {
		return fmt.Errorf("spine %s: %w", path, err)
	}
	return nil
}

// errRecord marks an error in one record, which makes it a dead letter
// rather than failing the read.
type errRecord struct{ reason string }

func (e *errRecord) Error() string { return e.reason }

func readCSV(r io.Reader, fn func(record) error) error {
	rec := batchpipe.NewRecorder(r)
	cr := csv.NewReader(rec)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("read CSV header: %w", err)
	}
	names := make([]string, len(header))
	for i, h := range header {
		names[i] = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		if slices.Contains(names[:i], names[i]) {
			return fmt.Errorf("CSV header: column %q appears twice", names[i])
		}
	}
	rec.Consumed(cr.InputOffset())
	for n := int64(1); ; n++ {
		fields, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		raw := rec.Consumed(cr.InputOffset())
		out := record{names: names, num: n, raw: func() []byte { return raw }}
		var pe *csv.ParseError
		switch {
		case errors.As(err, &pe):
			out.line = pe.StartLine
			out.vals = nil
			if err := fn(withError(out, fmt.Sprintf("bad CSV: %v", pe.Err))); err != nil {
				return err
			}
			continue
		case err != nil:
			return err
		}
		out.line, _ = cr.FieldPos(0)
		if len(fields) != len(names) {
			if err := fn(withError(out, fmt.Sprintf("record has %d fields, the header %d", len(fields), len(names)))); err != nil {
				return err
			}
			continue
		}
		out.vals = make([]schemas.Value, len(fields))
		for i, s := range fields {
			out.vals[i] = schemas.StringValue(s)
		}
		if err := fn(out); err != nil {
			return err
		}
	}
}

// withError returns rec marked bad: names nil and the reason as its only
// value.
func withError(rec record, reason string) record {
	rec.names = nil
	rec.vals = []schemas.Value{schemas.StringValue(reason)}
	return rec
}

// badRecord reports whether rec is marked bad, and why.
func badRecord(rec record) (string, bool) {
	if rec.names == nil {
		return rec.vals[0].Str, true
	}
	return "", false
}

func readJSONLines(r io.Reader, fn func(record) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	var n int64
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		n++
		raw := bytes.Clone(b)
		out := record{num: n, line: line, raw: func() []byte { return raw }}
		names, vals, err := parseJSONObject(raw)
		if err != nil {
			out = withError(out, err.Error())
		} else {
			out.names, out.vals = names, vals
		}
		if err := fn(out); err != nil {
			return err
		}
	}
	return sc.Err()
}

// parseJSONObject reads one JSON object's members in order: strings,
// booleans and null as such, integer literals that fit int64 as int64,
// other numbers as float64, and objects and arrays as their JSON text.
func parseJSONObject(b []byte) (names []string, vals []schemas.Value, err error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, fmt.Errorf("invalid JSON: want an object")
	}
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("invalid JSON: %v", err)
		}
		name := tok.(string)
		var raw json.RawMessage
		if err := d.Decode(&raw); err != nil {
			return nil, nil, fmt.Errorf("invalid JSON: member %q: %v", name, err)
		}
		if i := slices.Index(names, name); i >= 0 { // the last one counts
			names, vals = slices.Delete(names, i, i+1), slices.Delete(vals, i, i+1)
		}
		names = append(names, name)
		vals = append(vals, jsonValue(raw))
	}
	if _, err := d.Token(); err != nil {
		return nil, nil, fmt.Errorf("invalid JSON: %v", err)
	}
	if d.More() {
		return nil, nil, fmt.Errorf("invalid JSON: data after the object")
	}
	return names, vals, nil
}

func jsonValue(raw json.RawMessage) schemas.Value {
	switch c := raw[0]; {
	case c == 'n':
		return schemas.Value{}
	case c == 't' || c == 'f':
		return schemas.BoolValue(c == 't')
	case c == '"':
		var s string
		json.Unmarshal(raw, &s) //nolint:errcheck // the decoder checked it
		return schemas.StringValue(s)
	case c == '{' || c == '[':
		return schemas.StringValue(string(raw))
	}
	if i, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return schemas.Int64Value(i)
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil { // out of float64's range
		return schemas.StringValue(string(raw))
	}
	return schemas.Float64Value(f)
}

func readParquet(r io.Reader, fn func(record) error) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	pf, err := file.NewParquetReader(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("read Parquet: %w", err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 64 << 10}, memory.DefaultAllocator)
	if err != nil {
		return fmt.Errorf("read Parquet: %w", err)
	}
	rr, err := fr.GetRecordReader(context.Background(), nil, nil)
	if err != nil {
		return fmt.Errorf("read Parquet: %w", err)
	}
	defer rr.Release()
	schema := rr.Schema()
	names := make([]string, schema.NumFields())
	for i, f := range schema.Fields() {
		names[i] = f.Name
		if _, err := arrowColumnType(f.Type); err != nil {
			return fmt.Errorf("column %q: %w", f.Name, err)
		}
	}
	var n int64
	for rr.Next() {
		rec := rr.Record()
		for i := range int(rec.NumRows()) {
			n++
			vals := make([]schemas.Value, len(names))
			for j := range names {
				vals[j] = arrowValue(rec.Column(j), i)
			}
			out := record{names: names, vals: vals, num: n, line: int(n)}
			out.raw = func() []byte { return rowJSON(names, vals) }
			if err := fn(out); err != nil {
				return err
			}
		}
	}
	if err := rr.Err(); err != nil && err != io.EOF {
		return fmt.Errorf("read Parquet: %w", err)
	}
	return nil
}

// arrowColumnType is the spine column type of an Arrow (Parquet) type.
func arrowColumnType(t arrow.DataType) (schemas.Type, error) {
	switch t.ID() {
	case arrow.STRING, arrow.LARGE_STRING:
		return schemas.String, nil
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8, arrow.UINT16, arrow.UINT32:
		return schemas.Int64, nil
	case arrow.FLOAT32, arrow.FLOAT64:
		return schemas.Float64, nil
	case arrow.BOOL:
		return schemas.Bool, nil
	case arrow.TIMESTAMP, arrow.DATE32:
		return schemas.Timestamp, nil
	case arrow.DECIMAL128, arrow.DECIMAL256: // exact, as text
		return schemas.String, nil
	}
	return schemas.Null, fmt.Errorf("type %s is not supported in a spine (want string, integer, float, bool, timestamp, date or decimal)", t)
}

// arrowValue is value i of col as a spine value.
func arrowValue(col arrow.Array, i int) schemas.Value {
	if col.IsNull(i) {
		return schemas.Value{}
	}
	switch c := col.(type) {
	case *array.String:
		return schemas.StringValue(strings.Clone(c.Value(i)))
	case *array.LargeString:
		return schemas.StringValue(strings.Clone(c.Value(i)))
	case *array.Int8:
		return schemas.Int64Value(int64(c.Value(i)))
	case *array.Int16:
		return schemas.Int64Value(int64(c.Value(i)))
	case *array.Int32:
		return schemas.Int64Value(int64(c.Value(i)))
	case *array.Int64:
		return schemas.Int64Value(c.Value(i))
	case *array.Uint8:
		return schemas.Int64Value(int64(c.Value(i)))
	case *array.Uint16:
		return schemas.Int64Value(int64(c.Value(i)))
	case *array.Uint32:
		return schemas.Int64Value(int64(c.Value(i)))
	case *array.Float32:
		return schemas.Float64Value(float64(c.Value(i)))
	case *array.Float64:
		return schemas.Float64Value(c.Value(i))
	case *array.Boolean:
		return schemas.BoolValue(c.Value(i))
	case *array.Timestamp:
		unit := c.DataType().(*arrow.TimestampType).Unit
		return schemas.Value{Type: schemas.Timestamp, Int: ceilMicros(c.Value(i).ToTime(unit))}
	case *array.Date32:
		return schemas.TimestampValue(c.Value(i).ToTime())
	case *array.Decimal128:
		return schemas.StringValue(decimalString(c.Value(i).BigInt(), c.DataType().(*arrow.Decimal128Type).Scale))
	case *array.Decimal256:
		return schemas.StringValue(decimalString(c.Value(i).BigInt(), c.DataType().(*arrow.Decimal256Type).Scale))
	}
	return schemas.StringValue(col.ValueStr(i))
}

// decimalString is the exact decimal unscaled × 10^-scale, without
// trailing zeros after the point: 1250000001, 9 → "1.250000001".
func decimalString(unscaled *big.Int, scale int32) string {
	neg := unscaled.Sign() < 0
	digits := new(big.Int).Abs(unscaled).String()
	if scale > 0 {
		if pad := int(scale) + 1 - len(digits); pad > 0 {
			digits = strings.Repeat("0", pad) + digits
		}
		point := len(digits) - int(scale)
		digits = strings.TrimRight(digits[:point]+"."+digits[point:], "0")
		digits = strings.TrimSuffix(digits, ".")
	} else if scale < 0 {
		digits += strings.Repeat("0", int(-scale))
	}
	if neg {
		digits = "-" + digits
	}
	return digits
}

// rowJSON is a row as a JSON object, for a dead letter.
func rowJSON(names []string, vals []schemas.Value) []byte {
	b := []byte{'{'}
	for i, n := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = schemas.AppendJSONString(b, n)
		b = append(b, ':')
		b = appendJSON(b, vals[i])
	}
	return append(b, '}')
}

// ceilMicros is t in Unix microseconds, rounded up: an event (whose time
// has microsecond resolution) is before ceilMicros(t) exactly when it is
// before t.
func ceilMicros(t time.Time) int64 {
	u := t.UnixMicro()
	if t.Sub(time.UnixMicro(u)) > 0 {
		u++
	}
	return u
}

// parseInstant reads a spine row's instant: a timestamp value, or a string
// in RFC 3339 (a space instead of the T is accepted), rounded up to the
// microsecond.
func parseInstant(v schemas.Value) (int64, error) {
	switch v.Type {
	case schemas.Timestamp:
		return v.Int, nil
	case schemas.Null:
		return 0, errors.New("no time")
	case schemas.String:
		s := strings.TrimSpace(v.Str)
		if len(s) > 10 && s[10] == ' ' {
			s = s[:10] + "T" + s[11:]
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return 0, fmt.Errorf("time %q is not RFC 3339 (2006-01-02T15:04:05Z)", v.Str)
		}
		return ceilMicros(t), nil
	}
	return 0, fmt.Errorf("time is a %s, want a timestamp or an RFC 3339 string", v.Type)
}

// mergeType is the column type that holds values of types a and b: the
// other if one is null, float64 for int64 and float64, string otherwise.
func mergeType(a, b schemas.Type) schemas.Type {
	switch {
	case a == b || b == schemas.Null:
		return a
	case a == schemas.Null:
		return b
	case a == schemas.Int64 && b == schemas.Float64, a == schemas.Float64 && b == schemas.Int64:
		return schemas.Float64
	}
	return schemas.String
}

// coerce converts v to a column of type t, as mergeType allows.
func coerce(v schemas.Value, t schemas.Type) (schemas.Value, error) {
	switch {
	case v.Type == t || v.Type == schemas.Null:
		return v, nil
	case t == schemas.Float64 && v.Type == schemas.Int64:
		return schemas.Float64Value(float64(v.Int)), nil
	case t == schemas.String:
		return schemas.StringValue(textOf(v)), nil
	}
	return v, fmt.Errorf("want %s, got %s %s", t, v.Type, v)
}

// textOf formats a value the way CSV output writes it.
func textOf(v schemas.Value) string {
	switch v.Type {
	case schemas.List, schemas.Counts, schemas.Quantiles, schemas.Histogram:
		return compositeText(v)
	case schemas.Null:
		return ""
	case schemas.String:
		return v.Str
	case schemas.Int64:
		return strconv.FormatInt(v.Int, 10)
	case schemas.Float64:
		if math.IsInf(v.Float, 0) || math.IsNaN(v.Float) {
			return strconv.FormatFloat(v.Float, 'g', -1, 64)
		}
		return string(schemas.AppendJSONFloat(nil, v.Float))
	case schemas.Bool:
		return strconv.FormatBool(v.Int != 0)
	}
	return time.UnixMicro(v.Int).UTC().Format(time.RFC3339Nano)
}

// appendJSON appends v as a JSON value (NaN and infinities as null).
func appendJSON(b []byte, v schemas.Value) []byte {
	switch v.Type {
	case schemas.List, schemas.Counts, schemas.Quantiles, schemas.Histogram:
		return schemas.AppendCompositeJSON(b, v, appendJSON)
	case schemas.Null:
		return append(b, "null"...)
	case schemas.String:
		return schemas.AppendJSONString(b, v.Str)
	case schemas.Int64:
		return strconv.AppendInt(b, v.Int, 10)
	case schemas.Float64:
		return schemas.AppendJSONFloat(b, v.Float)
	case schemas.Bool:
		return strconv.AppendBool(b, v.Int != 0)
	}
	return schemas.AppendJSONString(b, time.UnixMicro(v.Int).UTC().Format(time.RFC3339Nano))
}

// ProbeSpine reads the spine files glob matches once, as the launcher does
// before it builds the pipeline: it learns the columns (a CSV file's header,
// where every column is a string; the members of a JSON-lines file in the
// order they first appear, typed by their values; a Parquet file's schema)
// and the range of the instants in column timeCol. Every file must have the
// same columns. Rows that will be dead letters are skipped.
func ProbeSpine(ctx context.Context, glob, timeCol string) (*Spine, error) {
	f, err := FormatOf(glob)
	if err != nil {
		return nil, err
	}
	files, err := spineFiles(ctx, glob)
	if err != nil {
		return nil, err
	}
	sp := &Spine{Glob: glob, Format: f, MinAt: math.MaxInt64, MaxAt: math.MinInt64}
	index := map[string]int{}
	var first []string // the column names of the first file (CSV, Parquet)
	for _, path := range files {
		var fileCols []string
		err := readSpineFile(ctx, path, f, func(rec record) error {
			if _, bad := badRecord(rec); bad {
				return nil
			}
			if f != JSONLines && fileCols == nil {
				fileCols = rec.names
				if first == nil {
					first = rec.names
				} else if !slices.Equal(first, rec.names) {
					return fmt.Errorf("%w: spine file %s has columns %v, %s has %v; every file of a spine must have the same columns",
						ErrConfig, path, rec.names, files[0], first)
				}
			}
			t := int64(math.MinInt64)
			for i, name := range rec.names {
				j, ok := index[name]
				if !ok {
					j = len(sp.Columns)
					index[name] = j
					sp.Columns = append(sp.Columns, Column{Name: name})
				}
				sp.Columns[j].Type = mergeType(sp.Columns[j].Type, rec.vals[i].Type)
				if name == timeCol {
					if at, err := parseInstant(rec.vals[i]); err == nil {
						t = at
					}
				}
			}
			if t != math.MinInt64 {
				sp.MinAt, sp.MaxAt = min(sp.MinAt, t), max(sp.MaxAt, t)
				sp.Rows++
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for i := range sp.Columns {
		if sp.Columns[i].Type == schemas.Null { // null in every row
			sp.Columns[i].Type = schemas.String
		}
	}
	var ok bool
	if sp.Time, ok = index[timeCol]; !ok {
		return nil, fmt.Errorf("%w: spine %s has no time column %q (its columns: %s); name it with --spine_time", ErrConfig, glob, timeCol, columnNames(sp.Columns))
	}
	if sp.Rows == 0 {
		return nil, fmt.Errorf("%w: spine %s has no row with a valid time in column %q", ErrConfig, glob, timeCol)
	}
	return sp, nil
}

func columnNames(cols []Column) string {
	s := make([]string, len(cols))
	for i, c := range cols {
		s[i] = c.Name
	}
	return strings.Join(s, ", ")
}
