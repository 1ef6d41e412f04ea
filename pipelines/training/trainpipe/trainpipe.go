// Package trainpipe builds and runs Tandem's training pipeline: for every
// row of a spine (labelled examples: entity keys, an instant, any other
// columns) it computes the requested features of one or more feature sets
// at the row's instant under the window contract (schemas.Feature.Span),
// from the raw events of each set's batch source, and writes one output row
// per spine row: the spine's columns unchanged, then one column per feature,
// <featureset>__<feature>.
//
// The values are those the server returns for the same entity and instant:
// the same tile boundaries, the same aggregation algebra, the same merge
// order (see Sweep). Per entity the work is a sort and a sweep, not spine
// rows × events; entities are spread over workers by a CoGroupByKey per
// feature set.
//
// Command pipelines/training turns flags into a Config and calls Run;
// tests and scripts build or run the same pipeline in process.
package trainpipe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/tandem-fp/tandem/pipelines/batch/batchpipe"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms"
	"github.com/tandem-fp/tandem/transforms/bigqueryread"
	"github.com/tandem-fp/tandem/transforms/bigquerywrite"
)

// ErrConfig matches, with errors.Is, every error Prepare and Build return
// for a Config that cannot make a pipeline.
var ErrConfig = errors.New("trainpipe: bad config")

// DeadLetterSet is the Set of the dead letters of spine rows.
const DeadLetterSet = "spine"

// Request asks for features of one feature set, keyed by a spine column.
type Request struct {
	Set *schemas.FeatureSet
	// Keys are the spine columns holding the parts of the set's entity
	// key, in key order (one for a single key); by default the set's key
	// field names (card_id; user_id and merchant). A spine row joins the
	// set's events on all of them.
	Keys []string
	// Features are the names of the features wanted, stored or derived, in
	// output order; by default every feature of the set, in definition
	// order, then its derived features.
	Features []string
	// Source is where the set's events come from; by default the set's
	// sources.batch.
	Source schemas.BatchSource

	feats []int // output indexes of Features (schemas.FeatureSet.Output)
}

// Output is where the training rows go: files (Path) or a BigQuery table
// (Table).
type Output struct {
	// Path is a local path or gs://...; its extension says the format
	// (.parquet, .csv, .jsonl/.ndjson/.json).
	Path string
	// Table, instead of Path, is a BigQuery table, "project.dataset.table",
	// written through the Storage Write API in one atomic commit (see
	// writeBigQuery); Prepare creates it if it does not exist.
	Table string
	// Disposition says what to do when Table already has rows (default
	// bigquerywrite.WriteEmpty: fail).
	Disposition bigquerywrite.Disposition
	// Shards is the number of files written (default 1: Path itself; more:
	// Path with -SSSSS-of-NNNNN before the extension), or of BigQuery
	// write streams.
	Shards int
}

// Config is everything one training run needs.
type Config struct {
	Requests []Request
	// SpineGlob names the spine files (CSV with a header, JSON lines or
	// Parquet, by extension; local or gs://), SpineTime the column of the
	// rows' instants (default "ts").
	SpineGlob string
	// SpineBigQuery, instead of SpineGlob, is a BigQuery table or query
	// whose rows are the spine (see ProbeBigQuerySpine); reached with
	// BigQuery.
	SpineBigQuery bigqueryread.Source
	SpineTime     string
	Output        Output
	// DeadLetter is the path prefix of the dead-letter file
	// <DeadLetter>.jsonl: spine rows without a key or a valid time, and
	// events that do not decode.
	DeadLetter string
	// BigQuery is how to reach BigQuery, for BigQuery event sources.
	BigQuery batchpipe.BigQueryConfig
	// Service, when set, is the feature service the requests are (its
	// entries, in order, with their features): its own derived features
	// are written after the features (see derived.go).
	Service *schemas.Service

	// Spine is what Prepare learned from the spine; Build needs it.
	Spine *Spine
}

// Prepare validates cfg, fills in its defaults and reads the spine once
// (ProbeSpine) for its columns and the range of its instants. Build and Run
// take the prepared Config; Run prepares it if it was not.
func Prepare(ctx context.Context, cfg *Config) error {
	if len(cfg.Requests) == 0 {
		return fmt.Errorf("%w: no feature set requested", ErrConfig)
	}
	bqSpine := cfg.SpineBigQuery != (bigqueryread.Source{})
	if cfg.SpineGlob == "" && !bqSpine {
		return fmt.Errorf("%w: no spine", ErrConfig)
	}
	if cfg.SpineGlob != "" && bqSpine {
		return fmt.Errorf("%w: a spine of files and a BigQuery spine; want one", ErrConfig)
	}
	if cfg.SpineTime == "" {
		cfg.SpineTime = "ts"
	}
	if err := checkOutput(cfg.Output); err != nil {
		return err
	}
	if cfg.Output.Shards == 0 {
		cfg.Output.Shards = 1
	}
	if cfg.Output.Shards < 0 || cfg.Output.Shards > 10_000 {
		return fmt.Errorf("%w: output shards %d out of range [1, 10000]", ErrConfig, cfg.Output.Shards)
	}
	if cfg.DeadLetter == "" {
		return fmt.Errorf("%w: no dead-letter path", ErrConfig)
	}
	seen := map[string]bool{}
	for i := range cfg.Requests {
		r := &cfg.Requests[i]
		if r.Set == nil {
			return fmt.Errorf("%w: request %d has no feature set", ErrConfig, i)
		}
		if seen[r.Set.Name] {
			return fmt.Errorf("%w: feature set %s requested twice", ErrConfig, r.Set.Name)
		}
		seen[r.Set.Name] = true
		if len(r.Keys) == 0 {
			r.Keys = slices.Clone(r.Set.Entity.Keys)
		}
		if len(r.Keys) != len(r.Set.Entity.Keys) {
			return fmt.Errorf("%w: feature set %s is keyed by %s: give %d spine key columns, not %d",
				ErrConfig, r.Set.Name, r.Set.Entity.KeyName(), len(r.Set.Entity.Keys), len(r.Keys))
		}
		if len(r.Features) == 0 {
			for i := range r.Set.Outputs() {
				r.Features = append(r.Features, r.Set.OutputName(i))
			}
		}
		r.feats = r.feats[:0]
		for _, name := range r.Features {
			o, ok := r.Set.Output(name)
			if !ok {
				return fmt.Errorf("%w: feature set %s has no feature %q", ErrConfig, r.Set.Name, name)
			}
			if slices.Contains(r.feats, o) {
				return fmt.Errorf("%w: feature %s.%s requested twice", ErrConfig, r.Set.Name, name)
			}
			r.feats = append(r.feats, o)
		}
		if r.Source == (schemas.BatchSource{}) {
			src, err := batchpipe.DefaultSource(r.Set)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrConfig, err)
			}
			r.Source = src
		}
		if err := batchpipe.CheckSource(r.Source, cfg.BigQuery); err != nil {
			return err
		}
	}
	if cfg.Spine == nil {
		probe := func() (*Spine, error) { return ProbeSpine(ctx, cfg.SpineGlob, cfg.SpineTime) }
		if bqSpine {
			probe = func() (*Spine, error) { return ProbeBigQuerySpine(ctx, cfg.SpineBigQuery, cfg.SpineTime, cfg.BigQuery) }
		}
		sp, err := probe()
		if err != nil {
			return err
		}
		cfg.Spine = sp
	}
	names := map[string]bool{}
	for _, c := range cfg.Spine.Columns {
		names[c.Name] = true
	}
	for _, r := range cfg.Requests {
		for _, key := range r.Keys {
			i := slices.IndexFunc(cfg.Spine.Columns, func(c Column) bool { return c.Name == key })
			if i < 0 {
				return fmt.Errorf("%w: the spine has no column %q, the key of feature set %s (its columns: %s)",
					ErrConfig, key, r.Set.Name, columnNames(cfg.Spine.Columns))
			}
			if t := cfg.Spine.Columns[i].Type; t != schemas.String && t != schemas.Int64 {
				return fmt.Errorf("%w: spine column %q, the key of feature set %s, holds %s values; a key is a string or an integer",
					ErrConfig, key, r.Set.Name, t)
			}
		}
		for _, o := range r.feats {
			if name := schemas.FeatureColumn(r.Set.Name, r.Set.OutputName(o)); names[name] {
				return fmt.Errorf("%w: the spine already has a column %q", ErrConfig, name)
			}
		}
	}
	if cfg.Service != nil {
		if err := cfg.checkService(); err != nil {
			return err
		}
		for _, c := range cfg.derivedColumns() {
			if names[c.Name] {
				return fmt.Errorf("%w: the spine already has a column %q", ErrConfig, c.Name)
			}
		}
	}
	if cfg.Output.Table != "" {
		return prepareBigQueryOutput(ctx, cfg)
	}
	return nil
}

// checkOutput reports an output that is not exactly one of files of a
// known format or a BigQuery table.
func checkOutput(o Output) error {
	switch {
	case o.Path != "" && o.Table != "":
		return fmt.Errorf("%w: an output path and an output table; want one", ErrConfig)
	case o.Table != "":
		_, _, _, err := bigquerywrite.SplitTable(o.Table)
		if err != nil {
			return fmt.Errorf("%w: output: %w", ErrConfig, err)
		}
		return nil
	case o.Path == "":
		return fmt.Errorf("%w: no output path", ErrConfig)
	}
	if _, err := FormatOf(o.Path); err != nil {
		return err
	}
	if strings.HasSuffix(strings.ToLower(o.Path), ".gz") {
		return fmt.Errorf("%w: output %q: compressed output is not supported; write .parquet for compact files", ErrConfig, o.Path)
	}
	return nil
}

// Columns returns the output columns of a prepared cfg: the spine's, then
// one per requested feature, typed by the feature's result type.
func (cfg *Config) Columns() []Column {
	cols := slices.Clone(cfg.Spine.Columns)
	for _, r := range cfg.Requests {
		for _, o := range r.feats {
			if o >= len(r.Set.Features) {
				cols = append(cols, Column{Name: schemas.FeatureColumn(r.Set.Name, r.Set.OutputName(o)), Type: r.Set.OutputType(o)})
				continue
			}
			cols = append(cols, featureColumn(r.Set.Name, r.Set.Features[o]))
		}
	}
	return append(cols, cfg.derivedColumns()...)
}

// ReadRange is the event-time range [from, to) read for a request: from
// the earliest spine instant less the longest window and the largest tile
// of the requested features (the oldest whole tile any row's window can
// start at), to the latest spine instant (no value counts an event at or
// after its instant).
func (cfg *Config) ReadRange(r Request) (from, to time.Time) {
	var w, t time.Duration
	for _, fi := range r.Set.StoredInputs(r.feats) {
		w, t = max(w, r.Set.Features[fi].Window), max(t, r.Set.Features[fi].Tile)
	}
	from = time.UnixMicro(cfg.Spine.MinAt).Add(-w - t).UTC()
	return from, time.UnixMicro(cfg.Spine.MaxAt).UTC()
}

// Build adds the training pipeline of a prepared cfg to s:
//
//	spine files → rows (bad ones → dead letters) ───────────────────────┐
//	per feature set: events (files or BigQuery, the range pushed down)   │
//	    → CoGroupByKey by entity with the rows' queries → sort and sweep │
//	→ (several sets: CoGroupByKey by row ID with the rows) ←─────────────┘
//	→ output files, or a BigQuery table (one atomic commit of every
//	  shard's stream); dead letters → <dead_letter>.jsonl; a run with no
//	  usable spine row fails
func Build(s beam.Scope, cfg *Config) error {
	if cfg.Spine == nil {
		return fmt.Errorf("%w: the config is not prepared (no spine)", ErrConfig)
	}
	var files []string
	if cfg.Spine.Table == "" {
		var err error
		if files, err = spineFiles(context.Background(), cfg.SpineGlob); err != nil {
			return err
		}
	}
	cols := cfg.Columns()
	rows, spineDead := readSpine(s.Scope("Spine"), cfg, files)
	single := len(cfg.Requests) == 1
	var out beam.PCollection
	var perSet []beam.PCollection
	dead := []beam.PCollection{spineDead}
	offset := len(cfg.Spine.Columns)
	for ri, r := range cfg.Requests {
		rs := s.Scope("Features_" + r.Set.Name)
		from, to := cfg.ReadRange(r)
		events, evDead, err := batchpipe.ReadEvents(rs.Scope("Read"), r.Set, r.Source, cfg.BigQuery, from, to)
		if err != nil {
			return err
		}
		dead = append(dead, evDead)
		vals := computeFeatures(rs, cfg, ri, offset, single, from, to, events, rows)
		if single {
			out = vals
		} else {
			perSet = append(perSet, vals)
		}
		offset += len(r.feats)
	}
	if !single {
		out = joinRows(s.Scope("Join"), len(cols)-len(cfg.derivedColumns()), rows, beam.Flatten(s, perSet...))
	}
	if len(cfg.derivedColumns()) > 0 {
		out = deriveRows(s, cfg, out)
	}
	var written beam.PCollection
	if cfg.Output.Table != "" {
		written = writeBigQuery(s.Scope("Write"), cfg, cols, out)
	} else {
		written = writeRows(s.Scope("Write"), cfg.Output, cols, out)
	}
	deadWritten := batchpipe.WriteDeadLetters(s.Scope("DeadLetters"), "training", cfg.DeadLetter+".jsonl", beam.Flatten(s, dead...))
	checkRun(s.Scope("Check"), cfg.DeadLetter+".jsonl", written, deadWritten)
	return nil
}

// Result is what a run did, from the pipeline's metrics.
type Result struct {
	// DryRun is true when the runner only printed the job.
	DryRun bool
	// SpineRows read; of them DeadRows went to the dead-letter file.
	SpineRows, DeadRows int64
	// Rows written to the output, Files the output files.
	Rows  int64
	Files []string
	// Counters holds every counter of namespace transforms.MetricsNamespace.
	Counters map[string]int64
	Elapsed  time.Duration
}

// Run prepares cfg if needed, builds the pipeline and runs it on the runner
// named by Beam's --runner flag (prism by default), and returns its metrics.
func Run(ctx context.Context, cfg *Config) (Result, error) {
	var res Result
	if cfg.Spine == nil {
		if err := Prepare(ctx, cfg); err != nil {
			return res, err
		}
	}
	p, s := beam.NewPipelineWithRoot()
	if err := Build(s, cfg); err != nil {
		return res, err
	}
	res.Files = OutputFiles(cfg.Output)
	slog.Info("training: spine", "source", cfg.Spine.Glob, "format", cfg.Spine.Format, "columns", len(cfg.Spine.Columns),
		"rows", cfg.Spine.Rows, "from", time.UnixMicro(cfg.Spine.MinAt).UTC().Format(time.RFC3339Nano), "to", time.UnixMicro(cfg.Spine.MaxAt).UTC().Format(time.RFC3339Nano))
	for _, r := range cfg.Requests {
		from, to := cfg.ReadRange(r)
		slog.Info("training: features", "set", r.Set.Name, "key", r.Keys, "features", len(r.feats),
			"source", batchpipe.SourceString(r.Source), "from", from.Format(time.RFC3339), "to", to.Format(time.RFC3339Nano))
	}
	start := time.Now()
	pr, err := beamx.RunWithMetrics(ctx, p)
	res.Elapsed = time.Since(start)
	if err != nil {
		return res, fmt.Errorf("training run: %w", err)
	}
	if pr == nil {
		res.DryRun = true
		return res, nil
	}
	res.Counters = batchpipe.Counters(pr)
	res.SpineRows = res.Counters["training_spine_rows"]
	res.DeadRows = res.Counters["training_spine_dead_letters"]
	res.Rows = res.Counters["training_rows_written"]
	if cfg.Output.Table != "" {
		res.Rows = res.Counters["bigquery_rows_committed"]
	}
	return res, nil
}

// Log writes the result to the log.
func (r Result) Log() {
	if r.DryRun {
		slog.Info("training: dry run, job not submitted")
		return
	}
	secs := max(r.Elapsed.Seconds(), 1e-9)
	slog.Info("training: done", "elapsed", r.Elapsed.Round(time.Millisecond), "spine_rows", r.SpineRows,
		"dead_rows", r.DeadRows, "rows_written", r.Rows, "rows_per_s", int64(float64(r.Rows)/secs), "output", strings.Join(r.Files, ","))
	names := make([]string, 0, len(r.Counters))
	for n := range r.Counters {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		slog.Info("training: metric", "name", transforms.MetricsNamespace+"/"+n, "value", r.Counters[n])
	}
}

// OutputFiles lists the files an output writes (for a BigQuery output,
// "bq:" and its table).
func OutputFiles(o Output) []string {
	if o.Table != "" {
		return []string{"bq:" + o.Table}
	}
	n := max(o.Shards, 1)
	if n == 1 {
		return []string{o.Path}
	}
	ext := filepath.Ext(o.Path)
	base := strings.TrimSuffix(o.Path, ext)
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%05d-of-%05d%s", base, i, n, ext)
	}
	return out
}
