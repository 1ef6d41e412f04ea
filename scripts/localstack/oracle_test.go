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
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/serving"
	"github.com/tandem-fp/tandem/transforms/aggregate"
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
	case "max_n_1h": // n < 0 or ok is null
		return func(e schemas.Event) bool {
			return !e.Values[1].IsNull() && e.Values[1].Int < 0 || e.Values[4].IsNull()
		}
	}
	return func(schemas.Event) bool { return true }
}

// expected computes a feature's value at `at` by brute force over the raw
// events, under the window contract: the events with event time in
// [floor(at − window), at), floor to the feature's tile size. It shares no
// code with tiles or the aggregation algebra.
func expected(set *schemas.FeatureSet, f schemas.Feature, events []schemas.Event, at time.Time) (any, bool) {
	from, to := floorTo(at.Add(-f.Window), f.Tile), at
	var in []schemas.Event
	keep := oracleKeep(f.Name)
	for _, e := range events {
		if t := e.EventTime(); !t.Before(from) && t.Before(to) && keep(e) {
			in = append(in, e)
		}
	}
	vals := func() []schemas.Value {
		var vs []schemas.Value
		for _, e := range in {
			if v := e.Values[f.FieldIndex]; !v.IsNull() {
				vs = append(vs, v)
			}
		}
		return vs
	}
	switch f.Op {
	case schemas.OpCount:
		return int64(len(in)), true
	case schemas.OpSum:
		vs := vals()
		if f.FieldType == schemas.Int64 {
			var s int64
			for _, v := range vs {
				s += v.Int
			}
			return s, true
		}
		s := 0.0
		for _, v := range vs {
			s += v.Float
		}
		return s, true
	case schemas.OpApproxCountDistinct:
		seen := map[string]bool{}
		for _, v := range vals() {
			seen[v.String()] = true
		}
		return int64(len(seen)), true
	}
	vs := vals()
	if len(vs) == 0 {
		return nil, false
	}
	switch f.Op {
	case schemas.OpMin, schemas.OpMax:
		best := vs[0]
		for _, v := range vs[1:] {
			c := compare(v, best)
			if (f.Op == schemas.OpMin && c < 0) || (f.Op == schemas.OpMax && c > 0) {
				best = v
			}
		}
		return best.Interface(), true
	case schemas.OpMean:
		s := 0.0
		for _, v := range vs {
			s += v.AsFloat()
		}
		return s / float64(len(vs)), true
	case schemas.OpStddev:
		mean := 0.0
		for _, v := range vs {
			mean += v.AsFloat()
		}
		mean /= float64(len(vs))
		ss := 0.0
		for _, v := range vs {
			d := v.AsFloat() - mean
			ss += d * d
		}
		return math.Sqrt(ss / float64(len(vs))), true
	case schemas.OpLast:
		// Latest event time; of equal times the largest value.
		var bestT int64
		var best schemas.Value
		found := false
		for _, e := range in {
			v := e.Values[f.FieldIndex]
			if v.IsNull() {
				continue
			}
			if !found || e.Time > bestT || (e.Time == bestT && compare(v, best) > 0) {
				bestT, best, found = e.Time, v, true
			}
		}
		return best.Interface(), true
	}
	panic("unknown op " + f.Op)
}

func compare(a, b schemas.Value) int {
	switch a.Type {
	case schemas.String:
		return strings.Compare(a.Str, b.Str)
	case schemas.Float64:
		switch {
		case a.Float < b.Float:
			return -1
		case a.Float > b.Float:
			return 1
		}
		return 0
	}
	switch {
	case a.Int < b.Int:
		return -1
	case a.Int > b.Int:
		return 1
	}
	return 0
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
	checked, asOfs, derived := 0, 0, 0
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
			brute := map[string]bruteValue{}
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
				want, ok := expected(set, f, evs, exact)
				brute[f.Name] = bruteValue{want, ok, fj.AsOf}
				checked++
				if msg := compareValue(f, want, ok, fj); msg != "" {
					t.Errorf("at %s %s/%s: %s", at.Format(time.RFC3339Nano), ent.Entity, f.Name, msg)
				}
			}
			if checkShare(t, fmt.Sprintf("at %s %s", at.Format(time.RFC3339Nano), ent.Entity), ent.Features["notok_share_10m"], brute) {
				derived++
			}
		}
	}
	if derived == 0 {
		t.Error("every notok_share_10m was null: the test does not reach the derived feature")
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

// checkShare checks the derived notok_share_10m = notok_cnt_10m / cnt_10m
// against the brute-force values of its inputs, written out in Go: null
// (NOT_FOUND) when cnt_10m is 0, as_of the earlier of the inputs'. It
// reports whether the value was not null.
func checkShare(t *testing.T, where string, got featureJSON, in map[string]bruteValue) bool {
	t.Helper()
	n, c := in["notok_cnt_10m"], in["cnt_10m"]
	asOf := n.asOf
	if c.asOf != "" && (asOf == "" || c.asOf < asOf) {
		asOf = c.asOf
	}
	if got.AsOf != asOf {
		t.Errorf("%s: notok_share_10m as_of %q, want %q", where, got.AsOf, asOf)
	}
	if c.v.(int64) == 0 {
		if msg := compareValue(schemas.Feature{}, nil, false, got); msg != "" {
			t.Errorf("%s: notok_share_10m: %s", where, msg)
		}
		return false
	}
	if msg := compareValue(schemas.Feature{}, float64(n.v.(int64))/float64(c.v.(int64)), true, got); msg != "" {
		t.Errorf("%s: notok_share_10m: %s", where, msg)
	}
	return true
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
// the documented tolerances: exact for counts, integer sums, min, max and
// last; 1e-9 relative for float sums, means and stddev; HLL within 3
// standard errors (exact at these small cardinalities).
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
	dec := json.NewDecoder(bytes.NewReader(got.Value))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Sprintf("value %s: %v", got.Value, err)
	}
	switch w := want.(type) {
	case int64:
		n, err := v.(json.Number).Int64()
		if err != nil {
			return fmt.Sprintf("got %s, want integer %d", got.Value, w)
		}
		if f.Op == schemas.OpApproxCountDistinct {
			if math.Abs(float64(n-w)) > math.Max(1, 3*aggregate.HLLStdError*float64(w)) {
				return fmt.Sprintf("got %d, want %d ± 3σ", n, w)
			}
			return ""
		}
		if n != w {
			return fmt.Sprintf("got %d, want %d", n, w)
		}
	case float64:
		x, err := v.(json.Number).Float64()
		if err != nil || math.Abs(x-w) > 1e-9*math.Max(1, math.Abs(w)) {
			return fmt.Sprintf("got %s, want %v", got.Value, w)
		}
	case string:
		if v != w {
			return fmt.Sprintf("got %s, want %q", got.Value, w)
		}
	case bool:
		if v != w {
			return fmt.Sprintf("got %s, want %v", got.Value, w)
		}
	case time.Time:
		s, _ := v.(string)
		gt, err := time.Parse(time.RFC3339Nano, s)
		if err != nil || !gt.Equal(w) {
			return fmt.Sprintf("got %s, want %s", got.Value, w.Format(time.RFC3339Nano))
		}
	default:
		return fmt.Sprintf("oracle value %T not handled", want)
	}
	return ""
}
