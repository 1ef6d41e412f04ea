package bigtablewrite

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"cloud.google.com/go/bigtable"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/stats"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/serving/servingtest"
	"github.com/tandem-fp/tandem/transforms"
)

func TestMain(m *testing.M) { ptest.Main(m) }

func init() { register.DoFn1x1[int64, error](&atLeastFn{}) }

// atLeastFn fails unless its input is at least Min.
type atLeastFn struct{ Min int64 }

func (fn *atLeastFn) ProcessElement(n int64) error {
	if n < fn.Min {
		return fmt.Errorf("rows written = %d, want at least %d", n, fn.Min)
	}
	return nil
}

// emulator starts bttest with a table of the batch, stream and meta
// families.
func emulator(t *testing.T) *servingtest.Emulator {
	t.Helper()
	emu, err := servingtest.StartEmulator(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	return emu
}

// mutations makes rows rows of cells cells each; the cells of a row come in
// two mutations, so that batches merge them.
func mutations(rows, cells int) []transforms.RowMutation {
	var out []transforms.RowMutation
	for r := range rows {
		key := fmt.Sprintf("w#e_%04d", r)
		for half := range 2 {
			m := transforms.RowMutation{RowKey: key}
			for c := half; c < cells; c += 2 {
				m.Cells = append(m.Cells, transforms.Cell{Family: schemas.FamilyBatch, Qualifier: "q", Timestamp: int64(c) * 1000, Value: []byte(fmt.Sprintf("%d/%d", r, c))})
			}
			out = append(out, m)
		}
	}
	return out
}

// countCells reads the table and returns its rows and cells, checking each
// value.
func countCells(t *testing.T, tbl *bigtable.Table) (rows, cells int) {
	t.Helper()
	err := tbl.ReadRows(context.Background(), bigtable.PrefixRange("w#"), func(r bigtable.Row) bool {
		rows++
		for _, it := range r[schemas.FamilyBatch] {
			var n int
			fmt.Sscanf(r.Key(), "w#e_%d", &n)
			if want := fmt.Sprintf("%d/%d", n, it.Timestamp/1000); string(it.Value) != want {
				t.Errorf("cell %s@%d = %q, want %q", r.Key(), it.Timestamp, it.Value, want)
			}
			cells++
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows, cells
}

func TestWrite(t *testing.T) {
	tests := []struct {
		name        string
		rows, cells int
		opts        []Option
	}{
		{"defaults", 300, 7, nil},
		{"small batches by rows", 300, 7, []Option{MaxRows(10)}},
		{"small batches by cells", 300, 7, []Option{MaxCells(20), Concurrency(3)}},
		{"small batches by bytes", 300, 7, []Option{MaxBytes(500)}},
		{"one request at a time", 300, 7, []Option{MaxRows(16), Concurrency(1)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			emu := emulator(t)
			p, s := beam.NewPipelineWithRoot()
			written := Write(s, emu.Config, beam.CreateList(s, mutations(tc.rows, tc.cells)), tc.opts...)
			// Rows are counted per request: a row split over two requests
			// counts twice, so only a lower bound holds in general.
			beam.ParDo0(s, &atLeastFn{Min: int64(tc.rows)}, stats.Sum(s, written))
			ptest.RunAndValidate(t, p)
			rows, cells := countCells(t, emu.Table)
			if rows != tc.rows || cells != tc.rows*tc.cells {
				t.Errorf("table holds %d rows, %d cells; want %d, %d", rows, cells, tc.rows, tc.rows*tc.cells)
			}
		})
	}
}

// TestWritePermanentError checks that a write the table refuses fails the
// pipeline with the row key in the message.
func TestWritePermanentError(t *testing.T) {
	tests := []struct {
		name string
		muts []transforms.RowMutation
		opts []Option
		want string
	}{
		{
			name: "unknown family",
			muts: []transforms.RowMutation{{RowKey: "w#bad", Cells: []transforms.Cell{{Family: "nope", Qualifier: "q", Value: []byte("x")}}}},
			opts: []Option{Attempts(1)},
			want: `row "w#bad"`,
		},
		{
			name: "row over the bulk limit",
			muts: mutations(1, 10),
			opts: []Option{MaxCells(4)},
			want: `row "w#e_0000": 5 cells, more than the 4`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			emu := emulator(t)
			p, s := beam.NewPipelineWithRoot()
			Write(s, emu.Config, beam.CreateList(s, tc.muts), tc.opts...)
			err := ptest.Run(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
