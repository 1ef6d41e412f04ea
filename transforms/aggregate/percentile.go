package aggregate

import (
	"math"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/DataDog/sketches-go/ddsketch/store"
	"github.com/tandem-fp/tandem/schemas"
)

// Sketch parameters of approx_percentile. Changing one changes what an
// encoding means and takes a new format version.
const (
	// PercentileRelativeError is approx_percentile's relative accuracy α:
	// each percentile is within α·|x| of x, the exact value at its rank.
	PercentileRelativeError = 0.01
	// PercentileMaxBins bounds each of the two stores (positive and
	// negative values) of the sketch. With α = 1% the bins of one store
	// span a factor of γ^2048 ≈ 6·10^17 ((1+α)/(1−α) = γ), so the bound
	// matters only for values spanning more than that: the smallest ones
	// then collapse into one bin and lose the accuracy guarantee.
	PercentileMaxBins = 2048
)

// ddMapping is the sketch's index mapping, logarithmic with accuracy
// PercentileRelativeError; immutable, so shared.
var ddMapping = func() *mapping.LogarithmicMapping {
	m, err := mapping.NewLogarithmicMapping(PercentileRelativeError)
	if err != nil {
		panic(err) // unreachable: a constant accuracy in (0, 1)
	}
	return m
}()

// ddIndexRange is the range of indexes of the values the mapping tracks.
var ddMinIndex, ddMaxIndex = ddMapping.Index(ddMapping.MinIndexableValue() * (1 + 1e-9)), ddMapping.Index(ddMapping.MaxIndexableValue())

// newDDSketch returns an empty sketch with Tandem's parameters.
func newDDSketch() *ddsketch.DDSketch {
	return ddsketch.NewDDSketch(ddMapping,
		store.NewCollapsingLowestDenseStore(PercentileMaxBins),
		store.NewCollapsingLowestDenseStore(PercentileMaxBins))
}

// percentilePartial is a DDSketch (github.com/DataDog/sketches-go,
// Masson et al., VLDB 2019) of the finite values of a numeric field, with
// relative accuracy PercentileRelativeError and at most PercentileMaxBins
// bins for positive and for negative values each. Merge adds bin counts,
// so the sketch, and every percentile, is the same in any order of adds
// and merges; it is also the sketch that sketches-go builds directly from
// the values with the same parameters.
type percentilePartial struct {
	typ schemas.Type
	qs  []float64 // the percentiles Result reports, in definition order
	sk  *ddsketch.DDSketch
}

func (p *percentilePartial) Op() schemas.Op          { return schemas.OpApproxPercentile }
func (p *percentilePartial) fieldType() schemas.Type { return p.typ }

func (p *percentilePartial) Clone() Partial {
	return &percentilePartial{typ: p.typ, qs: p.qs, sk: p.sk.Copy()}
}

func (p *percentilePartial) Add(v schemas.Value, _ int64) {
	var x float64
	switch {
	case v.Type != p.typ:
		return
	case v.Type == schemas.Int64:
		x = float64(v.Int)
	default:
		x = v.Float
	}
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return // documented: non-finite values are skipped
	}
	// Finite values beyond ±MaxIndexableValue (≈ 1.8·10^308) go to the
	// extreme bin rather than being refused.
	x = max(-ddMapping.MaxIndexableValue(), min(x, ddMapping.MaxIndexableValue()))
	_ = p.sk.Add(x) // cannot fail: finite, clamped into range
}

func (p *percentilePartial) Merge(other Partial) error {
	o, ok := other.(*percentilePartial)
	if !ok || o == nil || o.typ != p.typ {
		return mismatch(p, other)
	}
	src := o.sk
	if o == p {
		src = o.sk.Copy()
	}
	// The receiver's percentiles stay: a window takes its feature's.
	return p.sk.MergeWith(src)
}

// Result returns the value at each percentile q of the definition: the
// sketch's estimate of the value of rank ⌊q·(n−1)⌋ (from 0; ⌈q·(n−1)⌉
// among negative values) of the n values, within PercentileRelativeError
// of it.
func (p *percentilePartial) Result() (schemas.Value, bool) {
	if p.sk.IsEmpty() {
		return schemas.Value{}, false
	}
	items := make([]schemas.Item, len(p.qs))
	for i, q := range p.qs {
		x, _ := p.sk.GetValueAtQuantile(q) // cannot fail: q in (0, 1), not empty
		items[i] = schemas.Item{Type: schemas.Float64, Float: x, Key: schemas.PercentileName(q)}
	}
	return schemas.CompositeValue(schemas.Quantiles, 0, items), true
}

// appendStore appends the bins of s: uvarint count of bins; for each, by
// index, the index (varint for the first, uvarint gap to the previous for
// the others) and its count (uvarint). It relies on the dense stores'
// ForEach going by increasing index (checked by the tests' round trips
// and golden encodings).
func appendStore(b []byte, s store.Store) []byte {
	n := 0
	s.ForEach(func(int, float64) bool { n++; return false })
	b = appendUvarint(b, uint64(n))
	prev, first := 0, true
	s.ForEach(func(i int, c float64) bool {
		if first {
			b = appendVarint(b, int64(i))
		} else {
			b = appendUvarint(b, uint64(i-prev))
		}
		b = appendUvarint(b, uint64(c))
		prev, first = i, false
		return false
	})
	return b
}

func (p *percentilePartial) AppendBinary(b []byte) ([]byte, error) {
	b = appendHeader(b, schemas.OpApproxPercentile, p.typ)
	b = appendUvarint(b, uint64(len(p.qs)))
	for _, q := range p.qs {
		b = appendF64(b, q)
	}
	b = appendUvarint(b, uint64(p.sk.GetZeroCount()))
	b = appendStore(b, p.sk.GetPositiveValueStore())
	return appendStore(b, p.sk.GetNegativeValueStore()), nil
}

// maxSketchCount bounds the values one sketch holds, so that its float64
// counts stay exact integers.
const maxSketchCount = 1 << 53

func (p *percentilePartial) decodePayload(d *decoder) {
	nq := d.uvarint()
	if d.err == nil && (nq < 1 || nq > schemas.MaxPercentiles) {
		d.fail("%d percentiles, want 1 to %d", nq, schemas.MaxPercentiles)
	}
	if d.err != nil {
		return
	}
	qs := make([]float64, nq)
	for i := range qs {
		qs[i] = d.f64()
	}
	if d.err != nil {
		return
	}
	if err := schemas.CheckPercentiles(qs); err != nil {
		d.failErr("percentiles", err)
		return
	}
	p.qs = qs
	total := d.uvarint()
	if total > maxSketchCount {
		d.fail("zero count %d", total)
		return
	}
	if total > 0 {
		_ = p.sk.AddWithCount(0, float64(total))
	}
	var idx []int
	var counts []float64
	for _, s := range []store.Store{p.sk.GetPositiveValueStore(), p.sk.GetNegativeValueStore()} {
		n := d.uvarint()
		if d.err == nil && n > PercentileMaxBins {
			d.fail("%d bins, want at most %d", n, PercentileMaxBins)
		}
		idx, counts = idx[:0], counts[:0]
		var first, prev int64
		for i := range n {
			var x int64
			if i == 0 {
				x = d.varint()
				first = x
			} else {
				gap := d.uvarint()
				if d.err == nil && (gap == 0 || gap >= PercentileMaxBins) {
					d.fail("bin index gap %d", gap)
				}
				x = prev + int64(gap)
			}
			c := d.uvarint()
			if d.err != nil {
				return
			}
			switch {
			case x < int64(ddMinIndex) || x > int64(ddMaxIndex):
				d.fail("bin index %d beyond %d to %d", x, ddMinIndex, ddMaxIndex)
			case x-first >= PercentileMaxBins:
				d.fail("bins span more than %d", PercentileMaxBins)
			case c == 0:
				d.fail("bin count 0")
			case c > maxSketchCount-total:
				d.fail("counts beyond 2^53")
			}
			if d.err != nil {
				return
			}
			total += c
			idx, counts = append(idx, int(x)), append(counts, float64(c))
			prev = x
		}
		// The highest and the lowest bin first: the store then grows once.
		if m := len(idx); m > 0 {
			s.AddWithCount(idx[m-1], counts[m-1])
			for i := range m - 1 {
				s.AddWithCount(idx[i], counts[i])
			}
		}
	}
}
