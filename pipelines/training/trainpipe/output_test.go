package trainpipe

import (
	"bytes"
	"testing"

	"github.com/apache/arrow/go/v15/parquet"
	"github.com/apache/arrow/go/v15/parquet/file"
	"github.com/apache/arrow/go/v15/parquet/schema"

	"github.com/tandem-fp/tandem/schemas"
)

// TestParquetSchema checks the Parquet schema the writer declares, as
// independent readers see it: a REQUIRED root (Arrow Go's default, REPEATED,
// makes hyparquet read every column as repeated and fail), OPTIONAL columns,
// strings annotated UTF8, timestamps as INT64 with the TIMESTAMP(MICROS,
// UTC) logical type.
func TestParquetSchema(t *testing.T) {
	cols := []Column{{Name: "s", Type: schemas.String}, {Name: "i", Type: schemas.Int64}, {Name: "f", Type: schemas.Float64}, {Name: "b", Type: schemas.Bool}, {Name: "t", Type: schemas.Timestamp}}
	var buf bytes.Buffer
	w, err := newParquetWriter(&buf, cols)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.write([]schemas.Value{schemas.StringValue("x"), {}, schemas.Float64Value(1.5), schemas.BoolValue(true), {Type: schemas.Timestamp, Int: 1_700_000_000_000_001}}); err != nil {
		t.Fatal(err)
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	pf, err := file.NewParquetReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	sc := pf.MetaData().Schema
	if got := sc.Root().RepetitionType(); got != parquet.Repetitions.Required {
		t.Errorf("root repetition %v, want REQUIRED", got)
	}
	want := []struct {
		phys    parquet.Type
		logical string
	}{
		{parquet.Types.ByteArray, "String"},
		{parquet.Types.Int64, "Int(bitWidth=64, isSigned=true)"},
		{parquet.Types.Double, "None"},
		{parquet.Types.Boolean, "None"},
		{parquet.Types.Int64, "Timestamp(isAdjustedToUTC=true, timeUnit=microseconds, is_from_converted_type=false, force_set_converted_type=false)"},
	}
	for i, c := range cols {
		col := sc.Column(i)
		n := col.SchemaNode().(*schema.PrimitiveNode)
		if col.Name() != c.Name || col.PhysicalType() != want[i].phys || n.RepetitionType() != parquet.Repetitions.Optional || col.LogicalType().String() != want[i].logical {
			t.Errorf("column %d: %s %v %v %s, want %s %v OPTIONAL %s", i, col.Name(), col.PhysicalType(), n.RepetitionType(), col.LogicalType(), c.Name, want[i].phys, want[i].logical)
		}
	}
}
