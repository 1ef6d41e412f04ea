package sample_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/sample"
)

var (
	start = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC) // fixed date: generated events are compared with each other, never with the clock
	end   = start.Add(7 * 24 * time.Hour)
)

func load(t testing.TB, name string) *schemas.FeatureSet {
	t.Helper()
	fs, err := schemas.Load("../" + name + ".yaml")
	if err != nil {
		t.Fatalf("Load(%s) error = %v", name, err)
	}
	return fs
}

// equal reports whether a and b hold the same events; cmp.Equal is too slow
// for tens of thousands.
func equal(a, b []schemas.Event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || a[i].Time != b[i].Time || len(a[i].Values) != len(b[i].Values) {
			return false
		}
		for j := range a[i].Values {
			if a[i].Values[j] != b[i].Values[j] {
				return false
			}
		}
	}
	return true
}

func TestEvents(t *testing.T) {
	for _, name := range []string{"card_activity", "user_sessions"} {
		t.Run(name, func(t *testing.T) {
			fs := load(t, name)
			const n = 20000
			events := sample.Events(fs, 7, n, start, end)
			if len(events) != n {
				t.Fatalf("Events(n=%d) returned %d events", n, len(events))
			}
			if again := sample.Events(fs, 7, n, start, end); !equal(events, again) {
				t.Fatalf("Events is not deterministic (-first +second):\n%s", cmp.Diff(events, again))
			}
			if equal(events, sample.Events(fs, 8, n, start, end)) {
				t.Errorf("Events with seeds 7 and 8 are equal")
			}
			keys := make(map[string]int)
			nulls := 0
			for i, e := range events {
				if i > 0 && e.Time < events[i-1].Time {
					t.Fatalf("event %d at %v before event %d at %v", i, e.EventTime(), i-1, events[i-1].EventTime())
				}
				if e.Time < start.UnixMicro() || e.Time >= end.UnixMicro() {
					t.Fatalf("event %d at %v outside [%v, %v)", i, e.EventTime(), start, end)
				}
				if len(e.Values) != len(fs.Fields) {
					t.Fatalf("event %d has %d values, want %d", i, len(e.Values), len(fs.Fields))
				}
				for j, v := range e.Values {
					if v.IsNull() {
						nulls++
						continue
					}
					if v.Type != fs.Fields[j].Type {
						t.Fatalf("event %d field %s = %v of type %v, want %v", i, fs.Fields[j].Name, v, v.Type, fs.Fields[j].Type)
					}
				}
				keys[e.Key]++
				// The event must survive JSON with its key and time.
				back, err := fs.DecodeJSON(fs.EncodeJSON(e))
				if err != nil {
					t.Fatalf("DecodeJSON(EncodeJSON(event %d)) error = %v", i, err)
				}
				if !equal([]schemas.Event{e}, []schemas.Event{back}) {
					t.Fatalf("event %d does not round-trip through JSON (-want +got):\n%s", i, cmp.Diff(e, back))
				}
			}
			if got, max := len(keys), sample.Entities(n); got > max || got < max/2 {
				t.Errorf("%d distinct keys, want at most and close to %d", got, max)
			}
			// Hot and cold entities: the busiest has many times the average.
			busiest := 0
			for _, c := range keys {
				busiest = max(busiest, c)
			}
			if avg := n / len(keys); busiest < 5*avg {
				t.Errorf("busiest entity has %d events, want many times the average %d", busiest, avg)
			}
			total := n * (len(fs.Fields) - 2)
			if rate := float64(nulls) / float64(total); rate < sample.NullRate/2 || rate > sample.NullRate*2 {
				t.Errorf("null rate = %.4f, want about %.4f", rate, sample.NullRate)
			}
		})
	}
}

func TestEventsShapes(t *testing.T) {
	fs := load(t, "card_activity")
	events := sample.Events(fs, 1, 50000, start, end)
	approved, amounts, small := 0, 0, 0
	merchants := make(map[string]bool)
	for _, e := range events {
		if v := e.Values[3]; !v.IsNull() && v.Int == 1 {
			approved++
		}
		if v := e.Values[2]; !v.IsNull() {
			amounts++
			if v.Float < 100 {
				small++
			}
			if v.Float <= 0 || v.Float != float64(int64(v.Float*100+0.5))/100 {
				t.Fatalf("amount %v is not a positive number of cents", v.Float)
			}
		}
		merchants[e.Values[1].Str] = true
	}
	if share := float64(approved) / float64(len(events)); share < 0.9 || share > 0.97 {
		t.Errorf("approved share = %.3f, want mostly true (about 0.95)", share)
	}
	if share := float64(small) / float64(amounts); share < 0.7 || share > 0.95 {
		t.Errorf("share of amounts under 100 = %.3f, want most (log-normal around 20)", share)
	}
	if len(merchants) < 20 {
		t.Errorf("%d distinct merchants, want most of the pool", len(merchants))
	}

	us := load(t, "user_sessions")
	key := func(e schemas.Event) string { return e.Key }
	sessions := make(map[string]string) // session id → user
	for _, e := range sample.Events(us, 1, 20000, start, end) {
		sid := e.Values[1].Str
		if sid == "" {
			continue
		}
		if u, ok := sessions[sid]; ok && u != key(e) {
			t.Fatalf("session %s used by users %s and %s", sid, u, key(e))
		}
		sessions[sid] = key(e)
	}
}

func TestWriteJSONL(t *testing.T) {
	fs := load(t, "card_activity")
	events := sample.Events(fs, 3, 100, start, end)
	var buf bytes.Buffer
	if err := sample.WriteJSONL(&buf, fs, events); err != nil {
		t.Fatal(err)
	}
	i := 0
	for line := range bytes.Lines(buf.Bytes()) {
		e, err := fs.DecodeJSON(line)
		if err != nil {
			t.Fatalf("line %d: DecodeJSON(%q) error = %v", i+1, line, err)
		}
		if diff := cmp.Diff(events[i], e); diff != "" {
			t.Fatalf("line %d mismatch (-want +got):\n%s", i+1, diff)
		}
		i++
	}
	if i != len(events) {
		t.Errorf("wrote %d lines, want %d", i, len(events))
	}
}

func TestEventsEdgeCases(t *testing.T) {
	fs := load(t, "card_activity")
	if got := sample.Events(fs, 1, 0, start, end); got != nil {
		t.Errorf("Events(n=0) = %v, want nil", got)
	}
	events := sample.Events(fs, 1, 10, start, start)
	for _, e := range events {
		if e.Time != start.UnixMicro() {
			t.Errorf("Events(start == end) time = %v, want %v", e.EventTime(), start)
		}
	}
}

// BenchmarkEvents reports the cost of one generated event, in batches of a
// million as the benchmarks and oracle tests use them.
func BenchmarkEvents(b *testing.B) {
	fs := load(b, "card_activity")
	const n = 1_000_000
	b.ReportAllocs()
	for b.Loop() {
		sample.Events(fs, 1, n, start, end)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
}
