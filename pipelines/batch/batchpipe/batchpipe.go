// Package batchpipe builds and runs Tandem's batch pipeline: it reads the
// event history a feature set needs (a BigQuery table or files), decodes it
// with the shared transforms (bad records go to a dead-letter file), folds
// the events into tiles with the aggregation algebra, writes the tiles to the
// batch column family of Bigtable, and writes the feature set's batch
// watermark last, only after every tile of the run is written.
//
// Command pipelines/batch turns flags into a Config and calls Run; tests and
// the local platform build or run the same pipeline in process.
package batchpipe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/transforms"
	"github.com/tandem-fp/tandem/transforms/bigtablewrite"
)

// ErrConfig matches, with errors.Is, every error Validate and Build return
// for a Config that cannot make a pipeline.
var ErrConfig = errors.New("batchpipe: bad config")

// Config is everything one batch run needs.
type Config struct {
	// Set is the feature set to compute.
	Set *schemas.FeatureSet
	// Source is where events come from: exactly one of a BigQuery table, a
	// BigQuery query, or a file glob (see ParseSource and DefaultSource).
	Source schemas.BatchSource
	// AsOf is the end of the history read (exclusive) and the batch
	// watermark the run commits. It must be a boundary of the feature set's
	// largest tile; AlignAsOf makes one.
	AsOf time.Time
	// Now is the run's processing time (time.Now when zero): events
	// stamped more than the set's max_future after it are dead-lettered
	// (stage future) rather than tiled.
	Now time.Time
	// BigQuery is how to reach BigQuery, for a BigQuery source.
	BigQuery BigQueryConfig
	// Bigtable is the table the tiles and the watermark go to.
	Bigtable bigtablestore.Config
	// DeadLetter is the path prefix of the dead-letter file: records that
	// do not decode are written, one JSON object a line, to
	// DeadLetter + ".jsonl" (a local path or gs://...). The file is written
	// only when there are dead letters.
	DeadLetter string
	// AllowEmpty lets a run that writes no tile at all commit the
	// watermark. Without it such a run fails: an empty history usually
	// means a wrong source or as_of, and committing would hide the stream
	// tiles of the whole range from the server.
	AllowEmpty bool
	// WriteOptions tune the Bigtable bulk writer.
	WriteOptions []bigtablewrite.Option
	// BeforeRun, when set, is called once the pipeline is built (the
	// source checked) and before it runs; its error stops Run. The batch
	// command checks the table there (bigtablestore.CheckTable).
	BeforeRun func(context.Context) error
}

// Validate reports what makes cfg unusable, naming the offending value.
func (cfg Config) Validate() error {
	if cfg.Set == nil {
		return fmt.Errorf("%w: no feature set", ErrConfig)
	}
	if err := CheckTiles(cfg.Set); err != nil {
		return err
	}
	if cfg.AsOf.IsZero() {
		return fmt.Errorf("%w: as_of is not set", ErrConfig)
	}
	if a := AlignAsOf(cfg.Set, cfg.AsOf); !a.Equal(cfg.AsOf) {
		return fmt.Errorf("%w: as_of %s is not a boundary of the largest tile (%s) of %s; use %s",
			ErrConfig, cfg.AsOf.UTC().Format(time.RFC3339Nano), schemas.FormatDuration(cfg.Set.MaxTile()), cfg.Set.Name, a.Format(time.RFC3339))
	}
	if err := checkSource(cfg.Source); err != nil {
		return err
	}
	if err := cfg.BigQuery.check(cfg.Source); err != nil {
		return err
	}
	if err := cfg.Bigtable.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if cfg.DeadLetter == "" {
		return fmt.Errorf("%w: no dead-letter path", ErrConfig)
	}
	return nil
}

// CheckTiles reports a feature whose tile size does not divide the feature
// set's largest tile. Batch runs end on a boundary of the largest tile, and
// every tile of the run must end there too, so that no batch tile straddles
// the watermark. Sizes from schemas.TileLadder always divide each other.
func CheckTiles(set *schemas.FeatureSet) error {
	largest := set.MaxTile()
	for _, f := range set.Features {
		if largest%f.Tile != 0 {
			return fmt.Errorf("%w: feature %s.%s: tile %s does not divide the largest tile %s of the set; batch runs need tile sizes that divide each other",
				ErrConfig, set.Name, f.Name, schemas.FormatDuration(f.Tile), schemas.FormatDuration(largest))
		}
	}
	return nil
}

// AlignAsOf returns t rounded down to a boundary of the feature set's
// largest tile: the as_of a batch run at t uses.
func AlignAsOf(set *schemas.FeatureSet, t time.Time) time.Time {
	return time.UnixMicro(schemas.TileStart(t.UnixMicro(), set.MaxTile())).UTC()
}

// ReadRange returns the event-time range [from, to) a batch run at asOf
// reads: to is asOf, and from is asOf minus the longest window and one
// largest tile, rounded down to a boundary of the largest tile, so that
// every tile written is complete and every tile a read at asOf or later
// needs from the batch side is there.
func ReadRange(set *schemas.FeatureSet, asOf time.Time) (from, to time.Time) {
	from = asOf.Add(-set.MaxWindow() - set.MaxTile())
	return AlignAsOf(set, from), asOf.UTC()
}

// DefaultDeadLetter is the dead-letter prefix used when none is given:
// dead_letter/<set>-<as_of> in the working directory, with as_of in the
// compact form 20060102T150405Z.
func DefaultDeadLetter(set string, asOf time.Time) string {
	return filepath.Join("dead_letter", set+"-"+asOf.UTC().Format("20060102T150405Z"))
}

// Build adds the batch pipeline of cfg to s:
//
//	read (BigQuery or files) → decode → not future ─→ dead-letter file ─┐
//	  → tile the events in [from, as_of), per entity                     │
//	  → row mutations (family batch) → Bigtable bulk write → commit the watermark
//
// The watermark commit waits for every write bundle and for the dead-letter
// file.
//
// It validates cfg first and returns an error naming what is wrong.
func Build(s beam.Scope, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	set := cfg.Set
	from, to := ReadRange(set, cfg.AsOf)

	events, dead, err := ReadEvents(s.Scope("Read"), set, cfg.Source, cfg.BigQuery, from, to)
	if err != nil {
		return err
	}
	now := cfg.Now
	if now.IsZero() {
		now = time.Now()
	}
	events, future := transforms.RejectFuture(s.Scope("Future"), set, now, events)
	dead = beam.Flatten(s, dead, future)
	deadWritten := WriteDeadLetters(s.Scope("DeadLetters"), set.Name, cfg.DeadLetter+".jsonl", dead)

	muts := TileRows(s.Scope("Tile"), set, schemas.FamilyBatch, from, to, events)
	written := bigtablewrite.Write(s.Scope("Write"), cfg.Bigtable, muts, cfg.WriteOptions...)
	CommitWatermark(s.Scope("Watermark"), cfg.Bigtable, set.Name, cfg.AsOf, cfg.AllowEmpty, written, deadWritten)
	return nil
}

// Result is what a run did, from the pipeline's metrics.
type Result struct {
	Set      string
	AsOf     time.Time
	From, To time.Time
	// DryRun is true when the runner only printed the job (Dataflow
	// --dry_run); nothing ran and the counts are zero.
	DryRun bool
	// Events decoded; of them, OutOfRange were outside [From, To) and skipped.
	Events, OutOfRange int64
	// DeadLetters written to the dead-letter file.
	DeadLetters int64
	// Rows and Cells (tiles) written to Bigtable, RowRetries transient
	// per-row failures retried.
	Rows, Cells, RowRetries int64
	// Committed is true when the watermark AsOf was written.
	Committed bool
	// Counters holds every counter of namespace transforms.MetricsNamespace,
	// summed over steps.
	Counters map[string]int64
	Elapsed  time.Duration
}

// Run builds the pipeline of cfg and runs it on the runner named by Beam's
// --runner flag (prism by default), waits for it to finish and returns its
// metrics. A run that fails leaves the batch watermark where it was.
func Run(ctx context.Context, cfg Config) (Result, error) {
	res := Result{AsOf: cfg.AsOf}
	if cfg.Set != nil {
		res.Set = cfg.Set.Name
		res.From, res.To = ReadRange(cfg.Set, cfg.AsOf)
	}
	p, s := beam.NewPipelineWithRoot()
	if err := Build(s, cfg); err != nil {
		return res, err
	}
	if cfg.BeforeRun != nil {
		if err := cfg.BeforeRun(ctx); err != nil {
			return res, err
		}
	}
	slog.Info("batch: reading events", "set", res.Set, "source", SourceString(cfg.Source),
		"from", res.From.Format(time.RFC3339), "to", res.To.Format(time.RFC3339))
	slog.Info("batch: writing tiles", "set", res.Set, "features", len(cfg.Set.Features),
		"table", cfg.Bigtable.String(), "family", schemas.FamilyBatch,
		"watermark", cfg.AsOf.Format(time.RFC3339), "dead_letter", cfg.DeadLetter+".jsonl")
	start := time.Now()
	pr, err := beamx.RunWithMetrics(ctx, p)
	res.Elapsed = time.Since(start)
	if err != nil {
		return res, fmt.Errorf("batch run of %s as of %s: %w", res.Set, cfg.AsOf.Format(time.RFC3339), err)
	}
	if pr == nil {
		res.DryRun = true
		return res, nil
	}
	res.Counters = Counters(pr)
	c, set := res.Counters, res.Set
	res.Events = c[set+"_events_decoded"]
	res.OutOfRange = c[set+"_events_out_of_range"]
	res.DeadLetters = c[set+"_dead_letters_written"]
	res.Rows = c["bigtable_rows_written"]
	res.Cells = c["bigtable_cells_written"]
	res.RowRetries = c["bigtable_row_retries"]
	res.Committed = c[set+"_batch_watermark_commits"] > 0
	return res, nil
}

// Counters sums the counters of Tandem's namespace by name.
func Counters(pr beam.PipelineResult) map[string]int64 {
	out := make(map[string]int64)
	for _, c := range pr.Metrics().AllMetrics().Counters() {
		if c.Namespace() == transforms.MetricsNamespace {
			out[c.Name()] += c.Result()
		}
	}
	return out
}

// Log writes the result to the log, one line per figure, counters sorted.
func (r Result) Log() {
	if r.DryRun {
		slog.Info("batch: dry run, job not submitted", "set", r.Set)
		return
	}
	secs := r.Elapsed.Seconds()
	slog.Info("batch: done", "set", r.Set, "elapsed", r.Elapsed.Round(time.Millisecond),
		"events", r.Events, "out_of_range", r.OutOfRange, "dead_letters", r.DeadLetters,
		"rows", r.Rows, "tiles", r.Cells, "row_retries", r.RowRetries,
		"events_per_s", int64(float64(r.Events)/max(secs, 1e-9)),
		"watermark_committed", r.Committed, "watermark", r.AsOf.Format(time.RFC3339))
	names := make([]string, 0, len(r.Counters))
	for n := range r.Counters {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		slog.Info("batch: metric", "name", transforms.MetricsNamespace+"/"+n, "value", r.Counters[n])
	}
}
