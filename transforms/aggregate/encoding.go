package aggregate

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"

	"github.com/tandem-fp/tandem/schemas"
)

// formatVersion is byte 0 of every encoding.
const formatVersion = 1

// Op tags, byte 1 of every encoding. Never reuse or renumber one.
const (
	tagCount               = 1
	tagSum                 = 2
	tagMin                 = 3
	tagMax                 = 4
	tagMean                = 5
	tagLast                = 6
	tagApproxCountDistinct = 7
	tagStddev              = 8 // Welford's (n, mean, M2): decoded, no longer written
	tagStddevExact         = 9 // n and exact sums: what stddev writes
	tagFirst               = 10
	tagLastK               = 11
	tagFirstK              = 12
	tagTopK                = 13
	tagApproxPercentile    = 14
	tagHistogram           = 15
)

var opByTag = [...]schemas.Op{
	tagCount:               schemas.OpCount,
	tagSum:                 schemas.OpSum,
	tagMin:                 schemas.OpMin,
	tagMax:                 schemas.OpMax,
	tagMean:                schemas.OpMean,
	tagLast:                schemas.OpLast,
	tagApproxCountDistinct: schemas.OpApproxCountDistinct,
	tagStddev:              schemas.OpStddev,
	tagStddevExact:         schemas.OpStddev,
	tagFirst:               schemas.OpFirst,
	tagLastK:               schemas.OpLastK,
	tagFirstK:              schemas.OpFirstK,
	tagTopK:                schemas.OpTopK,
	tagApproxPercentile:    schemas.OpApproxPercentile,
	tagHistogram:           schemas.OpHistogram,
}

func opTag(op schemas.Op) byte {
	switch op {
	case schemas.OpCount:
		return tagCount
	case schemas.OpSum:
		return tagSum
	case schemas.OpMin:
		return tagMin
	case schemas.OpMax:
		return tagMax
	case schemas.OpMean:
		return tagMean
	case schemas.OpLast:
		return tagLast
	case schemas.OpApproxCountDistinct:
		return tagApproxCountDistinct
	case schemas.OpStddev:
		return tagStddevExact
	case schemas.OpFirst:
		return tagFirst
	case schemas.OpLastK:
		return tagLastK
	case schemas.OpFirstK:
		return tagFirstK
	case schemas.OpTopK:
		return tagTopK
	case schemas.OpApproxPercentile:
		return tagApproxPercentile
	case schemas.OpHistogram:
		return tagHistogram
	}
	panic("aggregate: no tag for op " + string(op)) // unreachable: New knows every op
}

// Decode decodes an encoding that a Partial's AppendBinary (or Encode) wrote.
// It returns an error wrapping ErrVersion if the format version is unknown
// and one wrapping ErrCorrupt for anything else it cannot decode; it never
// panics.
func Decode(b []byte) (Partial, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("decode partial: empty input: %w", ErrCorrupt)
	}
	if b[0] != formatVersion {
		return nil, fmt.Errorf("decode partial: format version %d, want %d: %w", b[0], formatVersion, ErrVersion)
	}
	if len(b) < 3 {
		return nil, fmt.Errorf("decode partial: %d-byte header, want 3: %w", len(b), ErrCorrupt)
	}
	if int(b[1]) >= len(opByTag) || opByTag[b[1]] == "" {
		return nil, fmt.Errorf("decode partial: unknown op tag %d: %w", b[1], ErrCorrupt)
	}
	op, t := opByTag[b[1]], schemas.Type(b[2])
	if op == schemas.OpCount && t != schemas.Null {
		return nil, fmt.Errorf("decode count partial: field type %s, want null: %w", t, ErrCorrupt)
	}
	p, err := newPartial(op, t, Params{}, true) // the decoder checks the parameters it reads
	if err != nil {
		return nil, fmt.Errorf("decode partial: %s over field type %s: %w", op, t, ErrCorrupt)
	}
	d := decoder{b: b, off: 3, op: op, typ: t}
	decodePayload(p, &d)
	if d.err == nil && d.off != len(b) {
		d.fail("%d trailing bytes", len(b)-d.off)
	}
	if d.err != nil {
		return nil, d.err
	}
	return p, nil
}

// decodePayload calls p's decodePayload on its concrete type, so that
// escape analysis sees that d does not escape (and Decode allocates only the
// partial).
func decodePayload(p partial, d *decoder) {
	switch p := p.(type) {
	case *countPartial:
		p.decodePayload(d)
	case *sumInt:
		p.decodePayload(d)
	case *sumFloat:
		p.decodePayload(d)
	case *extremeInt:
		p.decodePayload(d)
	case *extremeFloat:
		p.decodePayload(d)
	case *extremeString:
		p.decodePayload(d)
	case *meanPartial:
		p.decodePayload(d)
	case *lastPartial:
		p.decodePayload(d)
	case *distinctPartial:
		p.decodePayload(d)
	case *stddevPartial:
		p.decodePayload(d)
	case *lastKPartial:
		p.decodePayload(d)
	case *topKPartial:
		p.decodePayload(d)
	case *percentilePartial:
		p.decodePayload(d)
	case *histogramPartial:
		p.decodePayload(d)
	default:
		panic(fmt.Sprintf("aggregate: no decoder for %T", p)) // unreachable
	}
}

func appendHeader(b []byte, op schemas.Op, t schemas.Type) []byte {
	return append(b, formatVersion, opTag(op), byte(t))
}

func appendUvarint(b []byte, x uint64) []byte { return binary.AppendUvarint(b, x) }
func appendVarint(b []byte, x int64) []byte   { return binary.AppendVarint(b, x) }

func appendF64(b []byte, f float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
}

func appendOpt(b []byte, has bool) []byte {
	if has {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendValue appends canonical value v.
func appendValue(b []byte, v schemas.Value) []byte {
	switch v.Type {
	case schemas.String:
		return appendString(b, v.Str)
	case schemas.Float64:
		return appendF64(b, v.Float)
	case schemas.Bool:
		return append(b, byte(v.Int))
	}
	return appendVarint(b, v.Int)
}

// decoder reads a payload. The first problem sticks in err; later reads
// return zero values.
type decoder struct {
	b   []byte
	off int
	op  schemas.Op   // for messages
	typ schemas.Type // for messages
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("decode %s partial at byte %d: %s: %w", kind(d.op, d.typ), d.off, fmt.Sprintf(format, args...), ErrCorrupt)
	}
}

func (d *decoder) failErr(what string, err error) {
	if d.err == nil {
		d.err = fmt.Errorf("decode %s partial at byte %d: %s: %w: %w", kind(d.op, d.typ), d.off, what, err, ErrCorrupt)
	}
}

// uvarint reads a minimally encoded uvarint.
func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.b[d.off:])
	switch {
	case n == 0:
		d.fail("truncated varint")
		return 0
	case n < 0:
		d.fail("varint overflows 64 bits")
		return 0
	case n != uvarintLen(x):
		d.fail("non-minimal varint")
		return 0
	}
	d.off += n
	return x
}

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// varint reads a minimally encoded zig-zag varint.
func (d *decoder) varint() int64 {
	u := d.uvarint()
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

// count reads a uvarint that must fit in an int64.
func (d *decoder) count() int64 {
	n := d.uvarint()
	if n > math.MaxInt64 {
		d.fail("count %d overflows int64", n)
		return 0
	}
	return int64(n)
}

func (d *decoder) f64() float64 {
	if d.err != nil {
		return 0
	}
	if len(d.b)-d.off < 8 {
		d.fail("truncated float64")
		return 0
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(d.b[d.off:]))
	d.off += 8
	return f
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail("truncated")
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

// opt reads a presence byte, 0 or 1.
func (d *decoder) opt() bool {
	switch c := d.byte(); {
	case d.err != nil:
		return false
	case c > 1:
		d.fail("presence byte %d, want 0 or 1", c)
		return false
	default:
		return c == 1
	}
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail("string of %d bytes, %d left", n, len(d.b)-d.off)
		return ""
	}
	s := string(d.b[d.off : d.off+int(n)])
	d.off += int(n)
	return s
}

// value reads a value of type t.
func (d *decoder) value(t schemas.Type) schemas.Value {
	switch t {
	case schemas.String:
		return schemas.StringValue(d.str())
	case schemas.Float64:
		return schemas.Float64Value(d.f64())
	case schemas.Bool:
		c := d.byte()
		if c > 1 {
			d.fail("bool byte %d, want 0 or 1", c)
		}
		return schemas.Value{Type: t, Int: int64(c)}
	}
	return schemas.Value{Type: t, Int: d.varint()}
}

// remaining returns the unread rest of the payload without consuming it.
func (d *decoder) remaining() []byte {
	if d.err != nil {
		return nil
	}
	return d.b[d.off:]
}
