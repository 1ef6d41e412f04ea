// Package streampipe builds and runs Tandem's streaming pipeline: JSON
// events of one feature set from a Pub/Sub subscription → stream tiles in
// Bigtable (family stream, one cell per tile, written whole) plus the
// feature set's stream metadata (newest tile, stream watermark); undecodable
// and late events go to a dead-letter output, counted.
//
// Two variants share the tile logic (entityTiles: full tiles, seeded from
// their stored cells when first touched, dropped once the watermark is past
// them by the allowed lateness):
//
//   - Local runners (prism, the default): Tandem's own unbounded source
//     (package transforms/pubsubread) fused with a sink that writes each
//     bundle's tiles and dead letters and only then acknowledges its
//     messages. At-least-once: nothing is lost; a crash counts at most one
//     bundle of messages twice.
//   - Dataflow (Options.Runner "dataflow"): Beam's native Pub/Sub source
//     (event-time attribute, message IDs) feeding a stateful DoFn keyed by
//     entity (entityTilesFn) that keeps the full tiles in Beam state and
//     never writes to Bigtable itself: per bundle it emits, for each entity
//     it changed, the whole value of the changed tiles, numbered in a
//     per-entity chain. After a Reshuffle, tileWriterFn applies each as a
//     CheckAndMutateRow conditional on the row's stream:~chain cell, so an
//     entity's writes apply once each, in chain order, and an older one
//     never overwrites a newer one; streamMetaFn writes the metadata from
//     event-time timer firings (a real watermark). Exactly-once stored
//     tiles on Dataflow is argued from Dataflow's documented guarantees,
//     not observed (no Dataflow here): a bundle's state changes, timers and
//     outputs commit together or not at all, a Reshuffle's consumers see
//     only committed elements, and the source deduplicates redelivered
//     messages. What the tests show on prism and with a state provider that
//     discards and replays bundles is listed in the README.
//
// The package is a library so that the command (pipelines/streaming), the
// tests and the benchmark can run the pipeline in process.
package streampipe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/state"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/runners/prism" // the local runner

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/transforms/pubsubread"
)

// ErrOptions reports invalid Options.
var ErrOptions = errors.New("streampipe: invalid options")

// Runner names.
const (
	RunnerPrism    = "prism"
	RunnerDataflow = "dataflow"
)

// Options configure the streaming pipeline.
type Options struct {
	Set      *schemas.FeatureSet
	Bigtable bigtablestore.Config
	// Subscription defaults to the feature set's stream source.
	Subscription pubsubread.Subscription
	PubSub       pubsubread.Endpoint
	// DeadLetter is the path prefix of the dead-letter JSON-lines files
	// (local or gs://); "" writes them to standard error.
	DeadLetter string
	// MaxIdle and MaxEvents, when positive, make a local run stop after that
	// long without a message or after that many messages.
	MaxIdle   time.Duration
	MaxEvents int64
	// Runner is "" or "prism" for the local variant, "dataflow" for the
	// Dataflow one.
	Runner string
	// TimestampAttribute and IDAttribute are the message attributes that
	// carry the event time and a unique event ID, for Dataflow's Pub/Sub
	// source ("" for none: publish time, Pub/Sub message ID).
	TimestampAttribute string
	IDAttribute        string
	// Source tunes the local source; its Subscription, Endpoint, MaxIdle,
	// MaxMessages, AllowedLateness and Name are set from the options.
	Source pubsubread.Config
	// DrainName, when set, lets Drain(DrainName) stop a local run gracefully.
	DrainName string
}

// withDefaults validates o and fills in defaults.
func (o Options) withDefaults() (Options, error) {
	if o.Set == nil {
		return o, fmt.Errorf("%w: no feature set", ErrOptions)
	}
	if o.Subscription == "" {
		o.Subscription = pubsubread.Subscription(o.Set.Sources.Stream.Subscription)
	}
	if o.Subscription == "" {
		return o, fmt.Errorf("%w: feature set %s has no stream source; give a subscription", ErrOptions, o.Set.Name)
	}
	if _, _, err := o.Subscription.Parse(); err != nil {
		return o, err
	}
	if err := o.Bigtable.Validate(); err != nil {
		return o, err
	}
	if o.MaxIdle < 0 || o.MaxEvents < 0 {
		return o, fmt.Errorf("%w: max idle %s and max events %d must not be negative", ErrOptions, o.MaxIdle, o.MaxEvents)
	}
	switch o.Runner {
	case "", RunnerPrism, RunnerDataflow:
	default:
		return o, fmt.Errorf("%w: runner %q is not %q or %q", ErrOptions, o.Runner, RunnerPrism, RunnerDataflow)
	}
	if o.DrainName == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		o.DrainName = "run-" + hex.EncodeToString(b[:])
	}
	return o, nil
}

// Build adds the streaming pipeline to s.
func Build(s beam.Scope, o Options) error {
	o, err := o.withDefaults()
	if err != nil {
		return err
	}
	if o.Runner == RunnerDataflow {
		buildDataflow(s.Scope("streaming"), o)
		return nil
	}
	buildLocal(s.Scope("streaming"), o)
	return nil
}

func buildLocal(s beam.Scope, o Options) {
	src := o.Source
	src.Subscription = o.Subscription
	src.Endpoint = o.PubSub
	src.MaxIdle = o.MaxIdle
	src.MaxMessages = o.MaxEvents
	src.AllowedLateness = o.Set.AllowedLateness
	src.Name = o.DrainName
	if src.AckExtension <= 0 {
		src.AckExtension = pubsubread.DefaultAckExtension
	}
	msgs := pubsubread.Read(s, o.Set, src)
	progress := beam.ParDo(s.Scope("WriteTiles"), &localSinkFn{
		Set:          o.Set,
		Bigtable:     o.Bigtable,
		Subscription: o.Subscription,
		PubSub:       o.PubSub,
		AckExtension: src.AckExtension,
		DeadLetter:   o.DeadLetter,
		Run:          o.DrainName,
	}, msgs)
	beam.ParDo0(s.Scope("Progress"), &progressFn{Total: state.MakeValueState[int64]("total")}, progress)
}

// Drain asks the local runs in this process started with DrainName name to
// stop pulling, write what they hold and finish (as on SIGTERM).
func Drain(name string) { pubsubread.Drain(name) }

// Started returns a channel closed once the local run started with
// DrainName name has been submitted and runs (its source is set up). Start
// several local runs of one process one after another, each once the one
// before it has started: prism (v2.77) stages two jobs at once into one map
// without a lock, which can end the process ("concurrent map writes").
func Started(name string) <-chan struct{} { return pubsubread.Started(name) }

// Result is what a finished run reports: Tandem's counters by name
// (namespace tandem), for example <set>_stream_events,
// <set>_dead_letter_decode, <set>_dead_letter_late.
type Result struct {
	Counters map[string]int64
}

// Run builds the pipeline and runs it on the local runner (prism, in
// process) until the source stops: MaxIdle, MaxEvents or Drain. Cancelling
// ctx aborts the run without draining.
func Run(ctx context.Context, o Options) (Result, error) {
	o, err := o.withDefaults()
	if err != nil {
		return Result{}, err
	}
	if o.Runner == RunnerDataflow {
		return Result{}, fmt.Errorf("%w: Run runs locally; submit to Dataflow with the command", ErrOptions)
	}
	p, s := beam.NewPipelineWithRoot()
	if err := Build(s, o); err != nil {
		return Result{}, err
	}
	pr, err := beam.Run(ctx, RunnerPrism, p)
	if err != nil {
		return Result{}, fmt.Errorf("streaming pipeline of %s: %w", o.Set.Name, err)
	}
	return resultOf(pr), nil
}

func resultOf(pr beam.PipelineResult) Result {
	r := Result{Counters: map[string]int64{}}
	if pr == nil {
		return r
	}
	for _, c := range pr.Metrics().AllMetrics().Counters() {
		if c.Key.Namespace == "tandem" {
			r.Counters[c.Key.Name] += c.Result()
		}
	}
	return r
}

// shortSubscription splits a qualified subscription for pubsubio.
func shortSubscription(sub pubsubread.Subscription) (project, id string) {
	project, id, _ = sub.Parse()
	return project, strings.TrimSpace(id)
}
