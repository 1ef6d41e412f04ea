package streampipe_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/tandem-fp/tandem/pipelines/streaming/streampipe"
	"github.com/tandem-fp/tandem/transforms/pubsubread"
)

func init() {
	register.DoFn2x0[pubsubread.Message, func(beam.EventTime, pubsubread.Message)](&stampFn{})
	register.Emitter2[beam.EventTime, pubsubread.Message]()
	register.Function1x0[pubsubread.Message](dropMessage)
}

// stampFn gives each message the element timestamp Dataflow's Pub/Sub
// source would: its PublishTime (standing for the timestamp attribute).
type stampFn struct{}

func (stampFn) ProcessElement(m pubsubread.Message, emit func(beam.EventTime, pubsubread.Message)) {
	emit(beam.EventTime(m.PublishTime/1000), m)
}

func dropMessage(pubsubread.Message) {}

// costEvents are n events of the test set over 200 cards, one every 50ms of
// event time, each stamped with its event time.
func costEvents(n int) []stamped {
	var out []stamped
	for i := range n {
		at := t0.Add(time.Duration(i) * 50 * time.Millisecond)
		out = append(out, stamped{jsonEvent(fmt.Sprintf("c_%d", i%200), fmt.Sprintf("m_%d", i%17), float64(i%100), at), at})
	}
	return out
}

func messagesOf(msgs []stamped) []any {
	out := make([]any, len(msgs))
	for i, m := range msgs {
		out[i] = pubsubread.Message{ID: fmt.Sprint(i), Data: m.data, PublishTime: m.ts.UnixMicro()}
	}
	return out
}

// BenchmarkDataflowDoFn measures the per-event cost of the Dataflow
// variant's stateful path on prism: a bounded run of 4,000 events through
// WriteEntityTiles (events/s), against a baseline run of the same graph
// up to the stateless stamping step in the same benchmark; and, with the
// DoFn driven directly by the counting state provider in bundles of 100,
// the state calls and timer sets per event.
//
//	go test ./pipelines/streaming/streampipe -run '^$' -bench BenchmarkDataflowDoFn -benchtime 1x -count 3
func BenchmarkDataflowDoFn(b *testing.B) {
	const n = 4000
	set := testSet(b)
	msgs := costEvents(n)
	run := func(stateful bool) time.Duration {
		st := startStack(b, set)
		p, s := beam.NewPipelineWithRoot()
		in := beam.ParDo(s, &stampFn{}, beam.Create(s, messagesOf(msgs)...))
		if stateful {
			late, dead := streampipe.WriteEntityTiles(s, set, st.BigtableConfig, in)
			streampipe.WriteDeadLetters(s, "", beam.Flatten(s, late, dead))
		} else {
			beam.ParDo0(s, dropMessage, in)
		}
		start := time.Now()
		if _, err := beam.Run(context.Background(), streampipe.RunnerPrism, p); err != nil {
			b.Fatalf("run = %v", err)
		}
		return time.Since(start)
	}
	for range b.N {
		base := run(false)
		full := run(true)
		b.ReportMetric(float64(n)/full.Seconds(), "events/s")
		b.ReportMetric(float64(n)/base.Seconds(), "baseline-events/s")
		b.ReportMetric(full.Seconds()/base.Seconds(), "x-baseline")
	}

	// State calls per event, with the counting provider.
	st := startStack(b, set)
	rs := newRunnerState()
	d := newDriver(b, set, st.BigtableConfig, rs)
	for i := 0; i < n; i += 100 {
		batch := msgs[i:min(i+100, n)]
		d.bundle(batch, false)
		d.flush()
		d.advance(batch[len(batch)-1].ts.Add(-time.Minute))
	}
	d.advance(msgs[n-1].ts.Add(24 * time.Hour))
	d.flush()
	b.ReportMetric(float64(rs.Reads+rs.Writes+rs.Clears)/n, "state-calls/event")
	b.ReportMetric(float64(rs.TimerSets)/n, "timer-sets/event")
	b.ReportMetric(float64(rs.entries()), "state-values-left")
}
