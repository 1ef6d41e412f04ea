package aggregate

import (
	"math"

	"github.com/tandem-fp/tandem/schemas"
)

// countPartial counts events, nulls included.
type countPartial struct{ n int64 }

func (p *countPartial) Op() schemas.Op           { return schemas.OpCount }
func (p *countPartial) fieldType() schemas.Type  { return schemas.Null }
func (p *countPartial) Add(schemas.Value, int64) { p.n++ }
func (p *countPartial) Clone() Partial           { c := *p; return &c }

func (p *countPartial) Merge(other Partial) error {
	o, ok := other.(*countPartial)
	if !ok || o == nil {
		return mismatch(p, other)
	}
	p.n += o.n
	return nil
}

func (p *countPartial) Result() (schemas.Value, bool) { return schemas.Int64Value(p.n), true }

func (p *countPartial) AppendBinary(b []byte) ([]byte, error) {
	b = appendHeader(b, schemas.OpCount, schemas.Null)
	return appendUvarint(b, uint64(p.n)), nil
}

func (p *countPartial) decodePayload(d *decoder) { p.n = d.count() }

// sumInt is the exact sum of int64 values, wrapping modulo 2^64.
type sumInt struct{ sum int64 }

func (p *sumInt) Op() schemas.Op          { return schemas.OpSum }
func (p *sumInt) fieldType() schemas.Type { return schemas.Int64 }
func (p *sumInt) Clone() Partial          { c := *p; return &c }

func (p *sumInt) Add(v schemas.Value, _ int64) {
	if v.Type == schemas.Int64 {
		p.sum += v.Int
	}
}

func (p *sumInt) Merge(other Partial) error {
	o, ok := other.(*sumInt)
	if !ok || o == nil {
		return mismatch(p, other)
	}
	p.sum += o.sum
	return nil
}

func (p *sumInt) Result() (schemas.Value, bool) { return schemas.Int64Value(p.sum), true }

func (p *sumInt) AppendBinary(b []byte) ([]byte, error) {
	b = appendHeader(b, schemas.OpSum, schemas.Int64)
	return appendVarint(b, p.sum), nil
}

func (p *sumInt) decodePayload(d *decoder) { p.sum = d.varint() }

// neumaier is a compensated (Kahan–Babuška–Neumaier) sum: the exact sum of
// the terms is s + c up to a few ulps, independently of their number and
// order.
type neumaier struct{ s, c float64 }

func (k *neumaier) add(x float64) {
	t := k.s + x
	if math.Abs(k.s) >= math.Abs(x) {
		k.c += (k.s - t) + x
	} else {
		k.c += (x - t) + k.s
	}
	k.s = t
}

func (k *neumaier) merge(o neumaier) {
	k.add(o.s)
	k.c += o.c
}

// value returns the compensated sum. Once the running sum is infinite or
// NaN the compensation is meaningless (Inf-Inf), so the running sum is the
// answer.
func (k neumaier) value() float64 {
	if math.IsInf(k.s, 0) || math.IsNaN(k.s) {
		return k.s
	}
	return k.s + k.c
}

// sumFloat is the compensated sum of float64 values.
type sumFloat struct{ k neumaier }

func (p *sumFloat) Op() schemas.Op          { return schemas.OpSum }
func (p *sumFloat) fieldType() schemas.Type { return schemas.Float64 }
func (p *sumFloat) Clone() Partial          { c := *p; return &c }

func (p *sumFloat) Add(v schemas.Value, _ int64) {
	if v.Type == schemas.Float64 {
		p.k.add(v.Float)
	}
}

func (p *sumFloat) Merge(other Partial) error {
	o, ok := other.(*sumFloat)
	if !ok || o == nil {
		return mismatch(p, other)
	}
	p.k.merge(o.k)
	return nil
}

func (p *sumFloat) Result() (schemas.Value, bool) { return schemas.Float64Value(p.k.value()), true }

func (p *sumFloat) AppendBinary(b []byte) ([]byte, error) {
	b = appendHeader(b, schemas.OpSum, schemas.Float64)
	b = appendF64(b, p.k.s)
	return appendF64(b, p.k.c), nil
}

func (p *sumFloat) decodePayload(d *decoder) {
	p.k.s = d.f64()
	p.k.c = d.f64()
}

// meanPartial keeps the count and the compensated sum of the non-null
// values of an int64 or float64 field.
type meanPartial struct {
	typ schemas.Type
	n   int64
	k   neumaier
}

func (p *meanPartial) Op() schemas.Op          { return schemas.OpMean }
func (p *meanPartial) fieldType() schemas.Type { return p.typ }
func (p *meanPartial) Clone() Partial          { c := *p; return &c }

func (p *meanPartial) Add(v schemas.Value, _ int64) {
	if v.Type != p.typ {
		return
	}
	x := v.Float
	if p.typ == schemas.Int64 {
		x = float64(v.Int)
	}
	p.n++
	p.k.add(x)
}

func (p *meanPartial) Merge(other Partial) error {
	o, ok := other.(*meanPartial)
	if !ok || o == nil || o.typ != p.typ {
		return mismatch(p, other)
	}
	p.n += o.n
	p.k.merge(o.k)
	return nil
}

func (p *meanPartial) Result() (schemas.Value, bool) {
	if p.n == 0 {
		return schemas.Value{}, false
	}
	return schemas.Float64Value(p.k.value() / float64(p.n)), true
}

func (p *meanPartial) AppendBinary(b []byte) ([]byte, error) {
	b = appendHeader(b, schemas.OpMean, p.typ)
	b = appendUvarint(b, uint64(p.n))
	if p.n == 0 {
		return b, nil
	}
	b = appendF64(b, p.k.s)
	return appendF64(b, p.k.c), nil
}

func (p *meanPartial) decodePayload(d *decoder) {
	if p.n = d.count(); p.n > 0 {
		p.k.s = d.f64()
		p.k.c = d.f64()
	}
}

// stddevPartial keeps the count, mean and sum of squared deviations from
// the mean (M2) of the non-null values of an int64 or float64 field:
// Welford's online update for Add, Chan et al.'s pairwise update for Merge.
type stddevPartial struct {
	typ      schemas.Type
	n        int64
	mean, m2 float64
}

func (p *stddevPartial) Op() schemas.Op          { return schemas.OpStddev }
func (p *stddevPartial) fieldType() schemas.Type { return p.typ }
func (p *stddevPartial) Clone() Partial          { c := *p; return &c }

func (p *stddevPartial) Add(v schemas.Value, _ int64) {
	if v.Type != p.typ {
		return
	}
	x := v.Float
	if p.typ == schemas.Int64 {
		x = float64(v.Int)
	}
	p.n++
	d := x - p.mean
	p.mean += d / float64(p.n)
	p.m2 += d * (x - p.mean)
}

func (p *stddevPartial) Merge(other Partial) error {
	o, ok := other.(*stddevPartial)
	if !ok || o == nil || o.typ != p.typ {
		return mismatch(p, other)
	}
	switch {
	case o.n == 0:
	case p.n == 0:
		p.n, p.mean, p.m2 = o.n, o.mean, o.m2
	default:
		n := p.n + o.n
		na, nb, fn := float64(p.n), float64(o.n), float64(n)
		d := o.mean - p.mean
		p.mean += d * (nb / fn)
		p.m2 += o.m2 + d*d*(na*(nb/fn))
		p.n = n
	}
	return nil
}

func (p *stddevPartial) Result() (schemas.Value, bool) {
	if p.n == 0 {
		return schemas.Value{}, false
	}
	return schemas.Float64Value(math.Sqrt(max(p.m2, 0) / float64(p.n))), true
}

func (p *stddevPartial) AppendBinary(b []byte) ([]byte, error) {
	b = appendHeader(b, schemas.OpStddev, p.typ)
	b = appendUvarint(b, uint64(p.n))
	if p.n == 0 {
		return b, nil
	}
	b = appendF64(b, p.mean)
	return appendF64(b, p.m2), nil
}

func (p *stddevPartial) decodePayload(d *decoder) {
	if p.n = d.count(); p.n > 0 {
		p.mean = d.f64()
		if p.m2 = d.f64(); p.m2 < 0 {
			d.fail("negative M2 %v", p.m2)
		}
	}
}
