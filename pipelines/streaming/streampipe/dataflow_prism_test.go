package streampipe_test

import (
	"context"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/mtime"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/teststream"
	"github.com/google/go-cmp/cmp"

	"github.com/tandem-fp/tandem/pipelines/streaming/streampipe"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms"
	"github.com/tandem-fp/tandem/transforms/pubsubread"
)

func init() {
	register.Function3x0[beam.EventTime, []byte, func(pubsubread.Message)](toMessage)
}

// toMessage makes a message of a TestStream element, as the Pub/Sub
// source would with the element's timestamp as its timestamp attribute.
func toMessage(ts beam.EventTime, b []byte, emit func(pubsubread.Message)) {
	emit(pubsubread.Message{ID: string(b), Data: b, PublishTime: mtime.Time(ts).ToTime().UnixMicro()})
}

// TestDataflowTestStreamOnPrism runs WriteEntityTiles on prism over a
// TestStream with watermark steps: events, a step that fires the GC timers
// of the first tiles, more events (one out of order) and one whose
// timestamp disagrees with its event time, a step past every tile of one
// card (only its tombstone stays), then events of that card again and a
// late one; finally the watermark goes to infinity. The stored tiles must equal the direct
// computation over the accepted events, the two rejected ones must be dead
// letters, and the metadata must say how far the stream is written.
func TestDataflowTestStreamOnPrism(t *testing.T) {
	set := testSet(t)
	st := startStack(t, set)
	ms := func(at time.Time) int64 { return at.UnixMilli() }

	cfg := teststream.NewConfig()
	var accepted [][]byte
	add := func(at time.Time, b []byte, ok bool) {
		t.Helper()
		if err := cfg.AddElements(ms(at), b); err != nil {
			t.Fatal(err)
		}
		if ok {
			accepted = append(accepted, b)
		}
	}
	step := func(w time.Time) {
		t.Helper()
		if err := cfg.AdvanceWatermark(ms(w)); err != nil {
			t.Fatal(err)
		}
	}
	event := func(card, merchant string, amount float64, at time.Time) []byte {
		return jsonEvent(card, merchant, amount, at)
	}
	// Phase 1: three cards over five minutes.
	for i := range 30 {
		at := t0.Add(time.Duration(i) * 10 * time.Second)
		add(at, event([]string{"c_0", "c_1", "c_2"}[i%3], []string{"m_a", "m_b", "m_c", "m_d"}[i%4], float64(i), at), true)
	}
	// The watermark passes the GC time of the first 1m tiles (end + 2×10m).
	// Prism runs the stateful stage on a watermark change, so each batch of
	// elements is followed by a small step (at which it is processed) before
	// a larger one: every element but the late one is then on time.
	step(t0.Add(40 * time.Minute))
	for i := range 10 {
		at := t0.Add(45*time.Minute + time.Duration(i)*20*time.Second)
		add(at, event([]string{"c_0", "c_1"}[i%2], "m_e", 2.5, at), true)
	}
	ooo := t0.Add(41 * time.Minute) // 7 minutes behind the newest event
	add(ooo, event("c_1", "m_ooo", 7, ooo), true)
	skewed := event("c_1", "m_skew", 5, t0.Add(46*time.Minute)) // stamped an hour later
	add(t0.Add(106*time.Minute), skewed, false)
	step(t0.Add(55 * time.Minute))
	// Past every tile of c_2 (its 3h tile ends at t0+2h, dropped at +20m).
	step(t0.Add(150 * time.Minute))
	for i := range 6 {
		at := t0.Add(150*time.Minute + time.Duration(i)*30*time.Second)
		add(at, event([]string{"c_2", "c_0"}[i%2], "m_f", 1, at), true)
	}
	late := event("c_0", "m_late", 100, t0.Add(2*time.Minute)) // its tiles are gone
	add(t0.Add(2*time.Minute), late, false)
	step(t0.Add(160 * time.Minute))
	if err := cfg.AdvanceWatermarkToInfinity(); err != nil {
		t.Fatal(err)
	}

	dl := filepath.Join(t.TempDir(), "dead")
	p, s := beam.NewPipelineWithRoot()
	msgs := beam.ParDo(s, toMessage, teststream.Create(s, cfg))
	lateOut, dead := streampipe.WriteEntityTiles(s, set, st.BigtableConfig, msgs)
	streampipe.WriteDeadLetters(s, dl, beam.Flatten(s, lateOut, dead))
	pr, err := beam.Run(context.Background(), streampipe.RunnerPrism, p)
	if err != nil {
		t.Fatalf("run = %v", err)
	}

	if diff := cmp.Diff(directTiles(t, set, accepted), storedTiles(t, st.BigtableConfig, set)); diff != "" {
		t.Errorf("stream tiles differ from the direct computation over the accepted events (-want +got):\n%s", diff)
	}
	if ls, _ := streampipe.ReadDeadLetters(dl); testing.Verbose() {
		for _, l := range ls {
			t.Logf("dead letter %s: %s", l.Stage, l.Reason)
		}
	}
	want := []string{transforms.StageLate + ": " + string(late), transforms.StageDecode + ": " + string(skewed)}
	sort.Strings(want)
	if diff := cmp.Diff(want, deadLetterLines(t, dl)); diff != "" {
		t.Errorf("dead letters (-want +got):\n%s", diff)
	}
	counters := map[string]int64{}
	for _, c := range pr.Metrics().AllMetrics().Counters() {
		counters[c.Key.Name] += c.Result()
	}
	for name, want := range map[string]int64{
		"cards_stream_events":            int64(len(accepted)),
		"cards_dead_letter_late":         1,
		"cards_dead_letter_decode":       1,
		"cards_stream_write_conflicts":   0,
		"cards_stream_entities_seeded":   3, // once per card: c_2 kept its tombstone
		"cards_stream_writes_superseded": 0,
	} {
		if got := counters[name]; got != want {
			t.Errorf("counter %s = %d, want %d (all: %v)", name, got, want, counters)
		}
	}
	newest := t0.Add(150*time.Minute + 5*30*time.Second)
	meta := readMeta(t, st.BigtableConfig, set)
	if want := time.UnixMicro(schemas.TileStart(newest.UnixMicro(), set.MinTile())).UTC(); !meta.StreamLatestTile.Equal(want) {
		t.Errorf("stream latest tile = %s, want %s", meta.StreamLatestTile, want)
	}
	if meta.StreamWatermark.Before(newest) {
		t.Errorf("stream watermark = %s, want at least the newest event %s (everything was written)", meta.StreamWatermark, newest.UTC())
	}
}
