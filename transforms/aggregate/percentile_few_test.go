package aggregate

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/tandem-fp/tandem/schemas"
)

// sketched returns an approx_percentile partial that holds its sketch from
// the start, so that it never takes the few-values form.
func sketched(t *testing.T) *percentilePartial {
	t.Helper()
	p, err := NewWith(schemas.OpApproxPercentile, schemas.Float64, Params{Percentiles: []float64{0.1, 0.5, 0.99}})
	if err != nil {
		t.Fatal(err)
	}
	pp := p.(*percentilePartial)
	pp.sketch()
	return pp
}

// TestPercentileFewValues checks that a partial of a few values, which
// keeps them rather than a sketch, encodes to the same bytes, gives the
// same percentiles and merges to the same partials as one that holds a
// sketch from the start: over zeros, values below the sketch's smallest
// indexable one, negatives, extremes and spans beyond PercentileMaxBins
// bins (where the sketch collapses bins and the encoding falls back to it).
func TestPercentileFewValues(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	pick := func() float64 {
		switch r.IntN(9) {
		case 0:
			return 0
		case 1:
			return math.Copysign(1e-310, r.NormFloat64()) // below MinIndexableValue: the zero bin
		case 2:
			return -r.ExpFloat64() * 100
		case 3:
			return math.MaxFloat64
		case 4:
			return 1e-200 // with 1e200: thousands of bins apart
		case 5:
			return 1e200
		case 6:
			return float64(r.IntN(5)) // repeats: one bin, several values
		}
		return r.ExpFloat64() * 100
	}
	enc := func(p Partial) []byte {
		b, err := p.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	few := 0
	for range 3000 {
		n := r.IntN(2*fewValues + 1)
		xs := make([]float64, n)
		for i := range xs {
			xs[i] = pick()
		}
		ref := sketched(t)
		lazy := sketched(t)
		lazy.sk = nil // the form For and NewWith make
		for i, x := range xs {
			ref.Add(schemas.Float64Value(x), int64(i))
			lazy.Add(schemas.Float64Value(x), int64(i))
		}
		if lazy.sk == nil {
			few++
		}
		same := func(what string, got, want *percentilePartial) {
			t.Helper()
			if g, w := enc(got), enc(want); !bytes.Equal(g, w) {
				t.Fatalf("%s of %v: encoding %x, the sketch's %x", what, xs, g, w)
			}
			gv, gok := got.Result()
			wv, wok := want.Result()
			if gok != wok || !gv.Same(wv) {
				t.Fatalf("%s of %v: result %v %v, the sketch's %v %v", what, xs, gv, gok, wv, wok)
			}
		}
		same("adds", lazy, ref)
		dec, err := Decode(enc(lazy))
		if err != nil {
			t.Fatal(err)
		}
		same("decoded", dec.(*percentilePartial), ref)
		same("clone", lazy.Clone().(*percentilePartial), ref)

		// Merges: two few-value parts, one of each kind, and a partial
		// with itself.
		k := r.IntN(n + 1)
		a, b, sa := sketched(t), sketched(t), sketched(t)
		a.sk, b.sk = nil, nil
		for i, x := range xs {
			if i < k {
				a.Add(schemas.Float64Value(x), 0)
				sa.Add(schemas.Float64Value(x), 0)
			} else {
				b.Add(schemas.Float64Value(x), 0)
			}
		}
		bc := b.Clone().(*percentilePartial)
		if err := a.Merge(b); err != nil {
			t.Fatal(err)
		}
		same("few+few", a, ref)
		if err := sa.Merge(bc); err != nil {
			t.Fatal(err)
		}
		same("sketch+few", sa, ref)
		c := bc.Clone().(*percentilePartial)
		if err := c.Merge(ref.Clone()); err != nil {
			t.Fatal(err)
		}
		if err := bc.Merge(bc); err != nil {
			t.Fatal(err)
		}
		twice := ref.Clone().(*percentilePartial)
		if err := twice.Merge(twice); err != nil {
			t.Fatal(err)
		}
		if k == 0 { // b held every value
			same("self", bc, twice)
			same("few+sketch", c, twice)
		}
	}
	if few < 1000 {
		t.Errorf("only %d of the partials kept their few values: the test does not reach the form", few)
	}
}
