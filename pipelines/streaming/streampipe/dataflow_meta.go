package streampipe

import (
	"context"
	"log/slog"
	"reflect"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/mtime"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/state"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/timers"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/transforms"
)

func init() {
	beam.RegisterType(reflect.TypeOf(metaState{}))
	register.DoFn6x1[context.Context, beam.EventTime, state.Provider, timers.Provider, string, int64, error](&streamMetaFn{})
}

// streamMetaFn writes the stream metadata of the Dataflow variant, from a
// single key, so that one worker writes the metadata row (at most once per
// MetaEvery per cell) however many write tiles.
//
// Its input is what tileWriterFn emits after each bundle (the newest tile
// start it wrote, stamped with the bundle's earliest input timestamp), so
// its input watermark passes t only once every mutation with an earlier
// timestamp has been written. It keeps an event-time timer ("tick") a step
// ahead of the last firing: a firing at t proves that the watermark is
// past t, so t is written as meta:stream_watermark, the time up to which
// what was read is written. The chain of ticks goes on while the stream is
// idle, as long as the runner moves the watermark (Dataflow's Pub/Sub
// watermark follows processing time when the subscription has no
// backlog). The step doubles while ticks fire at once (the watermark is
// far ahead, as when a backlog drains or the stream is drained) and goes
// back to MetaStep once a tick waits; ticks are not set past the clock
// plus the set's max_future. meta:stream_latest_tile is the newest tile
// start written. A failed metadata write is logged and counted
// (<set>_stream_meta_write_failures), never fails the bundle: the next
// tick writes again.
type streamMetaFn struct {
	Set       *schemas.FeatureSet  `json:"set"`
	Bigtable  bigtablestore.Config `json:"bigtable"`
	MetaEvery time.Duration        `json:"meta_every"`
	MetaStep  time.Duration        `json:"meta_step"`

	State state.Value[metaState]
	Tick  timers.EventTime

	table      *sharedTable
	watermark  metaCell
	latestTile metaCell
	failures   beam.Counter
}

// metaState is streamMetaFn's state: the tick it set (µs, 0: none), when
// it set it (processing time, µs), the current step (µs) and the newest
// tile start written.
type metaState struct {
	At, ArmedAt, Step, Latest int64
}

func (fn *streamMetaFn) Setup(ctx context.Context) error {
	t, err := acquireTable(ctx, fn.Bigtable)
	if err != nil {
		return err
	}
	fn.table = t
	fn.failures = beam.NewCounter(transforms.MetricsNamespace, fn.Set.Name+"_stream_meta_write_failures")
	return nil
}

func (fn *streamMetaFn) Teardown() error {
	if fn.table == nil {
		return nil
	}
	err := fn.table.release()
	fn.table = nil
	return err
}

func (fn *streamMetaFn) ProcessElement(ctx context.Context, ts beam.EventTime, sp state.Provider, tp timers.Provider, _ string, latest int64) error {
	st, _, err := fn.State.Read(sp)
	if err != nil {
		return err
	}
	st.Latest = max(st.Latest, latest)
	if t := mtime.Time(ts).ToTime().UnixMicro(); st.At == 0 || st.At < t-fn.MetaStep.Microseconds() {
		fn.arm(tp, &st, t, fn.MetaStep.Microseconds())
	}
	return fn.State.Write(sp, st)
}

func (fn *streamMetaFn) arm(tp timers.Provider, st *metaState, at, step int64) {
	st.At, st.ArmedAt, st.Step = at, clock().UnixMicro(), step
	fn.Tick.Set(tp, time.UnixMicro(at), timers.WithNoOutputTimestamp())
}

func (fn *streamMetaFn) OnTimer(ctx context.Context, sp state.Provider, tp timers.Provider, _ string, _ timers.Context) error {
	st, ok, err := fn.State.Read(sp)
	if err != nil || !ok || st.At == 0 {
		return err
	}
	fired := st.At
	now := clock().UnixMicro()
	step := fn.MetaStep.Microseconds()
	if now-st.ArmedAt < step/10 { // fired at once: the watermark is ahead
		step = min(2*st.Step, time.Hour.Microseconds())
	}
	next := fired + step
	last := next > now+fn.Set.MaxFuture.Microseconds()
	every := fn.MetaEvery
	if last {
		every = 0 // no tick follows (a drain, or the end of a bounded run): write now
	}
	fn.write(ctx, schemas.QualifierStreamWatermark, &fn.watermark, fired, every)
	if st.Latest > 0 {
		fn.write(ctx, schemas.QualifierStreamLatestTile, &fn.latestTile, st.Latest, every)
	}
	if last {
		st.At = 0 // the next element sets it again
	} else {
		fn.arm(tp, &st, next, step)
	}
	return fn.State.Write(sp, st)
}

// write writes one metadata cell, rate-limited; a failure is logged and
// counted.
func (fn *streamMetaFn) write(ctx context.Context, qualifier string, cell *metaCell, t int64, every time.Duration) {
	if err := cell.write(ctx, fn.table.table, fn.Set.Name, qualifier, t, every); err != nil {
		fn.failures.Inc(ctx, 1)
		slog.Warn("stream metadata not written; the next tick writes it", "set", fn.Set.Name, "qualifier", qualifier, "err", err)
	}
}
