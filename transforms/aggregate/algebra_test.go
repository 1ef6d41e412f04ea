package aggregate

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/tandem-fp/tandem/schemas"
)

// trials is the number of random cases each property runs per op and type.
const trials = 300

// forEachCombo runs f for every op and field type, each with its own
// fixed-seed random source.
func forEachCombo(t *testing.T, f func(t *testing.T, c combo, r *rand.Rand)) {
	t.Helper()
	for i, c := range allCombos() {
		t.Run(c.String(), func(t *testing.T) {
			f(t, c, rand.New(rand.NewPCG(uint64(i), 0x7a9d)))
		})
	}
}

func TestMergeCommutative(t *testing.T) {
	forEachCombo(t, func(t *testing.T, c combo, r *rand.Rand) {
		for range trials {
			a := randEvents(r, c.typ, r.IntN(40))
			b := randEvents(r, c.typ, r.IntN(40))
			ab, ba := addAll(t, c, a), addAll(t, c, b)
			mustMerge(t, ab, addAll(t, c, b))
			mustMerge(t, ba, addAll(t, c, a))
			if d := diffResults(c, ab, ba); d != "" {
				t.Fatalf("a.Merge(b) and b.Merge(a) differ (-ab +ba):\n%s", d)
			}
		}
	})
}

func TestMergeAssociative(t *testing.T) {
	forEachCombo(t, func(t *testing.T, c combo, r *rand.Rand) {
		for range trials {
			a := randEvents(r, c.typ, r.IntN(30))
			b := randEvents(r, c.typ, r.IntN(30))
			d := randEvents(r, c.typ, r.IntN(30))
			// (a+b)+d
			left := addAll(t, c, a)
			mustMerge(t, left, addAll(t, c, b))
			mustMerge(t, left, addAll(t, c, d))
			// a+(b+d)
			bd := addAll(t, c, b)
			mustMerge(t, bd, addAll(t, c, d))
			right := addAll(t, c, a)
			mustMerge(t, right, bd)
			if diff := diffResults(c, left, right); diff != "" {
				t.Fatalf("(a+b)+c and a+(b+c) differ (-left +right):\n%s", diff)
			}
		}
	})
}

// TestAddAllEqualsMergeOfSplits checks that adding all events to one
// partial gives the same result as splitting them at random into k parts,
// in random order, round-tripping some parts through their encoding (as
// Bigtable does), and merging the parts along a random tree.
func TestAddAllEqualsMergeOfSplits(t *testing.T) {
	forEachCombo(t, func(t *testing.T, c combo, r *rand.Rand) {
		for range trials {
			evs := randEvents(r, c.typ, r.IntN(80))
			want := addAll(t, c, evs)

			parts := make([]Partial, 1+r.IntN(6))
			for i := range parts {
				parts[i] = mustNew(t, c)
			}
			r.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
			for _, e := range evs {
				parts[r.IntN(len(parts))].Add(e.v, e.t)
			}
			for len(parts) > 1 {
				i, j := r.IntN(len(parts)), r.IntN(len(parts)-1)
				if j >= i {
					j++
				}
				other := parts[j]
				if r.IntN(3) == 0 {
					other = mustDecode(t, mustEncode(t, other))
				}
				mustMerge(t, parts[i], other)
				parts = append(parts[:j], parts[j+1:]...)
			}
			got := parts[0]

			if d := diffResults(c, want, got); d != "" {
				t.Fatalf("add all and merge of %d events in parts differ (-all +merged):\n%s", len(evs), d)
			}
			if !c.approx() {
				// Exact ops have one state per multiset of events, and one
				// encoding per state.
				if w, g := mustEncode(t, want), mustEncode(t, got); !bytes.Equal(w, g) {
					t.Fatalf("add all encodes to %x, merge of parts to %x", w, g)
				}
			}
		}
	})
}

func TestEncodeRoundTrip(t *testing.T) {
	forEachCombo(t, func(t *testing.T, c combo, r *rand.Rand) {
		for range trials {
			p := addAll(t, c, randEvents(r, c.typ, r.IntN(60)))
			enc := mustEncode(t, p)
			q := mustDecode(t, enc)
			if d := diffResults(combo{}, p, q); d != "" { // bit for bit
				t.Fatalf("Decode(Encode(p)) has another result (-p +decoded):\n%s", d)
			}
			if got := mustEncode(t, q); !bytes.Equal(got, enc) {
				t.Fatalf("Encode(Decode(%x)) = %x", enc, got)
			}
			// The decoded partial keeps working like the original.
			more := addAll(t, c, randEvents(r, c.typ, r.IntN(20)))
			mustMerge(t, p, more)
			mustMerge(t, q, more)
			if d := diffResults(combo{}, p, q); d != "" {
				t.Fatalf("merging into p and into Decode(Encode(p)) differs (-p +decoded):\n%s", d)
			}
		}
	})
}

// TestLastTiesOrderIndependent adds events with few distinct event times in
// random orders: last, first, last_k and first_k must pick the same values
// every time.
func TestLastTiesOrderIndependent(t *testing.T) {
	for _, op := range []schemas.Op{schemas.OpLast, schemas.OpFirst, schemas.OpLastK, schemas.OpFirstK} {
		for t0 := schemas.String; t0 <= schemas.Timestamp; t0++ {
			testTiesOrderIndependent(t, combo{op, t0})
		}
	}
}

func testTiesOrderIndependent(t *testing.T, c combo) {
	t.Run(c.String(), func(t *testing.T) {
		r := rngFor(t)
		for range trials {
			evs := randEvents(r, c.typ, 1+r.IntN(30))
			for i := range evs {
				evs[i].t = int64(r.IntN(2)) // two times: ties everywhere
			}
			want := mustEncode(t, addAll(t, c, evs))
			for range 5 {
				r.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
				if got := mustEncode(t, addAll(t, c, evs)); !bytes.Equal(got, want) {
					t.Fatalf("%s over a reordering encodes to %x, want %x", c, got, want)
				}
			}
		}
	})
}

func TestCloneIndependent(t *testing.T) {
	forEachCombo(t, func(t *testing.T, c combo, r *rand.Rand) {
		for range 20 {
			p := addAll(t, c, randEvents(r, c.typ, r.IntN(20)))
			before := mustEncode(t, p)
			q := p.Clone()
			if got := mustEncode(t, q); !bytes.Equal(got, before) {
				t.Fatalf("Clone encodes to %x, want %x", got, before)
			}
			for _, e := range randEvents(r, c.typ, 30) {
				q.Add(e.v, e.t)
			}
			mustMerge(t, q, addAll(t, c, randEvents(r, c.typ, 30)))
			if got := mustEncode(t, p); !bytes.Equal(got, before) {
				t.Fatalf("changing a clone changed the original to %x, want %x", got, before)
			}
		}
	})
}
