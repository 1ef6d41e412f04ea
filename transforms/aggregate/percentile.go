package aggregate

import (
	"math"
	"slices"

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
//
// A partial of at most fewValues values (most tiles: a tile holds the
// events of one entity over a few minutes or hours) keeps them as they are
// and builds no sketch: its encoding, computed from the values' bin
// indexes, is byte for byte the sketch's, and Merge and Result build the
// sketch when they need it.
type percentilePartial struct {
	typ schemas.Type
	qs  []float64          // the percentiles Result reports, in definition order; never changed
	sk  *ddsketch.DDSketch // nil while the values are in few
	few [fewValues]float64 // while sk is nil: the n values added, finite and clamped
	n   int
}

// fewValues is how many values a percentile partial keeps before it builds
// its sketch.
const fewValues = 4

func (p *percentilePartial) Op() schemas.Op          { return schemas.OpApproxPercentile }
func (p *percentilePartial) fieldType() schemas.Type { return p.typ }

func (p *percentilePartial) Clone() Partial {
	c := *p
	if p.sk != nil {
		c.sk = p.sk.Copy()
	}
	return &c
}

// sketch returns p's sketch, building it from the few values if need be.
func (p *percentilePartial) sketch() *ddsketch.DDSketch {
	if p.sk == nil {
		p.sk = fewSketch(p.few[:p.n])
		p.n = 0
	}
	return p.sk
}

// fewSketch returns a sketch of xs (finite, clamped).
func fewSketch(xs []float64) *ddsketch.DDSketch {
	sk := newDDSketch()
	for _, x := range xs {
		_ = sk.Add(x) // cannot fail: finite, clamped into range
	}
	return sk
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
	if p.sk == nil && p.n < fewValues {
		p.few[p.n] = x
		p.n++
		return
	}
	_ = p.sketch().Add(x) // cannot fail: finite, clamped into range
}

func (p *percentilePartial) Merge(other Partial) error {
	o, ok := other.(*percentilePartial)
	if !ok || o == nil || o.typ != p.typ {
		return mismatch(p, other)
	}
	// The receiver's percentiles stay: a window takes its feature's.
	switch {
	case o == p:
		sk := p.sketch()
		return sk.MergeWith(sk.Copy())
	case o.sk != nil:
		return p.sketch().MergeWith(o.sk)
	case p.sk == nil && p.n+o.n <= fewValues:
		p.n += copy(p.few[p.n:], o.few[:o.n])
	default:
		sk := p.sketch()
		for _, x := range o.few[:o.n] {
			_ = sk.Add(x) // cannot fail: finite, clamped into range
		}
	}
	return nil
}

// Result returns the value at each percentile q of the definition: the
// sketch's estimate of the value of rank ⌊q·(n−1)⌋ (from 0; ⌈q·(n−1)⌉
// among negative values) of the n values, within PercentileRelativeError
// of it.
func (p *percentilePartial) Result() (schemas.Value, bool) {
	sk := p.sk
	if sk == nil {
		if p.n == 0 {
			return schemas.Value{}, false
		}
		sk = fewSketch(p.few[:p.n]) // not kept: Result leaves p as it is
	}
	if sk.IsEmpty() {
		return schemas.Value{}, false
	}
	items := make([]schemas.Item, len(p.qs))
	for i, q := range p.qs {
		x, _ := sk.GetValueAtQuantile(q) // cannot fail: q in (0, 1), not empty
		items[i] = schemas.Item{Type: schemas.Float64, Float: x, Key: schemas.PercentileName(q)}
	}
	return schemas.CompositeValue(schemas.Quantiles, 0, items), true
}

// appendStore appends the bins of s: uvarint count of bins; for each, by
// index, the index (varint for the first, uvarint gap to the previous for
// the others) and its count (uvarint). It relies on the dense stores'
// ForEach going by increasing index (checked by the tests' round trips
// and golden encodings).
func appendStore(b []byte, s *store.CollapsingLowestDenseStore) []byte {
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

// appendFewStore appends, as appendStore would for a store holding them,
// the bins of idx, the bin indexes of some values, sorted. It reports
// false if the store would have collapsed them (a span of more than
// PercentileMaxBins bins).
func appendFewStore(b []byte, idx []int) ([]byte, bool) {
	if len(idx) > 0 && idx[len(idx)-1]-idx[0] >= PercentileMaxBins {
		return b, false
	}
	n := 0
	for i := range idx {
		if i == 0 || idx[i] != idx[i-1] {
			n++
		}
	}
	b = appendUvarint(b, uint64(n))
	for i := 0; i < len(idx); {
		j := i + 1
		for j < len(idx) && idx[j] == idx[i] {
			j++
		}
		if i == 0 {
			b = appendVarint(b, int64(idx[i]))
		} else {
			b = appendUvarint(b, uint64(idx[i]-idx[i-1]))
		}
		b = appendUvarint(b, uint64(j-i))
		i = j
	}
	return b, true
}

// appendFew appends the sketch of the few values of p without building it:
// their zero count and the bins of the positive and the negative store, as
// DDSketch.Add files them. It reports false where the sketch would have
// collapsed bins.
func (p *percentilePartial) appendFew(b []byte) ([]byte, bool) {
	var pos, neg [fewValues]int
	np, nn, zeros := 0, 0, 0
	for _, x := range p.few[:p.n] {
		switch {
		case x > ddMapping.MinIndexableValue():
			pos[np] = ddMapping.Index(x)
			np++
		case x < -ddMapping.MinIndexableValue():
			neg[nn] = ddMapping.Index(-x)
			nn++
		default:
			zeros++
		}
	}
	slices.Sort(pos[:np])
	slices.Sort(neg[:nn])
	b = appendUvarint(b, uint64(zeros))
	b, ok := appendFewStore(b, pos[:np])
	if !ok {
		return b, false
	}
	return appendFewStore(b, neg[:nn])
}

func (p *percentilePartial) AppendBinary(b []byte) ([]byte, error) {
	b = appendHeader(b, schemas.OpApproxPercentile, p.typ)
	b = appendUvarint(b, uint64(len(p.qs)))
	for _, q := range p.qs {
		b = appendF64(b, q)
	}
	sk := p.sk
	if sk == nil {
		start := len(b)
		if out, ok := p.appendFew(b); ok {
			return out, nil
		}
		b, sk = b[:start], fewSketch(p.few[:p.n])
	}
	b = appendUvarint(b, uint64(sk.GetZeroCount()))
	b = appendStore(b, sk.GetPositiveValueStore().(*store.CollapsingLowestDenseStore))
	return appendStore(b, sk.GetNegativeValueStore().(*store.CollapsingLowestDenseStore)), nil
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
	p.sk, p.n = newDDSketch(), 0
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
