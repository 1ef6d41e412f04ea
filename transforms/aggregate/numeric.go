package aggregate

import (
	"math"
	"math/big"

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

// stddevPartial keeps the count and the exact sums of the non-null values
// of an int64 or float64 field and of their squares (exactSum), so that
// Add and Merge are exact: any order of adds and merges gives the same
// partial, bit for bit, and Result is the correctly rounded population
// standard deviation of the exact sums (a non-finite value makes it NaN).
type stddevPartial struct {
	typ       schemas.Type
	n         int64
	nonFinite bool // a NaN or an infinity was added: the result is NaN
	s1, s2    exactSum
}

func (p *stddevPartial) Op() schemas.Op          { return schemas.OpStddev }
func (p *stddevPartial) fieldType() schemas.Type { return p.typ }

func (p *stddevPartial) Clone() Partial {
	c := &stddevPartial{typ: p.typ, n: p.n, nonFinite: p.nonFinite}
	c.s1.set(&p.s1)
	c.s2.set(&p.s2)
	return c
}

func (p *stddevPartial) Add(v schemas.Value, _ int64) {
	if v.Type != p.typ {
		return
	}
	x := v.Float
	if p.typ == schemas.Int64 {
		x = float64(v.Int)
	}
	p.n++
	if math.IsInf(x, 0) || math.IsNaN(x) {
		p.nonFinite = true
		return
	}
	p.s1.add(x)
	p.s2.addSquare(x)
}

func (p *stddevPartial) Merge(other Partial) error {
	o, ok := other.(*stddevPartial)
	if !ok || o == nil || o.typ != p.typ {
		return mismatch(p, other)
	}
	p.n += o.n
	p.nonFinite = p.nonFinite || o.nonFinite
	p.s1.merge(&o.s1)
	p.s2.merge(&o.s2)
	return nil
}

// Result is sqrt((n·S2 − S1²) / n²), computed from the exact sums with 256
// bits of precision and rounded once to float64 before the square root.
func (p *stddevPartial) Result() (schemas.Value, bool) {
	if p.n == 0 {
		return schemas.Value{}, false
	}
	if p.nonFinite {
		return schemas.Float64Value(math.NaN()), true
	}
	const prec = 256
	n := new(big.Float).SetPrec(prec).SetInt64(p.n)
	s1 := p.s1.float()
	sq := new(big.Float).SetPrec(prec).Mul(s1, s1)
	v := new(big.Float).SetPrec(prec).Mul(n, p.s2.float())
	v.Sub(v, sq)
	v.Quo(v, n.Mul(n, n))
	f, _ := v.Float64()
	return schemas.Float64Value(math.Sqrt(max(f, 0))), true
}

// AppendBinary writes tag 9: uvarint n; if n > 0, a byte 0 or 1 (a
// non-finite value was added) and the exact sums S1 and S2.
func (p *stddevPartial) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, formatVersion, tagStddevExact, byte(p.typ))
	b = appendUvarint(b, uint64(p.n))
	if p.n == 0 {
		return b, nil
	}
	b = appendOpt(b, p.nonFinite)
	b = p.s1.appendBinary(b)
	return p.s2.appendBinary(b), nil
}

// decodePayload reads tag 9, or converts the Welford state (n, mean, M2)
// of tag 8, written before the sums were exact: S1 = n·mean and
// S2 = M2 + n·mean², rounded to float64 once.
func (p *stddevPartial) decodePayload(d *decoder) {
	p.n = d.count()
	if p.n == 0 || d.err != nil {
		return
	}
	if d.b[1] == tagStddevExact {
		p.nonFinite = d.opt()
		p.s1.decode(d)
		p.s2.decode(d)
		return
	}
	mean, m2 := d.f64(), d.f64()
	switch {
	case d.err != nil:
		return
	case m2 < 0:
		d.fail("negative M2 %v", m2)
		return
	case math.IsInf(mean, 0) || math.IsNaN(mean) || math.IsInf(m2, 0) || math.IsNaN(m2):
		p.nonFinite = true
		return
	}
	nf := float64(p.n)
	p.s1.setFloat(nf * mean)
	p.s2.setFloat(m2 + nf*mean*mean)
}
