// training is Tandem's training pipeline. For every row of a spine (a table
// of labelled examples: entity keys, an instant, labels, anything else) it
// computes the requested features at the row's instant, as the server would
// have returned them then, and writes one training row per spine row.
//
// What it computes: for a feature with window W and tile T, the value at the
// row's instant `at` aggregates the entity's events with event time in
//
//	[TileStart(at − W), at)   (schemas.Feature.Span, the window contract)
//
// recomputed from the raw events of each feature set's batch source with
// the same tile boundaries, the same aggregation algebra and the same merge
// order as the server, so a training value equals the served value for the
// same entity and instant. It never counts an event at or after `at`.
//
// Inputs:
//
//   - the features: a feature service (--service, YAML), whose entries name
//     each feature set's features and the spine column of its key; or
//     feature sets (--featureset, repeatable, YAML), every feature of each,
//     keyed by the spine column named like the set's entity key field
//     (card_id);
//   - the spine (--spine=files:GLOB): CSV with a header (.csv), JSON lines
//     (.jsonl, .ndjson, .json), optionally .gz, or Parquet (.parquet); local
//     paths or gs://. Or a BigQuery table (--spine=bq:PROJECT.DATASET.TABLE,
//     read through the Storage Read API as of the launch, every column typed
//     as BigQuery types it) or query (--spine=bq-query:SQL, run once as a
//     query job in --bigquery_project). Its instants are in the column
//     --spine_time: a timestamp or an RFC 3339 string;
//   - each set's events from its sources.batch (BigQuery table or query, or
//     files), or from --source SET=SPEC instead, read for [earliest instant −
//     longest window − largest tile, latest instant), the range pushed down
//     to BigQuery.
//
// Outputs:
//
//   - --output=files:PATH.parquet|.csv|.jsonl: every spine column, unchanged
//     and in order, then one typed column per feature,
//     <featureset>__<feature>, null where the server would say NOT_FOUND;
//     one row per usable spine row, in no particular order;
//   - or --output=bq:PROJECT.DATASET.TABLE: the same columns and rows in a
//     BigQuery table (lists as REPEATED, the other composites as STRUCT; see
//     trainpipe's outputbq.go), created by the launcher if it does not
//     exist, and written through the Storage Write API in one atomic
//     commit at the end of the run: all rows or none, each once. An
//     existing table must have the columns' types; with
//     --write_disposition=WRITE_EMPTY (the default) it must have no rows,
//     WRITE_APPEND adds to them;
//   - a dead-letter file <dead_letter>.jsonl, one JSON object per spine row
//     without a key or a valid time and per event that did not decode:
//     {"set", "stage", "reason", "raw"}; the run fails if no spine row is
//     usable;
//   - counters in namespace "tandem", printed at the end of the run.
//
// Flags:
//
//	--service            path of a feature-service YAML (schemas/services/*.yaml)
//	--featureset         path of a feature-set YAML; repeat for several sets (without
//	                     --service, required); with --service, the sets it may use
//	                     (default: the definitions in the directory above the service's)
//	--spine              files:GLOB, bq:PROJECT.DATASET.TABLE or bq-query:SQL (required)
//	--spine_time         the spine column of the rows' instants (default ts)
//	--source             SET=files:GLOB or SET=bq:PROJECT.DATASET.TABLE: read the events of
//	                     feature set SET from there instead of its sources.batch; repeatable,
//	                     once per set
//	--output             files:PATH with extension .parquet, .csv or .jsonl, or
//	                     bq:PROJECT.DATASET.TABLE (required)
//	--output_shards      number of output files (default 1: PATH itself), or of
//	                     BigQuery write streams
//	--write_disposition  a BigQuery output table with rows: WRITE_EMPTY (default,
//	                     fail) or WRITE_APPEND
//	--dead_letter        path prefix of the dead-letter file (default dead_letter/training-<now>)
//	--bigquery_project   project of the BigQuery read sessions and query jobs (default: the table's)
//	--bigquery_max_streams  cap on the BigQuery read streams (default: BigQuery chooses)
//	--bigquery_endpoint  host:port of a Storage Read and Write API fake (default: BigQuery)
//	--bigquery_rest_endpoint  base URL of a BigQuery REST API fake (default: BigQuery)
//
// and Beam's flags: --runner (default prism, Beam's local runner; dataflow
// for Google Cloud Dataflow, with --project, --region, --staging_location,
// --temp_location and, to print the job without submitting it, --dry_run).
// The launcher reads the spine once before it builds the job, for its
// columns and the range of its instants.
//
// Try it with no cloud at all, on the shipped sample data:
//
//	printf 'card_id,ts,label\nc_1001,2026-03-02T12:00:00Z,1\nc_1002,2026-03-02T13:30:00Z,0\n' >/tmp/card_spine.csv
//	go run ./pipelines/training --featureset schemas/card_activity.yaml \
//	    --spine files:/tmp/card_spine.csv --output files:/tmp/card_training.parquet
//
// go run ./scripts/local prints a command for the shipped service over the
// events it generates and streams.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"

	"github.com/tandem-fp/tandem/pipelines/batch/batchpipe"
	"github.com/tandem-fp/tandem/pipelines/training/trainpipe"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms/bigqueryread"
	"github.com/tandem-fp/tandem/transforms/bigquerywrite"
)

// files collects a repeatable flag.
type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

var (
	featureSets files
	sources     files
	service     = flag.String("service", "", "path of a feature-service definition (YAML): its features, each set keyed by the spine column the service names")
	spine       = flag.String("spine", "", "the spine: files:GLOB (CSV with a header, JSON lines or Parquet, by extension), bq:PROJECT.DATASET.TABLE or bq-query:SQL; required")
	spineTime   = flag.String("spine_time", "ts", "the spine column holding each row's instant (a timestamp or RFC 3339)")
	output      = flag.String("output", "", "files:PATH of the training rows, .parquet, .csv or .jsonl, or bq:PROJECT.DATASET.TABLE; required")
	shards      = flag.Int("output_shards", 1, "number of output files (more than 1 names them PATH-SSSSS-of-NNNNN.ext), or of BigQuery write streams")
	disposition = flag.String("write_disposition", "WRITE_EMPTY", "what to do when the BigQuery output table has rows: WRITE_EMPTY fails, WRITE_APPEND adds to them")
	deadLetter  = flag.String("dead_letter", "", "path prefix of the dead-letter file <prefix>.jsonl, local or gs://; default dead_letter/training-<now>")
	bqProject   = flag.String("bigquery_project", "", "project that owns the BigQuery read sessions and runs a query source's query; default the table's project")
	bqStreams   = flag.Int("bigquery_max_streams", 0, "most BigQuery read streams per feature set; 0 lets BigQuery choose")
	bqEndpoint  = flag.String("bigquery_endpoint", "", "host:port of a BigQuery Storage Read and Write API fake (plaintext, no auth); default BigQuery")
	bqREST      = flag.String("bigquery_rest_endpoint", "", "base URL of a BigQuery REST API fake (no auth), for query jobs and the output table; default BigQuery")
)

func init() {
	flag.Var(&sources, "source", "SET=files:GLOB or SET=bq:PROJECT.DATASET.TABLE: read feature set SET's events from there instead of its sources.batch; repeat for several sets")
	flag.Var(&featureSets, "featureset", "path of a feature-set definition (YAML); repeat for several sets, each keyed by the spine columns named like its entity key fields; with --service, the sets the service may use (default: the YAML files of the directory above the service's)")
}

func main() {
	flag.Parse()
	beam.Init() // on a Dataflow worker this runs the worker and never returns
	if err := run(context.Background()); err != nil {
		slog.Error("training: failed", "err", err)
		os.Exit(1)
	}
}

const filesPrefix = "files:"

// requests are the features asked for: a service's (returned too, for its
// derived features), or every feature of each --featureset.
func requests() ([]trainpipe.Request, *schemas.Service, error) {
	var reqs []trainpipe.Request
	if *service != "" {
		if _, err := os.Stat(*service); err != nil {
			return nil, nil, fmt.Errorf("--service: %w", err)
		}
		svc, err := schemas.LoadServiceWithSets(*service, featureSets...)
		if err != nil {
			return nil, nil, err
		}
		for _, e := range svc.Entries {
			reqs = append(reqs, trainpipe.Request{Set: e.Set, Keys: e.Keys, Features: e.FeatureNames()})
		}
		return reqs, svc, nil
	}
	sets, err := schemas.LoadAll(featureSets...)
	if err != nil {
		return nil, nil, err
	}
	for _, set := range sets {
		reqs = append(reqs, trainpipe.Request{Set: set})
	}
	return reqs, nil, nil
}

func run(ctx context.Context) error {
	if len(featureSets) == 0 && *service == "" {
		return errors.New("--service or --featureset is required")
	}
	if *spine == "" {
		return errors.New("--spine is required")
	}
	if *output == "" {
		return errors.New("--output is required")
	}
	cfg := trainpipe.Config{
		SpineTime: *spineTime,
		Output:    trainpipe.Output{Shards: *shards},
		BigQuery:  batchpipe.BigQueryConfig{Project: *bqProject, MaxStreams: *bqStreams, Endpoint: *bqEndpoint, RESTEndpoint: *bqREST},
	}
	var (
		ok  bool
		err error
	)
	if err := parseSpine(&cfg, *spine); err != nil {
		return err
	}
	if table, isBQ := strings.CutPrefix(*output, "bq:"); isBQ {
		cfg.Output.Table = table
		if cfg.Output.Disposition, err = bigquerywrite.ParseDisposition(*disposition); err != nil {
			return fmt.Errorf("--write_disposition: %w", err)
		}
	} else if cfg.Output.Path, ok = strings.CutPrefix(*output, filesPrefix); !ok {
		return fmt.Errorf("--output %q: want files:PATH.parquet, .csv or .jsonl, or bq:PROJECT.DATASET.TABLE", *output)
	}
	if cfg.Requests, cfg.Service, err = requests(); err != nil {
		return err
	}
	if err := overrideSources(cfg.Requests, sources); err != nil {
		return err
	}
	cfg.DeadLetter = *deadLetter
	if cfg.DeadLetter == "" {
		cfg.DeadLetter = filepath.Join("dead_letter", "training-"+time.Now().UTC().Format("20060102T150405Z"))
	}
	if err := trainpipe.Prepare(ctx, &cfg); err != nil {
		return err
	}
	res, err := trainpipe.Run(ctx, &cfg)
	if err != nil {
		return err
	}
	if *jobopts.Async && !res.DryRun {
		slog.Info("training: job submitted", "output", strings.Join(res.Files, ","))
		return nil
	}
	res.Log()
	return nil
}

// overrideSources applies --source SET=SPEC to the requests: each SET must
// be a requested feature set, given once.
func overrideSources(reqs []trainpipe.Request, specs []string) error {
	seen := map[string]bool{}
	for _, spec := range specs {
		name, src, ok := strings.Cut(spec, "=")
		if !ok || name == "" {
			return fmt.Errorf("--source %q: want SET=files:GLOB or SET=bq:PROJECT.DATASET.TABLE", spec)
		}
		i := slices.IndexFunc(reqs, func(r trainpipe.Request) bool { return r.Set.Name == name })
		if i < 0 {
			names := make([]string, len(reqs))
			for j, r := range reqs {
				names[j] = r.Set.Name
			}
			return fmt.Errorf("--source %q: no requested feature set %q (requested: %s)", spec, name, strings.Join(names, ", "))
		}
		if seen[name] {
			return fmt.Errorf("--source %q: feature set %s has a --source already", spec, name)
		}
		seen[name] = true
		bs, err := batchpipe.ParseSource(src)
		if err != nil {
			return fmt.Errorf("--source %q: %w", spec, err)
		}
		reqs[i].Source = bs
	}
	return nil
}

// parseSpine sets the spine of cfg from --spine.
func parseSpine(cfg *trainpipe.Config, spec string) error {
	if glob, ok := strings.CutPrefix(spec, filesPrefix); ok {
		cfg.SpineGlob = glob
		return nil
	}
	if sql, ok := strings.CutPrefix(spec, "bq-query:"); ok {
		cfg.SpineBigQuery = bigqueryread.Source{Query: sql}
	} else if table, ok := strings.CutPrefix(spec, "bq:"); ok {
		cfg.SpineBigQuery = bigqueryread.Source{Table: table}
	} else {
		return fmt.Errorf("--spine %q: want files:GLOB, bq:PROJECT.DATASET.TABLE or bq-query:SQL", spec)
	}
	if err := cfg.SpineBigQuery.Validate(); err != nil {
		return fmt.Errorf("--spine %q: %w", spec, err)
	}
	return nil
}
