package aggregate

import (
	"math"

	"github.com/tandem-fp/tandem/schemas"
)

// extremeOp is min or max.
func extremeOp(isMax bool) schemas.Op {
	if isMax {
		return schemas.OpMax
	}
	return schemas.OpMin
}

// extremeInt is the min or max of an int64 or timestamp field.
type extremeInt struct {
	typ schemas.Type
	max bool
	has bool
	v   int64
}

func (p *extremeInt) Op() schemas.Op          { return extremeOp(p.max) }
func (p *extremeInt) fieldType() schemas.Type { return p.typ }
func (p *extremeInt) Clone() Partial          { c := *p; return &c }

func (p *extremeInt) Add(v schemas.Value, _ int64) {
	if v.Type == p.typ {
		p.fold(v.Int)
	}
}

func (p *extremeInt) fold(x int64) {
	if !p.has || (p.max && x > p.v) || (!p.max && x < p.v) {
		p.v, p.has = x, true
	}
}

func (p *extremeInt) Merge(other Partial) error {
	o, ok := other.(*extremeInt)
	if !ok || o == nil || o.typ != p.typ || o.max != p.max {
		return mismatch(p, other)
	}
	if o.has {
		p.fold(o.v)
	}
	return nil
}

func (p *extremeInt) Result() (schemas.Value, bool) {
	if !p.has {
		return schemas.Value{}, false
	}
	return schemas.Value{Type: p.typ, Int: p.v}, true
}

func (p *extremeInt) AppendBinary(b []byte) ([]byte, error) {
	b = appendHeader(b, p.Op(), p.typ)
	if b = appendOpt(b, p.has); p.has {
		b = appendVarint(b, p.v)
	}
	return b, nil
}

func (p *extremeInt) decodePayload(d *decoder) {
	if d.opt() {
		p.fold(d.varint())
	}
}

// extremeFloat is the min or max of a float64 field. NaN wins over every
// number (as in SQL engines that propagate it) and -0 < +0, so that the
// result does not depend on the order of the values.
type extremeFloat struct {
	max bool
	has bool
	v   float64
}

func (p *extremeFloat) Op() schemas.Op          { return extremeOp(p.max) }
func (p *extremeFloat) fieldType() schemas.Type { return schemas.Float64 }
func (p *extremeFloat) Clone() Partial          { c := *p; return &c }

func (p *extremeFloat) Add(v schemas.Value, _ int64) {
	if v.Type == schemas.Float64 {
		p.fold(v.Float)
	}
}

func (p *extremeFloat) fold(x float64) {
	switch {
	case x != x: // NaN wins; keep one NaN so that equal states encode equally.
		p.v, p.has = math.NaN(), true
	case !p.has:
		p.v, p.has = x, true
	case p.v != p.v:
	case p.max:
		if x > p.v || (x == p.v && !math.Signbit(x)) {
			p.v = x
		}
	default:
		if x < p.v || (x == p.v && math.Signbit(x)) {
			p.v = x
		}
	}
}

func (p *extremeFloat) Merge(other Partial) error {
	o, ok := other.(*extremeFloat)
	if !ok || o == nil || o.max != p.max {
		return mismatch(p, other)
	}
	if o.has {
		p.fold(o.v)
	}
	return nil
}

func (p *extremeFloat) Result() (schemas.Value, bool) {
	if !p.has {
		return schemas.Value{}, false
	}
	return schemas.Float64Value(p.v), true
}

func (p *extremeFloat) AppendBinary(b []byte) ([]byte, error) {
	b = appendHeader(b, p.Op(), schemas.Float64)
	if b = appendOpt(b, p.has); p.has {
		b = appendF64(b, p.v)
	}
	return b, nil
}

func (p *extremeFloat) decodePayload(d *decoder) {
	if d.opt() {
		x := d.f64()
		if x != x && math.Float64bits(x) != math.Float64bits(math.NaN()) {
			d.fail("non-canonical NaN %#x", math.Float64bits(x))
		}
		p.fold(x)
	}
}

// extremeString is the bytewise (lexicographic) min or max of a string
// field.
type extremeString struct {
	max bool
	has bool
	v   string
}

func (p *extremeString) Op() schemas.Op          { return extremeOp(p.max) }
func (p *extremeString) fieldType() schemas.Type { return schemas.String }
func (p *extremeString) Clone() Partial          { c := *p; return &c }

func (p *extremeString) Add(v schemas.Value, _ int64) {
	if v.Type == schemas.String {
		p.fold(v.Str)
	}
}

func (p *extremeString) fold(x string) {
	if !p.has || (p.max && x > p.v) || (!p.max && x < p.v) {
		p.v, p.has = x, true
	}
}

func (p *extremeString) Merge(other Partial) error {
	o, ok := other.(*extremeString)
	if !ok || o == nil || o.max != p.max {
		return mismatch(p, other)
	}
	if o.has {
		p.fold(o.v)
	}
	return nil
}

func (p *extremeString) Result() (schemas.Value, bool) {
	if !p.has {
		return schemas.Value{}, false
	}
	return schemas.StringValue(p.v), true
}

func (p *extremeString) AppendBinary(b []byte) ([]byte, error) {
	b = appendHeader(b, p.Op(), schemas.String)
	if b = appendOpt(b, p.has); p.has {
		b = appendString(b, p.v)
	}
	return b, nil
}

func (p *extremeString) decodePayload(d *decoder) {
	if d.opt() {
		p.fold(d.str())
	}
}
