// Command streaming is Tandem's streaming pipeline: it reads the live JSON
// events of one feature set from Pub/Sub and keeps the feature set's stream
// tiles in Bigtable current, so that a tile is visible within a second or so
// of its events.
//
// What it computes: for every event, the partial aggregate of every feature
// of the set over the event's tile (the same decoding and aggregation
// algebra as the batch pipeline), folded into the whole tile and written
// whole to the tile's cell in the stream column family; and, in the set's
// metadata row, the start of the newest tile written (stream_latest_tile)
// and the stream watermark (stream_watermark: the time up to which what was
// read is written — the newest event time read, or the last moment a pull
// found the subscription empty — rewritten about once a second; the server
// marks values STALE when it falls behind).
//
// Inputs: a Pub/Sub subscription (--subscription, default the feature set's
// stream source). Locally the messages are read by Tandem's own unbounded
// source (unary Pull in large batches) and acknowledged only after their
// tiles, or their dead letters, are durably written. On Dataflow
// (--runner=dataflow) Beam's native Pub/Sub source reads them, with the
// event time taken from --timestamp_attribute and deduplication by
// --id_attribute.
//
// Outputs: the stream tiles and metadata in Bigtable (--bigtable_*), and
// dead letters (undecodable events, and events later than the set's
// allowed_lateness) as JSON lines under --dead_letter, counted.
//
// Running: by default it runs until SIGTERM (or SIGINT), then drains: it
// stops pulling, writes and acknowledges what it holds and exits 0. A second
// signal aborts. --max_idle and --max_events make a bounded local run.
// PUBSUB_EMULATOR_HOST and BIGTABLE_EMULATOR_HOST are honoured; --emulator
// starts an in-process Pub/Sub fake and Bigtable emulator instead, for
// trying it alone.
//
//	go run ./pipelines/streaming --featureset schemas/card_activity.yaml --emulator --emulator_events 5000 --max_idle 5s
//	go run ./pipelines/streaming --featureset schemas/card_activity.yaml \
//	    --runner=dataflow --project=P --region=R --staging_location=gs://B/staging \
//	    --bigtable_project=P --bigtable_instance=I --subscription=projects/P/subscriptions/S
//
// Flags (besides Beam's --runner, --project, --region, --dry_run, ...):
//
//	--featureset           feature-set YAML file (required)
//	--subscription         projects/<p>/subscriptions/<s> (default: the set's stream source)
//	--bigtable_project, --bigtable_instance, --bigtable_table
//	--dead_letter          path prefix of dead-letter files (local or gs://); default stderr
//	--max_idle, --max_events   stop a local run after idle time / messages (0: never)
//	--timestamp_attribute, --id_attribute   Dataflow source attributes
//	--bundle_wait, --bundle_size, --max_outstanding, --ack_extension   local source tuning
//	--emulator, --emulator_events   in-process fakes, and sample events to publish to them
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/runners/dataflow" // --runner=dataflow
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/tandem-fp/tandem/pipelines/streaming/localstack"
	"github.com/tandem-fp/tandem/pipelines/streaming/streampipe"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/schemas/sample"
	"github.com/tandem-fp/tandem/transforms/pubsubread"
)

var (
	featureset     = flag.String("featureset", "", "feature-set YAML file (required)")
	subscription   = flag.String("subscription", "", "Pub/Sub subscription projects/<p>/subscriptions/<s> (default: the feature set's stream source)")
	deadLetter     = flag.String("dead_letter", "", "path prefix of the dead-letter JSON-lines files (local or gs://); empty: standard error")
	maxIdle        = flag.Duration("max_idle", 0, "local runs: stop after this long without a message (0: never)")
	maxEvents      = flag.Int64("max_events", 0, "local runs: stop after this many messages (0: never)")
	tsAttribute    = flag.String("timestamp_attribute", "event_time", "Dataflow: message attribute with the event time (RFC 3339 or Unix ms); empty: publish time")
	idAttribute    = flag.String("id_attribute", "", "Dataflow: message attribute with a unique event ID for deduplication; empty: the Pub/Sub message ID")
	bundleWait     = flag.Duration("bundle_wait", pubsubread.DefaultBundleWait, "local source: a bundle is written this long after its first message")
	bundleSize     = flag.Int("bundle_size", pubsubread.DefaultBundleSize, "local source: messages per bundle, at most (bounds the messages counted twice after a crash)")
	maxOutstanding = flag.Int("max_outstanding", pubsubread.DefaultMaxOutstanding, "local source: messages pulled and not yet acknowledged, at most")
	ackExtension   = flag.Duration("ack_extension", pubsubread.DefaultAckExtension, "local source: ack deadline kept on messages in flight")
	emulator       = flag.Bool("emulator", false, "start an in-process Pub/Sub fake and Bigtable emulator and use them")
	cpuProfile     = flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	emulatorEvents = flag.Int("emulator_events", 0, "with --emulator: publish this many sample events of the feature set")

	// bt is the table the stream tiles and metadata go to
	// (--bigtable_project, --bigtable_instance, --bigtable_table).
	bt bigtablestore.Config
)

func init() { bt.RegisterFlags(flag.CommandLine) }

func main() {
	flag.Parse()
	beam.Init()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	slog.SetDefault(log)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			log.Error("cpu profile", "err", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(log); err != nil {
		pprof.StopCPUProfile()
		if errors.Is(err, bigtablestore.ErrNoTable) {
			fmt.Fprintln(os.Stderr, "streaming:", err) // one line that says what to run
		} else {
			log.Error("streaming pipeline failed", "err", err)
		}
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	if *featureset == "" {
		return errors.New("give --featureset")
	}
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	set, err := schemas.Load(*featureset)
	if err != nil {
		return err
	}
	o := streampipe.Options{
		Set:                set,
		Bigtable:           bt,
		Subscription:       pubsubread.Subscription(*subscription),
		DeadLetter:         *deadLetter,
		MaxIdle:            *maxIdle,
		MaxEvents:          *maxEvents,
		TimestampAttribute: *tsAttribute,
		IDAttribute:        *idAttribute,
		Source:             pubsubread.Config{BundleWait: *bundleWait, BundleSize: *bundleSize, MaxOutstanding: *maxOutstanding, AckExtension: *ackExtension},
		DrainName:          fmt.Sprintf("streaming-%d", os.Getpid()),
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	runner := flag.Lookup("runner").Value.String()
	if runner == streampipe.RunnerDataflow {
		o.Runner = streampipe.RunnerDataflow
		// Before submitting, the table must exist with its families (a
		// dry run prints the job and needs neither table nor credentials).
		if f := flag.Lookup("dry_run"); f == nil || f.Value.String() != "true" {
			if err := bigtablestore.CheckTable(ctx, o.Bigtable, []*schemas.FeatureSet{set}); err != nil {
				return err
			}
		}
		p, s := beam.NewPipelineWithRoot()
		if err := streampipe.Build(s, o); err != nil {
			return err
		}
		return beamx.Run(ctx, p)
	}

	if *emulator {
		st, err := localstack.Start(ctx, localstack.Options{}, set)
		if err != nil {
			return err
		}
		defer st.Close()
		o.Bigtable, o.PubSub = st.BigtableConfig, st.PubSubEndpoint
		if o.Subscription == "" {
			o.Subscription = pubsubread.Subscription(set.Sources.Stream.Subscription)
		} else if err := st.CreateSubscription(ctx, o.Subscription, 10*time.Second); err != nil {
			return err
		}
		log.Info("emulators started", "pubsub", st.PubSub.Addr, "bigtable", st.Bigtable.Addr, "topic", localstack.Topic(o.Subscription))
		if *emulatorEvents > 0 {
			now := time.Now()
			topic := localstack.Topic(o.Subscription)
			for _, e := range sample.Events(set, 1, *emulatorEvents, now.Add(-5*time.Minute), now) {
				st.PubSub.Publish(topic, set.EncodeJSON(e), nil)
			}
			log.Info("published sample events", "events", *emulatorEvents, "topic", topic)
		}
	}

	// The table must exist with its families before any Beam work, or the
	// pipeline would fail at its first write, deep in a stack trace.
	if err := bigtablestore.CheckTable(ctx, o.Bigtable, []*schemas.FeatureSet{set}); err != nil {
		return err
	}

	// First signal: drain. Second: abort.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-sigs
		log.Info("draining: stop pulling, write and acknowledge what is held", "signal", sig.String())
		streampipe.Drain(o.DrainName)
		sig = <-sigs
		log.Warn("aborting", "signal", sig.String())
		cancel()
	}()

	log.Info("streaming pipeline starting", "feature_set", set.Name, "subscription", string(o.Subscription), "bigtable", o.Bigtable.String(), "pubsub", o.PubSub.String())
	res, err := streampipe.Run(ctx, o)
	if err != nil {
		return err
	}
	log.Info("streaming pipeline finished", "counters", res.Counters)
	return nil
}
