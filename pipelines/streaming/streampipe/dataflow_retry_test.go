package streampipe_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/mtime"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/timers"
	"github.com/google/go-cmp/cmp"

	"github.com/tandem-fp/tandem/pipelines/streaming/streampipe"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/schemas/schemastest"
	"github.com/tandem-fp/tandem/transforms"
)

// stamped is a message with the timestamp the source gave its element
// (the timestamp attribute, or the publish time).
type stamped struct {
	data []byte
	ts   time.Time
}

// driver runs the Dataflow variant's DoFns the way Dataflow does: bundles
// of keyed elements whose state changes, timers and outputs are committed
// only when the bundle succeeds, event-time timers fired when the
// watermark passes them, and the committed mutations delivered to the
// writer after the shuffle, where they may arrive twice, out of order and
// on two workers at once.
type driver struct {
	t   testing.TB
	set *schemas.FeatureSet
	bt  bigtablestore.Config
	fn  *streampipe.EntityTilesFn
	rs  *runnerState
	// dead holds the dead letters of committed bundles.
	dead []transforms.DeadLetter
	// muts holds the mutations of committed bundles not yet delivered;
	// delivered, all those delivered so far.
	muts, delivered []keyedMutation
	// watermark is the input watermark (µs): the element timestamps'
	// domain.
	watermark int64
}

type keyedMutation struct {
	ts     beam.EventTime
	entity string
	m      streampipe.SeqMutation
}

func newDriver(t testing.TB, set *schemas.FeatureSet, bt bigtablestore.Config, rs *runnerState) *driver {
	t.Helper()
	fn := streampipe.NewEntityTilesFn(set, bt)
	if err := fn.Setup(context.Background()); err != nil {
		t.Fatalf("Setup = %v", err)
	}
	t.Cleanup(func() { fn.Teardown() })
	return &driver{t: t, set: set, bt: bt, fn: fn, rs: rs}
}

// run runs one bundle of the stateful DoFn: body, then FinishBundle; with
// fail, the bundle fails after FinishBundle (as when the commit does not
// happen) and all of it is discarded.
func (d *driver) run(fail bool, body func(emit func(beam.EventTime, string, streampipe.SeqMutation), dead func(transforms.DeadLetter))) {
	d.t.Helper()
	ctx := context.Background()
	var letters []transforms.DeadLetter
	var muts []keyedMutation
	dead := func(l transforms.DeadLetter) { letters = append(letters, l) }
	emit := func(ts beam.EventTime, k string, m streampipe.SeqMutation) {
		muts = append(muts, keyedMutation{ts, k, m})
	}
	d.rs.begin()
	d.fn.StartBundle(ctx, emit, dead)
	body(emit, dead)
	if err := d.fn.FinishBundle(ctx, emit, dead); err != nil {
		d.t.Fatalf("FinishBundle = %v", err)
	}
	if fail {
		d.rs.discard()
		return
	}
	d.rs.commit()
	d.dead = append(d.dead, letters...)
	d.muts = append(d.muts, muts...)
}

// bundle processes msgs as one bundle (see run).
func (d *driver) bundle(msgs []stamped, fail bool) {
	d.t.Helper()
	d.run(fail, func(emit func(beam.EventTime, string, streampipe.SeqMutation), dead func(transforms.DeadLetter)) {
		for _, m := range msgs {
			e, err := d.set.DecodeJSON(m.data)
			if err != nil {
				d.t.Fatalf("DecodeJSON(%s) = %v", m.data, err)
			}
			sp, tp := d.rs.forKey(e.Key)
			ts := mtime.FromTime(m.ts)
			if err := d.fn.ProcessElement(context.Background(), ts, sp, tp, e.Key, streampipe.DecodedMessage{Event: e, Raw: m.data}, emit, dead); err != nil {
				d.t.Fatalf("ProcessElement = %v", err)
			}
		}
	})
}

// advance moves the watermark to w and fires the timers it passes, each in
// a bundle of its own, earliest first.
func (d *driver) advance(w time.Time) {
	d.t.Helper()
	d.watermark = max(d.watermark, w.UnixMicro())
	for {
		key, family, _, ok := d.rs.next(d.watermark)
		if !ok {
			return
		}
		d.run(false, func(emit func(beam.EventTime, string, streampipe.SeqMutation), dead func(transforms.DeadLetter)) {
			sp, tp := d.rs.forKey(key)
			tp.Set(timers.TimerMap{Family: family, Clear: true}) // fired
			d.rs.TimerSets--
			if err := d.fn.OnTimer(context.Background(), sp, tp, key, timers.Context{Family: family}, emit, dead); err != nil {
				d.t.Fatalf("OnTimer(%s) = %v", key, err)
			}
		})
	}
}

// flush delivers the committed mutations to the writer after the shuffle:
// split over two workers that run at once, the later half first, each
// mutation delivered twice.
func (d *driver) flush() {
	d.t.Helper()
	if len(d.muts) == 0 {
		return
	}
	half := len(d.muts) / 2
	early, late := d.muts[:half], d.muts[half:]
	dup := func(ms []keyedMutation) []keyedMutation { return append(append([]keyedMutation(nil), ms...), ms...) }
	errs := make(chan error, 2)
	go func() { errs <- d.write(dup(late)) }()
	time.Sleep(5 * time.Millisecond)
	go func() { errs <- d.write(dup(early)) }()
	for range 2 {
		if err := <-errs; err != nil {
			d.t.Fatalf("writer: %v", err)
		}
	}
	d.delivered = append(d.delivered, d.muts...)
	d.muts = nil
}

// redeliver delivers every mutation delivered so far once more, newest
// first, each in a bundle of its own: superseded workers that still run.
func (d *driver) redeliver() {
	d.t.Helper()
	for i := len(d.delivered) - 1; i >= 0; i-- {
		if err := d.write(d.delivered[i : i+1]); err != nil {
			d.t.Fatalf("writer: %v", err)
		}
	}
}

// write runs one writer bundle over ms on a writer instance of its own.
func (d *driver) write(ms []keyedMutation) error {
	ctx := context.Background()
	w := streampipe.NewTileWriterFn(d.set, d.bt)
	if err := w.Setup(ctx); err != nil {
		return err
	}
	defer w.Teardown()
	emit := func(beam.EventTime, string, int64) {}
	w.StartBundle(ctx, emit)
	for _, m := range ms {
		if err := w.ProcessElement(ctx, m.ts, m.entity, m.m, emit); err != nil {
			return err
		}
	}
	return w.FinishBundle(ctx, emit)
}

// cardEvents makes n events of the test set for four cards over the
// minutes after start, 20s apart with a jitter of up to ±40s, stamped
// with their event time plus skew.
func cardEvents(start time.Time, n int, skew time.Duration) []stamped {
	var out []stamped
	for i := range n {
		at := start.Add(time.Duration(i)*20*time.Second + time.Duration((i*7919)%81-40)*time.Second)
		out = append(out, stamped{jsonEvent(fmt.Sprintf("c_%d", i%4), fmt.Sprintf("m_%d", i%9), float64(i)+0.5, at), at.Add(skew)})
	}
	return out
}

func rawOf(msgs []stamped) [][]byte {
	var out [][]byte
	for _, m := range msgs {
		out = append(out, m.data)
	}
	return out
}

// TestDataflowRetriedBundles: every other bundle fails once after
// FinishBundle (its state changes are discarded, as Dataflow discards an
// uncommitted work item) and is replayed; the watermark moves between
// bundles so that tiles are dropped by the GC timer on the way. The stored
// tiles must equal the direct computation from the events: each counted
// once.
func TestDataflowRetriedBundles(t *testing.T) {
	set := testSet(t)
	st := startStack(t, set)
	d := newDriver(t, set, st.BigtableConfig, newRunnerState())
	msgs := cardEvents(t0, 96, 0)
	for i := 0; i < len(msgs); i += 12 {
		b := msgs[i:min(i+12, len(msgs))]
		if (i/12)%2 == 0 {
			d.bundle(b, true) // fails, is retried
		}
		d.bundle(b, false)
		d.flush()
		d.advance(b[len(b)-1].ts.Add(-2 * time.Minute))
	}
	d.advance(msgs[len(msgs)-1].ts.Add(time.Hour))
	d.flush()
	d.redeliver()
	if diff := cmp.Diff(directTiles(t, set, rawOf(msgs)), storedTiles(t, st.BigtableConfig, set)); diff != "" {
		t.Errorf("after retried bundles, stream tiles differ from the direct computation (-want +got):\n%s", diff)
	}
	if len(d.dead) != 0 {
		t.Errorf("dead letters = %v, want none", d.dead)
	}
}

const defHeader = `
name: cards
entity: {name: card, key: card_id}
event_time: ts
fields: {card_id: string, merchant: string, amount: float64, ts: timestamp}
allowed_lateness: 10m
features:
`

const defBefore = defHeader + `  - {name: n_1h, op: count, window: 1h}
  - {name: amount_sum_1h, op: sum, field: amount, window: 1h}
  - {name: merchants_7d, op: approx_count_distinct, field: merchant, window: 7d}
`

// defAfter reorders the features and removes amount_sum_1h.
const defAfter = defHeader + `  - {name: merchants_7d, op: approx_count_distinct, field: merchant, window: 7d}
  - {name: n_1h, op: count, window: 1h}
`

// TestDataflowDefinitionChange runs the DoFn over one definition, then (as
// a Dataflow --update keeps the state) a new DoFn over the same state with
// the features reordered and one removed. The tiles of the new definition
// must equal the direct computation over all events.
func TestDataflowDefinitionChange(t *testing.T) {
	before, after := schemastest.MustParse(t, defBefore), schemastest.MustParse(t, defAfter)
	st := startStack(t, before)
	rs := newRunnerState()
	first := cardEvents(t0, 30, 0)
	second := cardEvents(t0.Add(10*time.Minute), 30, 0)

	d1 := newDriver(t, before, st.BigtableConfig, rs)
	d1.bundle(first, false)
	d1.flush()
	d1.advance(first[len(first)-1].ts.Add(-5 * time.Minute))

	d2 := newDriver(t, after, st.BigtableConfig, rs)
	d2.watermark = d1.watermark
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("after the definition change, the DoFn panicked: %v", r)
			}
		}()
		d2.bundle(second, false)
		d2.flush()
		d2.advance(second[len(second)-1].ts.Add(time.Hour))
		d2.flush()
	}()
	all := append(rawOf(first), rawOf(second)...)
	want := directTiles(t, after, all)
	got := onlyQualifiers(storedTiles(t, st.BigtableConfig, after), after)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after the definition change, stream tiles differ from the direct computation (-want +got):\n%s", diff)
	}
}

// onlyQualifiers keeps the formatted cells of set's features and ~newest.
func onlyQualifiers(cells []string, set *schemas.FeatureSet) []string {
	var out []string
	for _, c := range cells {
		_, rest, _ := strings.Cut(c, "/")
		q, _, _ := strings.Cut(rest, "/")
		q, _, _ = strings.Cut(q, "=")
		keep := q == schemas.QualifierNewest
		for _, f := range set.Features {
			keep = keep || q == f.Qualifier()
		}
		if keep {
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return out
}

// TestDataflowOneTimeDomain: the watermark follows the element timestamps
// (here the publish time, 5 minutes after the event time: no timestamp
// attribute), the tiles the JSON event time. Events that are on time for
// the watermark (less than the allowed lateness behind it) must be counted,
// and a message whose timestamp disagrees with its event time by more than
// the allowed lateness must be dead-lettered, saying so.
func TestDataflowOneTimeDomain(t *testing.T) {
	set := testSet(t)
	st := startStack(t, set)
	d := newDriver(t, set, st.BigtableConfig, newRunnerState())
	var accepted []stamped
	for round := range 4 {
		start := t0.Add(time.Duration(round) * 10 * time.Minute)
		b := cardEvents(start, 24, 5*time.Minute)
		d.bundle(b, false)
		accepted = append(accepted, b...)
		d.flush()
		var newest time.Time
		for _, m := range b {
			if m.ts.After(newest) {
				newest = m.ts
			}
		}
		d.advance(newest.Add(-time.Second))
		// Out of order by 8 minutes in both domains: on time.
		ooo := stamped{jsonEvent("c_1", "m_ooo", 2, newest.Add(-13*time.Minute)), newest.Add(-8 * time.Minute)}
		d.bundle([]stamped{ooo}, false)
		accepted = append(accepted, ooo)
	}
	skewed := stamped{jsonEvent("c_2", "m_skew", 3, t0.Add(30*time.Minute)), t0.Add(75 * time.Minute)}
	d.bundle([]stamped{skewed}, false)
	d.advance(t0.Add(3 * time.Hour))
	d.flush()

	if diff := cmp.Diff(directTiles(t, set, rawOf(accepted)), storedTiles(t, st.BigtableConfig, set)); diff != "" {
		t.Errorf("stream tiles differ from the direct computation over the on-time events (-want +got):\n%s", diff)
	}
	var got []string
	for _, l := range d.dead {
		got = append(got, l.Stage+": "+string(l.Raw))
	}
	want := []string{transforms.StageDecode + ": " + string(skewed.data)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dead letters (-want +got):\n%s", diff)
	}
	for _, l := range d.dead {
		if !strings.Contains(l.Reason, "timestamp") {
			t.Errorf("dead letter reason %q does not name the message timestamp", l.Reason)
		}
	}
}
