package localstack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/schemastest/brute"
	"github.com/tandem-fp/tandem/serving"
)

func TestMain(m *testing.M) { ptest.Main(m) }

// floorTo rounds t down to a multiple of d since the Unix epoch, by
// time.Time arithmetic rather than the tile code.
func floorTo(t time.Time, d time.Duration) time.Time {
	return t.Truncate(d) // Truncate rounds down relative to the zero time; d divides a day, and the epoch is a day boundary
}

// oracleKeep is the `where:` of a feature of testdata/oracle.yaml written
// out in Go, sharing no code with schemas' expressions (fields: account n x
// s ok ts).
func oracleKeep(feature string) func(schemas.Event) bool {
	switch feature {
	case "notok_cnt_10m": // not ok
		return func(e schemas.Event) bool { return !e.Values[4].IsNull() && e.Values[4].Int == 0 }
	case "sum_x_big_1h": // x > 0 and s in ("apple", "kiwi")
		return func(e schemas.Event) bool {
			x, s := e.Values[2], e.Values[3]
			return !x.IsNull() && x.Float > 0 && !s.IsNull() && (s.Str == "apple" || s.Str == "kiwi")
		}
	case "notok_last2_s_1h": // not ok and x < 500
		return func(e schemas.Event) bool {
			return !e.Values[4].IsNull() && e.Values[4].Int == 0 && !e.Values[2].IsNull() && e.Values[2].Float < 500
		}
	case "max_n_1h": // n < 0 or ok is null
		return func(e schemas.Event) bool {
			return !e.Values[1].IsNull() && e.Values[1].Int < 0 || e.Values[4].IsNull()
		}
	}
	return func(schemas.Event) bool { return true }
}

// expected computes a feature's value at `at` by brute force over the raw
// events (package brute), under the window contract: the events with event
// time in [floor(at − window), at), floor to the feature's tile size, that
// the feature's filter written out in Go (oracleKeep) keeps. It shares no
// code with tiles, the aggregation algebra or the expression evaluator.
func expected(f schemas.Feature, events []schemas.Event, at time.Time) (any, bool) {
	return brute.At(f, events, "", at.UnixMicro(), oracleKeep(f.Name))
}

// timeline is a random event history and live stream over a few entities,
// with events on tile boundaries, on the watermark and just before it,
// out-of-order live events within the allowed lateness, and late events.
type timeline struct {
	history []schemas.Event // event time < watermark: the batch pipeline's
	live    [][]schemas.Event
	late    []schemas.Event // published after the stream moved on: dead letters
	asOf    time.Time
	end     time.Time
}

func makeTimeline(set *schemas.FeatureSet, seed uint64, t0 time.Time) timeline {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	entities := []string{"a_1", "a_2", "a_3", "a_4", "a_5", "a_6"}
	ev := func(t time.Time) schemas.Event { return randomEvent(set, rng, entities[rng.IntN(len(entities))], t) }
	tl := timeline{asOf: t0.Add(90 * time.Minute)}
	// History: random times over [t0, asOf), plus boundaries.
	for range 1500 {
		tl.history = append(tl.history, ev(t0.Add(time.Duration(rng.Int64N(int64(90*time.Minute))))))
	}
	for _, t := range []time.Time{t0, t0.Add(time.Minute), t0.Add(30 * time.Minute), tl.asOf.Add(-time.Microsecond), tl.asOf.Add(-time.Millisecond), tl.asOf.Add(-5 * time.Second)} {
		tl.history = append(tl.history, ev(t), ev(t)) // two events at the same instant: ties for last
	}
	// Live: 60 minutes after the watermark in chunks of 30s of event time,
	// shuffled within the chunk (out of order by up to 30s, inside the
	// allowed lateness of 2m); the first events sit exactly on the watermark.
	tl.end = tl.asOf.Add(60 * time.Minute)
	for c := tl.asOf; c.Before(tl.end); c = c.Add(30 * time.Second) {
		var chunk []schemas.Event
		if c.Equal(tl.asOf) {
			chunk = append(chunk, ev(c), ev(c), ev(c.Add(5*time.Second)))
		}
		for range 12 + rng.IntN(12) {
			chunk = append(chunk, ev(c.Add(time.Duration(rng.Int64N(int64(30*time.Second))))))
		}
		if rng.IntN(4) == 0 {
			chunk = append(chunk, ev(c.Truncate(time.Minute))) // on a tile boundary
		}
		rng.Shuffle(len(chunk), func(i, j int) { chunk[i], chunk[j] = chunk[j], chunk[i] })
		tl.live = append(tl.live, chunk)
	}
	// Late: 10 minutes behind the newest event once the stream is at the end.
	for range 5 {
		tl.late = append(tl.late, ev(tl.end.Add(-10*time.Minute-time.Duration(rng.Int64N(int64(20*time.Minute))))))
	}
	return tl
}

// randomEvent is an event of the oracle feature set for key at t, with
// random field values and a null now and then.
func randomEvent(set *schemas.FeatureSet, rng *rand.Rand, key string, t time.Time) schemas.Event {
	words := []string{"apple", "kiwi", "lime", "pear", "plum", "fig", "date", "yuzu"}
	vals := make([]schemas.Value, len(set.Fields))
	for i, fd := range set.Fields {
		switch fd.Name {
		case "account":
			vals[i] = schemas.StringValue(key)
		case "n":
			vals[i] = schemas.Int64Value(rng.Int64N(2000) - 500)
		case "x":
			vals[i] = schemas.Float64Value(math.Round(rng.NormFloat64()*1e6) / 1e3)
		case "s":
			vals[i] = schemas.StringValue(words[rng.IntN(len(words))])
		case "ok":
			vals[i] = schemas.BoolValue(rng.IntN(3) > 0)
		case "ts":
			vals[i] = schemas.TimestampValue(t)
		}
		if fd.Name != "account" && fd.Name != "ts" && rng.IntN(40) == 0 {
			vals[i] = schemas.Value{} // a null now and then
		}
	}
	return schemas.Event{Key: key, Time: t.UnixMicro(), Values: vals}
}

type featureJSON struct {
	Value  json.RawMessage `json:"value"`
	Status string          `json:"status"`
	AsOf   string          `json:"as_of"`
}

type entityJSON struct {
	Entity   string                 `json:"entity"`
	Features map[string]featureJSON `json:"features"`
}

// startOracleBackends starts backends for the feature set of
// testdata/oracle.yaml. Close them when done.
func startOracleBackends(ctx context.Context, t *testing.T) (*schemas.FeatureSet, *Backends) {
	t.Helper()
	set, err := schemas.Load(filepath.Join("testdata", "oracle.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := StartBackends(ctx, []*schemas.FeatureSet{set}, BackendOptions{}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return set, b
}

// TestOracle runs history through the batch pipeline and a live stream
// through the streaming pipeline, then checks every value the HTTP API
// serves at several read times against the brute-force computation.
func TestOracle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	set, b := startOracleBackends(ctx, t)
	defer b.Close()

	// The last read (t0 + 4h32m) must not be in the future.
	t0 := time.Now().UTC().Truncate(time.Hour).Add(-5 * time.Hour)
	tl := makeTimeline(set, 42, t0)
	dir := t.TempDir()
	res, err := b.RunBatch(ctx, set, tl.history, tl.asOf, dir)
	if err != nil {
		t.Fatalf("batch: %v", err)
	}
	if !res.Committed || res.Events != int64(len(tl.history)) {
		t.Fatalf("batch: committed %v, %d events, want true, %d", res.Committed, res.Events, len(tl.history))
	}

	st := b.StartStream(ctx, set, StreamOptions{DeadLetter: filepath.Join(dir, "dead")})
	var live []schemas.Event
	for i, chunk := range tl.live {
		msgs := make([][]byte, len(chunk))
		for j, e := range chunk {
			msgs[j] = set.EncodeJSON(e)
		}
		if err := b.Publish(ctx, set.Name, msgs...); err != nil {
			t.Fatal(err)
		}
		live = append(live, chunk...)
		if i == 0 {
			// Wait until the pipeline is up and has read the first chunk,
			// so that later chunks cannot overtake it.
			if err := b.WaitAcked(ctx); err != nil {
				t.Fatal(err)
			}
		} else {
			time.Sleep(150 * time.Millisecond)
		}
	}
	if err := b.WaitAcked(ctx); err != nil {
		t.Fatal(err)
	}
	var lateMsgs [][]byte
	for _, e := range tl.late {
		lateMsgs = append(lateMsgs, set.EncodeJSON(e))
	}
	lateMsgs = append(lateMsgs, []byte(`{"account":"a_1","ts":"not a time"}`), []byte(`not json`))
	// Stamped an hour past the pipeline's clock (max_future 1m): it would
	// count in a read at "now" before it happens.
	future := time.Now().UTC().Add(time.Hour).Format(time.RFC3339Nano)
	lateMsgs = append(lateMsgs, []byte(`{"account":"a_1","n":1,"ts":"`+future+`"}`))
	if err := b.Publish(ctx, set.Name, lateMsgs...); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitAcked(ctx); err != nil {
		t.Fatal(err)
	}
	sres, err := st.Stop(ctx)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	t.Logf("stream counters: %v", sres.Counters)
	if got := sres.Counters[set.Name+"_dead_letter_late"]; got != int64(len(tl.late)) {
		t.Errorf("late dead letters = %d, want %d", got, len(tl.late))
	}
	if got := sres.Counters[set.Name+"_dead_letter_decode"]; got != 2 {
		t.Errorf("decode dead letters = %d, want 2", got)
	}
	if got := sres.Counters[set.Name+"_dead_letter_future"]; got != 1 {
		t.Errorf("future dead letters = %d, want 1", got)
	}

	all := append(append([]schemas.Event{}, tl.history...), live...)
	srv, err := b.NewServer(serving.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()

	newestLive := tl.asOf
	for _, e := range live {
		if e.EventTime().After(newestLive) {
			newestLive = e.EventTime()
		}
	}
	histEv, liveEv := tl.history[100].EventTime(), live[len(live)/2].EventTime()
	reads := []time.Time{
		t0.Add(45 * time.Minute),                       // batch only, on a tile boundary
		t0.Add(47*time.Minute + 2500*time.Millisecond), // batch only, mid-tile
		histEv.Add(time.Microsecond),                   // 1 µs after a history event
		tl.asOf.Add(-time.Microsecond),                 // just before the seam
		tl.asOf,                                        // on the seam
		tl.asOf.Add(10*time.Minute + 7*time.Second),    // both sides in the window
		liveEv, liveEv.Add(time.Microsecond), // on a live event, 1 µs after it
		tl.end.Add(-time.Second),                // the last live events
		newestLive.Add(time.Microsecond),        // 1 µs after the newest event: real time
		tl.end.Add(30 * time.Minute),            // 10m windows have emptied
		tl.end.Add(2*time.Hour + 2*time.Minute), // every window has emptied
		time.Now().UTC(),                        // now
	}
	entities := []string{"a_1", "a_2", "a_3", "a_4", "a_5", "a_6", "nobody"}
	checked, asOfs, derived := 0, 0, map[string]int{}
	nonEmpty, beyondCapacity := map[string]int{}, map[string]int{}
	for _, at := range reads {
		got := postFeatures(t, hs.URL, set.Name, entities, at)
		for _, ent := range got {
			var evs []schemas.Event
			for _, e := range all {
				if e.Key == ent.Entity {
					evs = append(evs, e)
				}
			}
			newest := time.Time{}
			for _, e := range evs {
				if e.EventTime().After(newest) {
					newest = e.EventTime()
				}
			}
			oracle := map[string]bruteValue{}
			for _, f := range set.Features {
				fj, present := ent.Features[f.Name]
				if !present {
					t.Errorf("at %s %s/%s: missing from the response", at.Format(time.RFC3339Nano), ent.Entity, f.Name)
					continue
				}
				// A value is exact at at, or (a read of the past whose head
				// tile may hold later events) at its as_of, the head tile's
				// start, strictly before at; a real-time read (after T_b and
				// every event of the entity) is always exact at at.
				exact := at
				if fj.AsOf != "" {
					asOfs++
					a, err := time.Parse(time.RFC3339Nano, fj.AsOf)
					if err != nil || !a.Equal(floorTo(at, f.Tile)) || !a.Before(at) {
						t.Errorf("at %s %s/%s: as_of %q, want the start of the tile holding at, before at", at.Format(time.RFC3339Nano), ent.Entity, f.Name, fj.AsOf)
						continue
					}
					if !at.Before(tl.asOf) && at.After(newest) {
						t.Errorf("at %s %s/%s: a real-time read has as_of %s", at.Format(time.RFC3339Nano), ent.Entity, f.Name, fj.AsOf)
					}
					exact = a
				}
				want, ok := expected(f, evs, exact)
				oracle[f.Name] = bruteValue{want, ok, fj.AsOf}
				checked++
				if ok && string(fj.Value) != "0" && string(fj.Value) != `{"buckets":{},"overflow":0}` {
					nonEmpty[f.Name]++
				}
				if w, isTopK := want.(*brute.TopK); isTopK && len(w.Counts) > w.Capacity {
					beyondCapacity[f.Name]++
				}
				if msg := compareValue(f, want, ok, fj); msg != "" {
					t.Errorf("at %s %s/%s: %s", at.Format(time.RFC3339Nano), ent.Entity, f.Name, msg)
				}
			}
			for _, name := range checkDerived(t, fmt.Sprintf("at %s %s", at.Format(time.RFC3339Nano), ent.Entity), set, ent.Features, oracle) {
				derived[name]++
			}
		}
	}
	for _, f := range set.Features {
		if nonEmpty[f.Name] == 0 {
			t.Errorf("%s was never other than empty: the test does not reach the op", f.Name)
		}
	}
	if beyondCapacity["top2_n_2h"] == 0 {
		t.Error("top2_n_2h never held more distinct values than its counters: the test does not reach the Misra-Gries bound")
	}
	t.Logf("top_k values checked beyond capacity (the error bound): %v", beyondCapacity)
	for _, d := range set.Derived {
		if derived[d.Name] == 0 {
			t.Errorf("every %s was null: the test does not reach the derived feature", d.Name)
		}
	}
	t.Logf("checked %d values at %d read times (%d exact at their head tile's start, as_of): %d history events, %d live, %d late", checked, len(reads), asOfs, len(tl.history), len(live), len(tl.late))
	if asOfs == 0 {
		t.Error("no value came with as_of: the reads of the past do not reach the rule")
	}
}

// bruteValue is a feature's brute-force value (ok false: NOT_FOUND) and
// the as_of the server gave it.
type bruteValue struct {
	v    any
	ok   bool
	asOf string
}

// oracleDerived are the derived features of testdata/oracle.yaml written
// out in Go over the brute-force values of their inputs, sharing no code
// with schemas' expressions: their inputs, and their value (ok false: null,
// NOT_FOUND) as documented: division by zero is null, nulls propagate
// through arithmetic and comparisons, coalesce takes the first non-null,
// `or` is three-valued.
var oracleDerived = map[string]struct {
	inputs []string
	value  func(in map[string]bruteValue) (any, bool)
}{
	"notok_share_10m": { // notok_cnt_10m / cnt_10m
		[]string{"notok_cnt_10m", "cnt_10m"},
		func(in map[string]bruteValue) (any, bool) {
			n, c := in["notok_cnt_10m"].v.(int64), in["cnt_10m"].v.(int64)
			if c == 0 {
				return nil, false
			}
			return float64(n) / float64(c), true
		},
	},
	"n_gap_1h": { // max_n_1h - min_n_1h
		[]string{"max_n_1h", "min_n_1h"},
		func(in map[string]bruteValue) (any, bool) {
			hi, lo := in["max_n_1h"], in["min_n_1h"]
			if !hi.ok || !lo.ok {
				return nil, false
			}
			return hi.v.(int64) - lo.v.(int64), true
		},
	},
	"low_or_busy": { // coalesce(max_n_1h, 0) < -400 or cnt_10m >= 8
		[]string{"max_n_1h", "cnt_10m"},
		func(in map[string]bruteValue) (any, bool) {
			m := int64(0)
			if in["max_n_1h"].ok {
				m = in["max_n_1h"].v.(int64)
			}
			return m < -400 || in["cnt_10m"].v.(int64) >= 8, true
		},
	},
}

// checkDerived checks the derived features of an entity's response against
// oracleDerived over the brute-force values of their inputs: the value,
// NOT_FOUND for null, and as_of the earliest of the inputs'. It returns the
// names of those that were not null.
func checkDerived(t *testing.T, where string, set *schemas.FeatureSet, got map[string]featureJSON, in map[string]bruteValue) []string {
	t.Helper()
	var nonNull []string
	for _, d := range set.Derived {
		o, ok := oracleDerived[d.Name]
		if !ok {
			t.Fatalf("no oracle for derived feature %s", d.Name)
		}
		fj, present := got[d.Name]
		if !present {
			t.Errorf("%s: %s missing from the response", where, d.Name)
			continue
		}
		asOf := ""
		for _, name := range o.inputs {
			if a := in[name].asOf; a != "" && (asOf == "" || a < asOf) {
				asOf = a // RFC 3339 in UTC with the same precision: ordered as strings
			}
		}
		if fj.AsOf != asOf {
			t.Errorf("%s: %s as_of %q, want %q, the earliest of its inputs'", where, d.Name, fj.AsOf, asOf)
		}
		want, ok := o.value(in)
		if msg := compareValue(schemas.Feature{Name: d.Name, FieldType: d.Type}, want, ok, fj); msg != "" {
			t.Errorf("%s: %s: %s", where, d.Name, msg)
		}
		if ok {
			nonNull = append(nonNull, d.Name)
		}
	}
	return nonNull
}

func postFeatures(t *testing.T, base, set string, entities []string, at time.Time) []entityJSON {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"entities": entities, "at": at.Format(time.RFC3339Nano)})
	resp, err := http.Post(base+"/v1/features/"+url.PathEscape(set), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST features at %s: status %d, %s %v", at, resp.StatusCode, raw, err)
	}
	var out struct {
		Results []entityJSON `json:"results"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("POST features at %s: %v", at, err)
	}
	return out.Results
}

// compareValue reports how a served value differs from the oracle's, within
// the documented tolerances (brute.Agrees): exact for counts, integer sums,
// min, max, first, last, last_k, first_k, histogram and top_k under its
// capacity; 1e-9 relative for float sums, means and stddev; HLL within 3
// standard errors (exact at these small cardinalities); top_k beyond its
// capacity within the Misra-Gries bound; percentiles within 1% of the
// exact ones and equal to a DDSketch built directly.
func compareValue(f schemas.Feature, want any, ok bool, got featureJSON) string {
	if !ok {
		if got.Status != "NOT_FOUND" || string(got.Value) != "null" {
			return fmt.Sprintf("got %s %s, want null NOT_FOUND", got.Value, got.Status)
		}
		return ""
	}
	if got.Status != "PRESENT" && got.Status != "STALE" {
		return fmt.Sprintf("status %s, want PRESENT or STALE", got.Status)
	}
	v, err := brute.FromJSON(f, got.Value)
	if err != nil {
		return fmt.Sprintf("value %s: %v", got.Value, err)
	}
	return brute.Agrees(f, v, want)
}
