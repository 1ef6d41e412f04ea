// batch is Tandem's batch pipeline. For one feature set it computes every
// tile of every feature over the history a read at as_of can need, writes
// them to Bigtable, and then commits the batch watermark as_of, which tells
// the server to take tiles that start before as_of from the batch side.
//
// What it computes: the events with event time in
//
//	[as_of − longest window − largest tile, as_of)   (rounded to tile boundaries)
//
// are decoded, folded per entity, feature and tile into partial aggregates
// with the aggregation algebra (transforms.TileEvents) and written one cell
// per tile to the batch column family. Rerunning is safe: a tile's cell is
// overwritten with the same value.
//
// Inputs:
//
//   - the feature-set definition (--featureset, YAML);
//   - events from BigQuery (--source=bq:PROJECT.DATASET.TABLE, read with the
//     Storage Read API, the time range pushed down) or from files
//     (--source=files:GLOB, JSON lines .jsonl/.ndjson/.json or CSV with a
//     header .csv, optionally .gz; local paths or gs://). By default, the
//     definition's sources.batch.
//
// Outputs:
//
//   - tiles in the batch family of the Bigtable table, row <set>#<entity>,
//     qualifier <feature>@<tile>, cell timestamp = tile start;
//   - the batch watermark in the set's metadata row (meta:batch_watermark),
//     written last and only if every tile was written;
//   - a dead-letter file <dead_letter>.jsonl, one JSON object per record that
//     did not decode: {"set", "stage", "reason", "raw"};
//   - counters in namespace "tandem", printed at the end of the run.
//
// Flags:
//
//	--featureset         path of the feature-set YAML (required)
//	--source             bq:PROJECT.DATASET.TABLE or files:GLOB (default: the set's sources.batch)
//	--as_of              RFC 3339 end of the history and batch watermark (default: now),
//	                     rounded down to a boundary of the set's largest tile
//	--bigtable_project   Bigtable project (default tandem-local)
//	--bigtable_instance  Bigtable instance (default tandem)
//	--bigtable_table     Bigtable table (default features)
//	--dead_letter        path prefix of the dead-letter file (default dead_letter/<set>-<as_of>)
//	--allow_empty        commit the watermark even if the run writes no tile
//	--emulator           start an in-process Bigtable emulator with the table set up (try-out runs)
//	--bigquery_project   project of the BigQuery read sessions and query jobs (default: the table's)
//	--bigquery_max_streams  cap on the BigQuery read streams (default: BigQuery chooses)
//	--bigquery_endpoint  host:port of a Storage Read API fake (default: BigQuery)
//
// and Beam's flags: --runner (default prism, Beam's local runner; dataflow
// for Google Cloud Dataflow, with --project, --region, --staging_location,
// --temp_location, --service_account_email and, to print the job without
// submitting it, --dry_run). On Dataflow a linux/amd64 binary built with
// CGO_ENABLED=0 is its own worker binary; --worker_binary overrides.
// BIGTABLE_EMULATOR_HOST points the Bigtable client at an emulator.
//
// Try it with no cloud at all, on sample data generated around now (tiles
// older than the set's retention are garbage-collected, by Bigtable and its
// emulators alike, so the shipped March 2026 sample would not stay):
//
//	go run ./schemas/sample/cmd/gensample -n 20000 -start $(date -u -d -3days +%FT%TZ) \
//	    -end $(date -u +%FT%TZ) -out /tmp/events schemas/card_activity.yaml
//	go run ./pipelines/batch --featureset schemas/card_activity.yaml \
//	    --source files:/tmp/events/card_activity.jsonl --emulator
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners"

	"github.com/tandem-fp/tandem/pipelines/batch/batchpipe"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
)

var (
	featureSet = flag.String("featureset", "", "path of the feature-set definition (YAML); required")
	source     = flag.String("source", "", "bq:PROJECT.DATASET.TABLE or files:GLOB; default: the feature set's sources.batch")
	asOf       = flag.String("as_of", "", "end of the history read and the batch watermark, RFC 3339; default now; rounded down to a boundary of the set's largest tile")
	deadLetter = flag.String("dead_letter", "", "path prefix of the dead-letter file <prefix>.jsonl, local or gs://; default dead_letter/<set>-<as_of>")
	bqProject  = flag.String("bigquery_project", "", "project that owns the BigQuery read sessions and runs a query source's query; default the table's project")
	bqStreams  = flag.Int("bigquery_max_streams", 0, "most BigQuery read streams, the read's parallelism; 0 lets BigQuery choose")
	bqEndpoint = flag.String("bigquery_endpoint", "", "host:port of a BigQuery Storage Read API fake (plaintext, no auth); default BigQuery")
	allowEmpty = flag.Bool("allow_empty", false, "commit the watermark even if the run writes no tile")
	emulator   = flag.Bool("emulator", false, "start an in-process Bigtable emulator and set up the table in it (local runners only)")

	// bt is the table the tiles and the watermark go to
	// (--bigtable_project, --bigtable_instance, --bigtable_table).
	bt bigtablestore.Config
)

func init() { bt.RegisterFlags(flag.CommandLine) }

func main() {
	flag.Parse()
	beam.Init() // on a Dataflow worker this runs the worker and never returns
	if err := run(context.Background()); err != nil {
		if errors.Is(err, bigtablestore.ErrNoTable) {
			fmt.Fprintln(os.Stderr, "batch:", err) // one line that says what to run
		} else {
			slog.Error("batch: failed", "err", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	if *featureSet == "" {
		return errors.New("--featureset is required")
	}
	set, err := schemas.Load(*featureSet)
	if err != nil {
		return err
	}
	cfg := batchpipe.Config{
		Set:        set,
		AllowEmpty: *allowEmpty,
		BigQuery:   batchpipe.BigQueryConfig{Project: *bqProject, MaxStreams: *bqStreams, Endpoint: *bqEndpoint},
		Bigtable:   bt,
	}
	if *source == "" {
		cfg.Source, err = batchpipe.DefaultSource(set)
	} else {
		cfg.Source, err = batchpipe.ParseSource(*source)
	}
	if err != nil {
		return err
	}
	at := time.Now()
	if *asOf != "" {
		if at, err = time.Parse(time.RFC3339Nano, *asOf); err != nil {
			return fmt.Errorf("--as_of: %w", err)
		}
	}
	cfg.AsOf = batchpipe.AlignAsOf(set, at)
	if !cfg.AsOf.Equal(at) {
		slog.Info("batch: as_of rounded down to a boundary of the largest tile",
			"as_of", at.UTC().Format(time.RFC3339Nano), "tile", schemas.FormatDuration(set.MaxTile()), "aligned", cfg.AsOf.Format(time.RFC3339))
	}
	cfg.DeadLetter = *deadLetter
	if cfg.DeadLetter == "" {
		cfg.DeadLetter = batchpipe.DefaultDeadLetter(set.Name, cfg.AsOf)
	}

	if old := time.Since(cfg.AsOf.Add(-set.MaxWindow())); old > set.Retention {
		slog.Warn("batch: as_of is older than the retention allows; Bigtable (and its emulators) garbage-collect tiles that start more than the retention ago, so most of this run's tiles will disappear",
			"as_of", cfg.AsOf.Format(time.RFC3339), "retention", schemas.FormatDuration(set.Retention))
	}
	if os.Getenv("FLEX_TEMPLATE_GO_BINARY") != "" {
		// In a Flex Template launcher: the job runs on Dataflow, and the
		// launcher must exit once it is submitted.
		if *runners.Runner == "" {
			*runners.Runner = "dataflow"
		}
		if !flagSet("async") && !flagSet("execute_async") {
			*jobopts.Async = true
		}
	}
	if onDataflow() {
		useSelfAsWorker()
	}

	if *emulator {
		if r := *runners.Runner; r != "" && r != "prism" && r != "direct" {
			return fmt.Errorf("--emulator runs Bigtable in this process; it works with the local runner (prism), not --runner=%s", r)
		}
		srv, emu, err := bigtablestore.StartEmulator()
		if err != nil {
			return err
		}
		defer srv.Close()
		if err := setupTable(ctx, emu, set); err != nil {
			return err
		}
		cfg.Bigtable = emu
		slog.Info("batch: in-process Bigtable emulator started", "addr", emu.Endpoint)
	}

	// The table and its families must exist before any Beam work, or the
	// run would fail at its first write, deep in a runner's stack trace.
	// A dry run needs no table (nor credentials).
	if !dryRun() {
		cfg.BeforeRun = func(ctx context.Context) error {
			return bigtablestore.CheckTable(ctx, cfg.Bigtable, []*schemas.FeatureSet{set})
		}
	}
	res, err := batchpipe.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *jobopts.Async && !res.DryRun {
		slog.Info("batch: job submitted; it commits the watermark as its last step", "set", set.Name, "as_of", cfg.AsOf.Format(time.RFC3339))
		return nil
	}
	res.Log()
	if !res.DryRun && !onDataflow() {
		reportWatermark(ctx, cfg)
	}
	return nil
}

// onDataflow reports whether --runner names Dataflow.
func onDataflow() bool {
	r := strings.ToLower(*runners.Runner)
	return r == "dataflow" || r == "dataflowrunner"
}

// dryRun reports whether --dry_run (Dataflow: print the job, do not submit
// it) is set.
func dryRun() bool {
	f := flag.Lookup("dry_run")
	return f != nil && f.Value.String() == "true"
}

// flagSet reports whether the named flag was given.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// useSelfAsWorker makes this binary Dataflow's worker binary when it can be
// one (linux/amd64, no cgo, as the Flex Template image builds it) and
// --worker_binary is not given, so submitting needs no Go toolchain.
// Otherwise Beam compiles a worker from the source it runs from.
func useSelfAsWorker() {
	if *jobopts.WorkerBinary != "" || runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		return
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	for _, s := range bi.Settings {
		if s.Key == "CGO_ENABLED" && s.Value != "0" {
			return
		}
	}
	self, err := os.Executable()
	if err != nil {
		return
	}
	*jobopts.WorkerBinary = self
	slog.Info("batch: this binary is the Dataflow worker", "worker_binary", self)
}

// setupTable creates the table and its families in an emulator.
func setupTable(ctx context.Context, cfg bigtablestore.Config, set *schemas.FeatureSet) error {
	ac, err := cfg.NewAdminClient(ctx)
	if err != nil {
		return err
	}
	defer ac.Close()
	did, err := bigtablestore.EnsureTable(ctx, ac, cfg.Table, []*schemas.FeatureSet{set})
	for _, d := range did {
		slog.Info("batch: emulator table: " + d)
	}
	return err
}

// reportWatermark logs the batch watermark as read back from the table.
func reportWatermark(ctx context.Context, cfg batchpipe.Config) {
	cl, err := cfg.Bigtable.NewClient(ctx)
	if err != nil {
		slog.Warn("batch: cannot read the watermark back", "err", err)
		return
	}
	defer cl.Close()
	meta, err := bigtablestore.ReadMeta(ctx, cl.Open(cfg.Bigtable.Table), cfg.Set.Name)
	if err != nil {
		slog.Warn("batch: cannot read the watermark back", "err", err)
		return
	}
	slog.Info("batch: watermark in Bigtable", "set", cfg.Set.Name, "batch_watermark", meta.BatchWatermark.Format(time.RFC3339))
}
