package aggregate

import (
	"cmp"
	"math"
	"strings"

	"github.com/tandem-fp/tandem/schemas"
)

// lastPartial keeps the value with the latest event time; of values with
// equal event times it keeps the largest by compareValues. With first set
// it is first: the value with the earliest event time, of equal ones the
// smallest.
type lastPartial struct {
	typ   schemas.Type
	first bool
	has   bool
	t     int64
	v     schemas.Value // canonical, of type typ
}

func (p *lastPartial) Op() schemas.Op {
	if p.first {
		return schemas.OpFirst
	}
	return schemas.OpLast
}

func (p *lastPartial) fieldType() schemas.Type { return p.typ }
func (p *lastPartial) Clone() Partial          { c := *p; return &c }

func (p *lastPartial) Add(v schemas.Value, t int64) {
	if v.Type != p.typ || (p.has && (p.first && t > p.t || !p.first && t < p.t)) {
		return
	}
	p.fold(t, canonical(v, p.typ))
}

// canonical returns v (of type t) with only the field its type uses, and
// bools as 0 or 1, so that equal values compare, encode and report equally.
func canonical(v schemas.Value, t schemas.Type) schemas.Value {
	c := schemas.Value{Type: t}
	switch t {
	case schemas.String:
		c.Str = v.Str
	case schemas.Float64:
		c.Float = v.Float
	case schemas.Bool:
		if v.Int != 0 {
			c.Int = 1
		}
	default:
		c.Int = v.Int
	}
	return c
}

// fold folds in canonical value v at event time t.
func (p *lastPartial) fold(t int64, v schemas.Value) {
	switch {
	case !p.has:
	case p.first && (t > p.t || (t == p.t && compareValues(v, p.v) >= 0)):
		return
	case !p.first && (t < p.t || (t == p.t && compareValues(v, p.v) <= 0)):
		return
	}
	p.has, p.t, p.v = true, t, v
}

func (p *lastPartial) Merge(other Partial) error {
	o, ok := other.(*lastPartial)
	if !ok || o == nil || o.typ != p.typ || o.first != p.first {
		return mismatch(p, other)
	}
	if o.has {
		p.fold(o.t, o.v)
	}
	return nil
}

func (p *lastPartial) Result() (schemas.Value, bool) { return p.v, p.has }

func (p *lastPartial) AppendBinary(b []byte) ([]byte, error) {
	b = appendHeader(b, p.Op(), p.typ)
	if b = appendOpt(b, p.has); p.has {
		b = appendVarint(b, p.t)
		b = appendValue(b, p.v)
	}
	return b, nil
}

func (p *lastPartial) decodePayload(d *decoder) {
	if d.opt() {
		t := d.varint()
		p.fold(t, d.value(p.typ))
	}
}

// compareValues orders two values of the same type totally: numbers
// numerically (floats with -0 < +0 and NaNs beyond ±Inf, by sign and
// payload), false < true, strings bytewise.
func compareValues(a, b schemas.Value) int {
	switch a.Type {
	case schemas.String:
		return strings.Compare(a.Str, b.Str)
	case schemas.Float64:
		return cmp.Compare(floatKey(a.Float), floatKey(b.Float))
	}
	return cmp.Compare(a.Int, b.Int)
}

// floatKey maps f to a uint64 whose order is the IEEE 754 total order.
func floatKey(f float64) uint64 {
	u := math.Float64bits(f)
	if u>>63 != 0 {
		return ^u
	}
	return u | 1<<63
}
