package trainpipe

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/tandem-fp/tandem/pipelines/batch/batchpipe"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms"
	"github.com/tandem-fp/tandem/transforms/bigqueryread"
)

func init() {
	register.DoFn4x1[context.Context, bigqueryread.Batch, func(Row), func(transforms.DeadLetter), error](&readSpineBatchFn{})
}

// ProbeBigQuerySpine learns a BigQuery spine as ProbeSpine does files: the
// columns of src's table (for a query source, of the table its query job
// writes: the job runs here, once, billed to bq.Project) in table order,
// typed from their BigQuery types (STRING; INT64; FLOAT64; BOOL;
// TIMESTAMP, DATETIME and DATE as timestamps; NUMERIC and BIGNUMERIC as
// exact decimal strings), and the range of the instants in column timeCol
// (a TIMESTAMP, or a STRING in RFC 3339), for which it reads that one
// column. A table source is read as of the probe (BigQuery time travel),
// so the pipeline reads the rows the probe saw.
func ProbeBigQuerySpine(ctx context.Context, src bigqueryread.Source, timeCol string, bq batchpipe.BigQueryConfig) (*Spine, error) {
	if err := src.Validate(); err != nil {
		return nil, fmt.Errorf("%w: spine: %w", ErrConfig, err)
	}
	opts := bq.Options()
	sp := &Spine{Glob: "bq:" + src.String(), Format: BigQuery, Table: src.Table, MinAt: math.MaxInt64, MaxAt: math.MinInt64}
	if src.Query != "" {
		if bq.Project == "" {
			return nil, fmt.Errorf("%w: a BigQuery query spine needs a billing project (--bigquery_project)", ErrConfig)
		}
		table, err := bigqueryread.RunQuery(ctx, src.Query, opts...)
		if err != nil {
			return nil, fmt.Errorf("spine query: %w", err)
		}
		sp.Table = table // a query's result does not change: no snapshot
	} else {
		// A second back, so that the instant is not ahead of BigQuery's clock.
		sp.Snapshot = time.Now().Add(-time.Second).Truncate(time.Microsecond).UTC()
		opts = append(opts, bigqueryread.SnapshotTime(sp.Snapshot))
	}
	schema, err := bigqueryread.TableSchema(ctx, sp.Table, nil, opts...)
	if err != nil {
		return nil, fmt.Errorf("spine %s: %w", sp.Table, err)
	}
	for _, f := range schema.Fields() {
		typ, err := arrowColumnType(f.Type)
		if err != nil {
			return nil, fmt.Errorf("%w: spine %s: column %q: %w", ErrConfig, sp.Table, f.Name, err)
		}
		sp.Columns = append(sp.Columns, Column{Name: f.Name, Type: typ})
	}
	sp.Time = slices.IndexFunc(sp.Columns, func(c Column) bool { return c.Name == timeCol })
	if sp.Time < 0 {
		return nil, fmt.Errorf("%w: spine %s has no time column %q (its columns: %s); name it with --spine_time", ErrConfig, sp.Table, timeCol, columnNames(sp.Columns))
	}
	if t := sp.Columns[sp.Time].Type; t != schemas.Timestamp && t != schemas.String {
		return nil, fmt.Errorf("%w: spine %s: time column %q holds %s values; want a TIMESTAMP or an RFC 3339 STRING", ErrConfig, sp.Table, timeCol, t)
	}
	err = bigqueryread.Scan(ctx, sp.Table, []string{timeCol}, func(rec arrow.Record) error {
		col := rec.Column(0)
		for i := range col.Len() {
			if at, err := parseInstant(arrowValue(col, i)); err == nil {
				sp.MinAt, sp.MaxAt = min(sp.MinAt, at), max(sp.MaxAt, at)
				sp.Rows++
			}
		}
		return nil
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("spine %s: %w", sp.Table, err)
	}
	if sp.Rows == 0 {
		return nil, fmt.Errorf("%w: spine %s has no row with a valid time in column %q", ErrConfig, sp.Table, timeCol)
	}
	return sp, nil
}

// readSpineBigQuery reads the spine's BigQuery table in parallel
// (bigqueryread.ReadBatches, as of the probe's snapshot) and checks each
// row as readSpineFn does a file's.
//
//	→ PCollection<Row>, PCollection<transforms.DeadLetter>
func readSpineBigQuery(s beam.Scope, cfg *Config, fn *readSpineFn) (rows, dead beam.PCollection) {
	opts := cfg.BigQuery.Options()
	if !cfg.Spine.Snapshot.IsZero() {
		opts = append(opts, bigqueryread.SnapshotTime(cfg.Spine.Snapshot))
	}
	batches := bigqueryread.ReadBatches(s, cfg.Spine.Table, nil, opts...)
	return beam.ParDo2(s, &readSpineBatchFn{Spine: *fn}, batches)
}

// readSpineBatchFn turns the rows of one BigQuery record batch into Rows
// or dead letters; a row's number is its offset in its read stream, from 1.
type readSpineBatchFn struct {
	Spine readSpineFn `json:"spine"`
}

func (fn *readSpineBatchFn) Setup() { fn.Spine.Setup() }

func (fn *readSpineBatchFn) ProcessElement(ctx context.Context, b bigqueryread.Batch, emit func(Row), dead func(transforms.DeadLetter)) error {
	index := fn.Spine.index()
	num := b.Offset
	return b.Each(func(rec arrow.Record) error {
		names := make([]string, rec.NumCols())
		for j := range names {
			names[j] = rec.ColumnName(j)
		}
		for i := range int(rec.NumRows()) {
			vals := make([]schemas.Value, len(names))
			for j := range names {
				vals[j] = arrowValue(rec.Column(j), i)
			}
			num++
			r := record{names: names, vals: vals, num: num, line: int(num)}
			r.raw = func() []byte { return rowJSON(names, vals) }
			fn.Spine.take(ctx, b.Stream, r, index, emit, dead)
		}
		return nil
	})
}
