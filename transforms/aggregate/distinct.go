package aggregate

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/axiomhq/hyperloglog"
	"github.com/tandem-fp/tandem/schemas"
)

// Sketch parameters. Changing either, or the way values are hashed, changes
// what an encoding means and takes a new format version.
const (
	hllPrecision = 14 // 2^14 registers: standard error 1.04/sqrt(2^14) ≈ 0.81%
	hllVersion   = 2  // axiomhq/hyperloglog's binary format version

	// sparseMax is the largest encoding of a sparse sketch whose list of
	// keys is compacted (empty buffer: 4+4+12 header bytes) and still fits
	// in the 2^14 bytes of dense registers.
	sparseMax = 20 + 1<<hllPrecision
)

// HLLStdError is the relative standard error of approx_count_distinct:
// 1.04/sqrt(2^14) ≈ 0.0081. About 95% of estimates are within twice that of
// the true count, practically all within 3%.
const HLLStdError = 0.0081

// distinctPartial is a HyperLogLog++ sketch of the non-null values of a
// field, at precision 14 (standard error ≈ 0.81%, see HLLStdError), sparse
// while it holds few values. Its merge is the exact union of the sketches,
// so the estimate does not depend on the order of adds and merges.
type distinctPartial struct {
	typ schemas.Type
	sk  *hyperloglog.Sketch // nil until the first value
	buf []byte              // scratch for hashing
}

func (p *distinctPartial) Op() schemas.Op          { return schemas.OpApproxCountDistinct }
func (p *distinctPartial) fieldType() schemas.Type { return p.typ }

func (p *distinctPartial) Clone() Partial {
	c := &distinctPartial{typ: p.typ}
	if p.sk != nil {
		c.sk = p.sk.Clone()
	}
	return c
}

func (p *distinctPartial) Add(v schemas.Value, _ int64) {
	if v.Type != p.typ {
		return
	}
	if p.sk == nil {
		p.sk = hyperloglog.New14()
	}
	p.buf = appendHashBytes(p.buf[:0], v.Type, v.Int, v.Float, v.Str)
	p.sk.Insert(p.buf)
}

// appendHashBytes appends what approx_count_distinct hashes for a value of
// type t (with fields i, f, s, as in schemas.Value): its type byte and its
// canonical bytes. (It takes the fields rather than a Value, whose copy
// would cost more than the rest.)
func appendHashBytes(b []byte, t schemas.Type, i int64, f float64, s string) []byte {
	b = append(b, byte(t))
	switch t {
	case schemas.String:
		return append(b, s...)
	case schemas.Float64:
		switch {
		case f == 0:
			f = 0 // -0 is +0
		case f != f:
			f = math.NaN()
		}
		return binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	case schemas.Bool:
		if i != 0 {
			return binary.LittleEndian.AppendUint64(b, 1)
		}
		return binary.LittleEndian.AppendUint64(b, 0)
	}
	return binary.LittleEndian.AppendUint64(b, uint64(i))
}

func (p *distinctPartial) Merge(other Partial) error {
	o, ok := other.(*distinctPartial)
	if !ok || o == nil || o.typ != p.typ {
		return mismatch(p, other)
	}
	switch {
	case o.sk == nil || o == p: // the union of a set with itself is the set
	case p.sk == nil:
		p.sk = o.sk.Clone()
	default:
		if err := p.sk.Merge(o.sk); err != nil {
			// Unreachable: every sketch here has precision 14.
			return fmt.Errorf("merge %s sketches: %w", kind(p.Op(), p.typ), err)
		}
	}
	return nil
}

func (p *distinctPartial) Result() (schemas.Value, bool) {
	if p.sk == nil {
		return schemas.Int64Value(0), true
	}
	return schemas.Int64Value(int64(min(p.sk.Estimate(), math.MaxInt64))), true
}

func (p *distinctPartial) AppendBinary(b []byte) ([]byte, error) {
	n := len(b)
	b = appendHeader(b, schemas.OpApproxCountDistinct, p.typ)
	if p.sk == nil {
		return b, nil
	}
	start := len(b)
	b, err := p.sk.AppendBinary(b)
	if err != nil {
		return b[:n], fmt.Errorf("encode %s sketch: %w", kind(p.Op(), p.typ), err)
	}
	// A sparse sketch buffers new keys in an unordered set before it merges
	// them into its sorted list, and turns dense once that list outgrows
	// the registers. Bring it to that normal form (Estimate does, and only
	// that) so that the encoding depends only on the values, not on the
	// history, and does not change when Result is called.
	if sk := b[start:]; sk[3] == 1 && (binary.BigEndian.Uint32(sk[4:]) != 0 || len(sk) > sparseMax) {
		p.sk.Estimate()
		if b, err = p.sk.AppendBinary(b[:start]); err != nil {
			return b[:n], fmt.Errorf("encode %s sketch: %w", kind(p.Op(), p.typ), err)
		}
	}
	return b, nil
}

func (p *distinctPartial) decodePayload(d *decoder) {
	b := d.remaining()
	if len(b) == 0 {
		return
	}
	if len(b) < 2 || b[0] != hllVersion || b[1] != hllPrecision {
		d.fail("sketch header % x, want version %d precision %d", b[:min(len(b), 2)], hllVersion, hllPrecision)
		return
	}
	sk := new(hyperloglog.Sketch)
	if err := sk.UnmarshalBinary(b); err != nil {
		d.failErr("sketch", err)
		return
	}
	p.sk = sk
	d.off = len(d.b)
}
