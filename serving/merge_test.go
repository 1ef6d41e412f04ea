package serving

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/schemastest/brute"
)

// TestPointInTime is the property test of the window contract: random
// events written the way the pipelines write them (the batch side holds
// every event before T_b, the stream side every event from some hours
// before T_b on, so the two overlap), read at random instants — on tile
// boundaries, on an event, 1 µs after one, mid-tile, on both sides of the
// seam, now — and every value checked against the events of its window
// computed directly from the raw events:
//
//   - a value without as_of equals the aggregate of the events in
//     [floor(at − W), at) (floor to the feature's tile);
//   - a value with as_of has as_of = floor(at) < at and equals the aggregate
//     of [floor(as_of − W), as_of): so no value counts an event at or after
//     at;
//   - a real-time read (at ≥ T_b and after the entity's newest event) is
//     exact: no as_of.
//
// The batch watermark is the midnight before now − 6h, so where now falls
// in the day decides how much of each window lies on either side of the
// seam and how many events a window holds (which decides, for one, whether
// the top_k of a window of mostly distinct amounts reports any value at
// all). The test runs with the server's clock at four times of day, the
// wall clock's and 6, 12 and 18 hours before it, so that it checks the
// same cases whenever it runs.
func TestPointInTime(t *testing.T) {
	for _, back := range []time.Duration{0, 6 * time.Hour, 12 * time.Hour, 18 * time.Hour} {
		now := time.Now().Add(-back)
		t.Run(fmt.Sprintf("now-%s_%s", back, now.UTC().Format("15h04")), func(t *testing.T) {
			testPointInTime(t, now)
		})
	}
}

func testPointInTime(t *testing.T, now time.Time) {
	e := newEnvCardsAt(t, pointInTimeCardsYAML, now)
	items, _ := e.cards.FieldIndex("items")
	r := rand.New(rand.NewPCG(1, 2))
	tb := e.tb
	streamFrom := tb.Add(-6 * time.Hour)
	merchants := []string{"a", "b", "c", "d", "e"}
	entities := []string{"busy", "quiet"}
	events := map[string][]schemas.Event{}
	newest := map[string]int64{}
	var batch, stream []schemas.Event
	add := func(ent string, at time.Time) {
		if !at.Before(e.now) {
			return
		}
		amount := float64(r.IntN(20000)) / 100 // approved below 100
		if r.IntN(4) == 0 {
			amount = []float64{9.99, 42, 150}[r.IntN(3)] // frequent amounts among hundreds of distinct ones
		}
		ev := e.card(ent, at, merchants[r.IntN(len(merchants))], amount)
		ev.Values[items] = schemas.Int64Value(r.Int64N(12) - 2)
		if r.IntN(25) == 0 {
			ev.Values[items] = schemas.Value{} // a null now and then
		}
		events[ent] = append(events[ent], ev)
		if at.Before(tb) {
			batch = append(batch, ev)
		}
		if !at.Before(streamFrom) {
			stream = append(stream, ev)
			newest[ent] = max(newest[ent], ev.Time)
		}
	}
	for _, ent := range entities {
		n := map[string]int{"busy": 600, "quiet": 8}[ent]
		for range n {
			add(ent, tb.Add(time.Duration(r.Int64N(int64(48*time.Hour)))-40*time.Hour).Truncate(time.Millisecond))
		}
	}
	// Ties: events at one instant, on tile boundaries and off them, which
	// first, last and the k ops break by value.
	for i := range 30 {
		at := tb.Add(-time.Duration(r.Int64N(40)) * time.Hour)
		if i%2 == 1 {
			at = at.Add(time.Duration(r.Int64N(int64(time.Hour)))).Truncate(time.Millisecond)
		}
		ent := entities[i%3/2] // quiet's are alone in their windows
		add(ent, at)
		add(ent, at)
		add(ent, at)
	}
	e.write(e.cards, schemas.FamilyBatch, batch...)
	e.write(e.cards, schemas.FamilyStream, stream...)
	e.freshness("cards", tb, e.now.Truncate(time.Minute))

	// Read instants: random ones around the seam, tile boundaries of every
	// tile size, events and 1 µs after them, and now.
	var reads []time.Time
	for range 24 {
		reads = append(reads, tb.Add(time.Duration(r.Int64N(int64(12*time.Hour)))-4*time.Hour).Truncate(time.Microsecond))
	}
	for _, d := range []time.Duration{time.Minute, 15 * time.Minute, 3 * time.Hour} {
		reads = append(reads, tb.Add(-d), tb, tb.Add(d), e.now.Truncate(d))
	}
	for range 6 {
		ev := events["busy"][r.IntN(len(events["busy"]))]
		reads = append(reads, ev.EventTime(), ev.EventTime().Add(time.Microsecond))
	}
	reads = append(reads, e.now, time.UnixMicro(newest["busy"]+1))
	asOfs, filtered, derived := 0, 0, 0
	nonEmpty, beyondCapacity, beyondCapacityReported := map[string]int{}, 0, 0
	for i, at := range reads {
		if at.After(e.now) {
			continue
		}
		var names []string
		if i%2 == 1 { // a random subset
			for _, f := range e.cards.Features {
				if r.IntN(3) == 0 {
					names = append(names, f.Name)
				}
			}
		}
		for _, ent := range entities {
			q := "?at=" + url.QueryEscape(rfc(at))
			if len(names) > 0 {
				q += "&features=" + strings.Join(names, ",")
			}
			res := e.get("/v1/features/cards/" + ent + q)
			if res.status != 200 {
				t.Fatalf("GET %s: %d %s", q, res.status, res.raw)
			}
			oracle := map[string]oracleValue{} // the stored features' brute-force values
			for name, fv := range res.body["features"].(map[string]any) {
				f, stored := e.cards.Feature(name)
				if !stored {
					continue // derived: checked below
				}
				o := fv.(map[string]any)
				exact := at
				if s, ok := o["as_of"].(string); ok {
					asOfs++
					asOf, err := time.Parse(time.RFC3339Nano, s)
					if err != nil {
						t.Fatalf("%s %s at %s: as_of %q: %v", ent, name, rfc(at), s, err)
					}
					if head := floorTo(at.UnixMicro(), f.Tile); asOf.UnixMicro() != head || !asOf.Before(at) {
						t.Errorf("%s %s at %s: as_of %s, want the head tile start %s, before at", ent, name, rfc(at), s, rfc(time.UnixMicro(head)))
					}
					if !at.Before(tb) && at.UnixMicro() > newest[ent] {
						t.Errorf("%s %s at %s: a real-time read (after T_b and the newest event) has as_of %s", ent, name, rfc(at), s)
					}
					exact = asOf
				}
				want, ok := bruteForce(f, events[ent], exact, e.oracleFilter(name))
				oracle[name] = oracleValue{want, ok, o["as_of"]}
				if !ok {
					if o["value"] != nil || o["status"] != "NOT_FOUND" {
						t.Errorf("%s %s at %s = %v, want null NOT_FOUND", ent, name, rfc(at), o)
					}
					continue
				}
				got, err := brute.Canon(f, o["value"])
				if err != nil {
					t.Fatalf("%s %s at %s: %v", ent, name, rfc(at), err)
				}
				if msg := brute.Agrees(f, got, want); msg != "" {
					t.Errorf("%s %s at %s (exact at %s): %s", ent, name, rfc(at), rfc(exact), msg)
				}
				if s := fmt.Sprint(got); s != "0" && s != "[]" && s != "map[buckets:map[] overflow:0]" {
					nonEmpty[name]++
					if e.oracleFilter(name) != nil {
						filtered++
					}
				}
				if w, isTopK := want.(*brute.TopK); isTopK && len(w.Counts) > w.Capacity {
					beyondCapacity++
					if l, _ := got.([]any); len(l) > 0 {
						beyondCapacityReported++
					}
				}
			}
			derived += checkDerived(t, fmt.Sprintf("%s at %s", ent, rfc(at)), res.body["features"].(map[string]any), oracle)
		}
	}
	if asOfs == 0 {
		t.Error("no read of the past came with as_of: the test does not reach the rule")
	}
	if derived == 0 {
		t.Error("no derived feature was checked")
	}
	if filtered == 0 {
		t.Error("no filtered feature had a non-zero value: the test does not reach the filters")
	}
	for _, f := range e.cards.Features {
		if nonEmpty[f.Name] == 0 {
			t.Errorf("%s was never other than empty: the test does not reach the op", f.Name)
		}
	}
	if beyondCapacity == 0 {
		t.Error("no top_k value held more distinct values than its counters: the test does not reach the Misra-Gries bound")
	}
	if beyondCapacityReported == 0 {
		t.Error("no top_k value beyond its counters reported a value: the test does not reach the frequent values the bound keeps")
	}
}

// pointInTimeCardsYAML is the cards set with a feature of every op of the
// list and map kinds, a filtered one among them, and one more derived
// feature: TestPointInTime's.
var pointInTimeCardsYAML = strings.Replace(cardsYAML, "derived:\n", `  - {name: first_merchant_1h, op: first, field: merchant, window: 1h}
  - {name: last3_merchants_1h, op: last_k, field: merchant, k: 3, window: 1h}
  - {name: first2_items_24h, op: first_k, field: items, k: 2, window: 24h}
  # 5 merchants, under the 128 counters: exact.
  - {name: top2_merchants_24h, op: top_k, field: merchant, k: 2, window: 24h}
  # Hundreds of distinct amounts: within the Misra-Gries bound.
  - {name: top2_amounts_24h, op: top_k, field: amount, k: 2, window: 24h}
  - {name: amount_pct_24h, op: approx_percentile, field: amount, percentiles: [0.25, 0.5, 0.95], window: 24h}
  - {name: items_pct_1h, op: approx_percentile, field: items, percentiles: [0.5, 0.9], window: 1h, tile: 15m}
  - {name: merchant_hist_24h, op: histogram, field: merchant, buckets: 3, window: 24h}
  - {name: declined_merchants_24h, op: histogram, field: merchant, buckets: 4, window: 24h, where: not approved}
derived:
  - {name: items_per_txn_1h, expr: items_sum_1h / txn_count_1h}
`, 1)

// oracleValue is a stored feature's brute-force value (ok false: NOT_FOUND)
// and the as_of the server gave it (nil: none).
type oracleValue struct {
	v    any
	ok   bool
	asOf any
}

// oracleDerived are the derived features of cards written out in Go,
// sharing no code with schemas' expressions: their inputs, and their value
// from the inputs' brute-force values (ok false: null, NOT_FOUND).
var oracleDerived = map[string]struct {
	inputs []string
	value  func(in map[string]oracleValue) (any, bool)
}{
	"declined_share_24h": { // declined_amount_24h / amount_sum_24h
		[]string{"declined_amount_24h", "amount_sum_24h"},
		func(in map[string]oracleValue) (any, bool) {
			d, s := in["declined_amount_24h"].v.(float64), in["amount_sum_24h"].v.(float64)
			if s == 0 {
				return nil, false
			}
			return d / s, true
		},
	},
	"big_spender": { // amount_mean_24h > 50 or ab_count_1h >= 2
		[]string{"amount_mean_24h", "ab_count_1h"},
		func(in map[string]oracleValue) (any, bool) {
			m, c := in["amount_mean_24h"], in["ab_count_1h"]
			if c.v.(int64) >= 2 || m.ok && m.v.(float64) > 50 {
				return true, true
			}
			if !m.ok {
				return nil, false
			}
			return false, true
		},
	},
	"items_per_txn_1h": { // items_sum_1h / txn_count_1h
		[]string{"items_sum_1h", "txn_count_1h"},
		func(in map[string]oracleValue) (any, bool) {
			s, c := in["items_sum_1h"].v.(int64), in["txn_count_1h"].v.(int64)
			if c == 0 {
				return nil, false
			}
			return float64(s) / float64(c), true
		},
	},
}

// checkDerived checks the derived features of a response whose inputs it
// holds against oracleDerived over the inputs' brute-force values: the
// value, NOT_FOUND for null, and as_of the earliest of the inputs'. It
// returns how many it checked.
func checkDerived(t *testing.T, where string, got map[string]any, oracle map[string]oracleValue) int {
	t.Helper()
	checked := 0
	for name, d := range oracleDerived {
		fv, ok := got[name]
		if !ok {
			continue
		}
		var asOf string
		complete := true
		for _, in := range d.inputs {
			b, ok := oracle[in]
			if !ok {
				complete = false
				break
			}
			if s, ok := b.asOf.(string); ok && (asOf == "" || s < asOf) {
				asOf = s // RFC 3339 in UTC with the same precision: ordered as strings
			}
		}
		if !complete {
			continue // a subset without the inputs: their as_of is unknown
		}
		checked++
		o := fv.(map[string]any)
		if gotAsOf, _ := o["as_of"].(string); gotAsOf != asOf {
			t.Errorf("%s: %s as_of %q, want %q, the earliest of its inputs'", where, name, gotAsOf, asOf)
		}
		want, ok := d.value(oracle)
		switch {
		case !ok:
			if o["value"] != nil || o["status"] != "NOT_FOUND" {
				t.Errorf("%s: %s = %v, want null NOT_FOUND", where, name, o)
			}
		case o["status"] != "PRESENT":
			t.Errorf("%s: %s = %v, want %v PRESENT", where, name, o, want)
		default:
			f := schemas.Feature{Name: name, FieldType: schemas.Bool}
			if _, isFloat := want.(float64); isFloat {
				f.FieldType = schemas.Float64
			}
			got, err := brute.Canon(f, o["value"])
			if err != nil {
				t.Errorf("%s: %s = %v: %v", where, name, o["value"], err)
			} else if msg := brute.Agrees(f, got, want); msg != "" {
				t.Errorf("%s: %s: %s", where, name, msg)
			}
		}
	}
	return checked
}

// floorTo rounds t (Unix µs) down to a multiple of d, without the tile code.
func floorTo(t int64, d time.Duration) int64 {
	return int64(math.Floor(float64(t)/float64(d.Microseconds()))) * d.Microseconds()
}

// oracleFilter is the filter of a cards feature written out in Go, sharing
// no code with schemas' expressions: nil for a feature without one.
func (e *testEnv) oracleFilter(feature string) func(schemas.Event) bool {
	field := func(ev schemas.Event, name string) schemas.Value {
		i, _ := e.cards.FieldIndex(name)
		return ev.Values[i]
	}
	switch feature {
	case "declined_amount_24h", "declined_merchants_24h": // not approved
		return func(ev schemas.Event) bool {
			v := field(ev, "approved")
			return v.Type == schemas.Bool && v.Int == 0
		}
	case "ab_count_1h": // merchant in ("a", "b") and amount >= 20
		return func(ev schemas.Event) bool {
			m, a := field(ev, "merchant"), field(ev, "amount")
			return !m.IsNull() && (m.Str == "a" || m.Str == "b") && !a.IsNull() && a.Float >= 20
		}
	}
	return nil
}

// bruteForce computes feature f at `at` from the raw events by brute force
// (package brute): the events in [floor(at − W), at) that keep keeps (nil:
// all), sharing no code with tiles, the algebra or the expressions.
func bruteForce(f schemas.Feature, events []schemas.Event, at time.Time, keep func(schemas.Event) bool) (any, bool) {
	return brute.At(f, events, "", at.UnixMicro(), keep)
}
