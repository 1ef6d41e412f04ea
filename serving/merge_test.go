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
	"github.com/tandem-fp/tandem/transforms/aggregate"
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
func TestPointInTime(t *testing.T) {
	e := newEnv(t)
	r := rand.New(rand.NewPCG(1, 2))
	tb := e.tb
	streamFrom := tb.Add(-6 * time.Hour)
	merchants := []string{"a", "b", "c", "d", "e"}
	entities := []string{"busy", "quiet"}
	events := map[string][]schemas.Event{}
	newest := map[string]int64{}
	var batch, stream []schemas.Event
	for _, ent := range entities {
		n := map[string]int{"busy": 600, "quiet": 8}[ent]
		for range n {
			at := tb.Add(time.Duration(r.Int64N(int64(48*time.Hour))) - 40*time.Hour).Truncate(time.Millisecond)
			if !at.Before(e.now) {
				continue
			}
			ev := e.card(ent, at, merchants[r.IntN(len(merchants))], float64(r.IntN(20000))/100) // approved below 100
			events[ent] = append(events[ent], ev)
			if at.Before(tb) {
				batch = append(batch, ev)
			}
			if !at.Before(streamFrom) {
				stream = append(stream, ev)
				newest[ent] = max(newest[ent], ev.Time)
			}
		}
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
			brute := map[string]oracleValue{} // the stored features' brute-force values
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
				brute[name] = oracleValue{want, ok, o["as_of"]}
				if !ok {
					if o["value"] != nil || o["status"] != "NOT_FOUND" {
						t.Errorf("%s %s at %s = %v, want null NOT_FOUND", ent, name, rfc(at), o)
					}
					continue
				}
				if e.oracleFilter(name) != nil && want.AsFloat() != 0 {
					filtered++
				}
				if !sameValue(want, o["value"]) {
					t.Errorf("%s %s at %s (exact at %s) = %v, want %v", ent, name, rfc(at), rfc(exact), o["value"], want)
				}
			}
			derived += checkDerived(t, fmt.Sprintf("%s at %s", ent, rfc(at)), res.body["features"].(map[string]any), brute)
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
}

// oracleValue is a stored feature's brute-force value (ok false: NOT_FOUND)
// and the as_of the server gave it (nil: none).
type oracleValue struct {
	v    schemas.Value
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
			d, s := in["declined_amount_24h"], in["amount_sum_24h"]
			if !d.ok || !s.ok || s.v.Float == 0 {
				return nil, false
			}
			return d.v.Float / s.v.Float, true
		},
	},
	"big_spender": { // amount_mean_24h > 50 or ab_count_1h >= 2
		[]string{"amount_mean_24h", "ab_count_1h"},
		func(in map[string]oracleValue) (any, bool) {
			m, c := in["amount_mean_24h"], in["ab_count_1h"]
			if c.ok && c.v.Int >= 2 || m.ok && m.v.Float > 50 {
				return true, true
			}
			if !m.ok || !c.ok {
				return nil, false
			}
			return false, true
		},
	},
}

// checkDerived checks the derived features of a response whose inputs it
// holds against oracleDerived over the inputs' brute-force values: the
// value, NOT_FOUND for null, and as_of the earliest of the inputs'. It
// returns how many it checked.
func checkDerived(t *testing.T, where string, got map[string]any, brute map[string]oracleValue) int {
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
			b, ok := brute[in]
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
		want, ok := d.value(brute)
		switch {
		case !ok:
			if o["value"] != nil || o["status"] != "NOT_FOUND" {
				t.Errorf("%s: %s = %v, want null NOT_FOUND", where, name, o)
			}
		case o["status"] != "PRESENT":
			t.Errorf("%s: %s = %v, want %v PRESENT", where, name, o, want)
		default:
			if f, isFloat := want.(float64); isFloat {
				if !sameValue(schemas.Float64Value(f), o["value"]) {
					t.Errorf("%s: %s = %v, want %v", where, name, o["value"], want)
				}
			} else if fmt.Sprint(o["value"]) != fmt.Sprint(want) {
				t.Errorf("%s: %s = %v, want %v", where, name, o["value"], want)
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
	case "declined_amount_24h": // not approved
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

// bruteForce folds the events in [floor(at − W), at) that keep (nil: all)
// into the feature's aggregate, straight from the raw events.
func bruteForce(f schemas.Feature, events []schemas.Event, at time.Time, keep func(schemas.Event) bool) (schemas.Value, bool) {
	from, to := floorTo(at.UnixMicro()-f.Window.Microseconds(), f.Tile), at.UnixMicro()
	p := aggregate.For(f)
	for _, ev := range events {
		if ev.Time >= from && ev.Time < to && (keep == nil || keep(ev)) {
			var v schemas.Value
			if f.FieldIndex >= 0 {
				v = ev.Values[f.FieldIndex]
			}
			p.Add(v, ev.Time)
		}
	}
	return p.Result()
}

// sameValue compares a merged value with its JSON form; floats to 1e-9.
func sameValue(want schemas.Value, got any) bool {
	s := fmt.Sprint(got)
	switch want.Type {
	case schemas.Float64:
		var g float64
		if _, err := fmt.Sscan(s, &g); err != nil {
			return false
		}
		return math.Abs(g-want.Float) <= 1e-9*math.Max(1, math.Abs(want.Float))
	case schemas.Timestamp:
		return s == rfc(time.UnixMicro(want.Int))
	}
	return s == want.String()
}
