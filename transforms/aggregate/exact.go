package aggregate

import (
	"math"
	"math/big"
)

// exactSum is the exact sum of float64 values (and of their exact
// squares): m · 2^e, with m an integer kept odd (or zero, then e = 0), so
// that equal sums have one representation. Adding and merging are exact,
// hence associative and commutative to the bit: a sum does not depend on
// the order its terms come in, which is what lets the streaming pipeline
// (events in arrival order), the batch pipeline and the training pipeline
// (events in time order) compute the same stddev.
type exactSum struct {
	m   big.Int
	e   int
	tmp big.Int // scratch for alignment
}

// decompose returns the integer mantissa and exponent of a finite x:
// x = mant · 2^exp exactly.
func decompose(x float64) (mant int64, exp int) {
	frac, e := math.Frexp(x)
	return int64(frac * (1 << 53)), e - 53
}

// addScaled adds m · 2^e.
func (s *exactSum) addScaled(m *big.Int, e int) {
	if m.Sign() == 0 {
		return
	}
	if s.m.Sign() == 0 {
		s.m.Set(m)
		s.e = e
	} else if e < s.e {
		s.m.Lsh(&s.m, uint(s.e-e))
		s.m.Add(&s.m, m)
		s.e = e
	} else {
		s.tmp.Lsh(m, uint(e-s.e))
		s.m.Add(&s.m, &s.tmp)
	}
	s.normalize()
}

func (s *exactSum) normalize() {
	if s.m.Sign() == 0 {
		s.e = 0
		return
	}
	if z := s.m.TrailingZeroBits(); z > 0 {
		s.m.Rsh(&s.m, z)
		s.e += int(z)
	}
}

// add adds a finite x.
func (s *exactSum) add(x float64) {
	mant, e := decompose(x)
	s.tmp.SetInt64(mant)
	s.addScaledTmp(e)
}

// addSquare adds x² (x finite), exactly.
func (s *exactSum) addSquare(x float64) {
	mant, e := decompose(x)
	s.tmp.SetInt64(mant)
	s.tmp.Mul(&s.tmp, &s.tmp)
	s.addScaledTmp(2 * e)
}

// addScaledTmp adds tmp · 2^e (addScaled may use tmp as its scratch: it
// shifts it in place).
func (s *exactSum) addScaledTmp(e int) { s.addScaled(&s.tmp, e) }

func (s *exactSum) merge(o *exactSum) { s.addScaled(&o.m, o.e) }

// float returns the sum as a big.Float, exactly.
func (s *exactSum) float() *big.Float {
	f := new(big.Float).SetInt(&s.m)
	return f.SetMantExp(f, s.e)
}

func (s *exactSum) set(o *exactSum) {
	s.m.Set(&o.m)
	s.e = o.e
}

// setFloat sets the sum to a finite x.
func (s *exactSum) setFloat(x float64) {
	s.m.SetInt64(0)
	s.e = 0
	s.add(x)
}

// appendBinary appends e as a varint, then the sign and magnitude of m:
// a varint (-1, 0 or 1) and a uvarint length and big-endian bytes.
func (s *exactSum) appendBinary(b []byte) []byte {
	b = appendVarint(b, int64(s.e))
	b = appendVarint(b, int64(s.m.Sign()))
	mag := s.m.Bytes()
	b = appendUvarint(b, uint64(len(mag)))
	return append(b, mag...)
}

// decode reads what appendBinary wrote, requiring the canonical form.
func (s *exactSum) decode(d *decoder) {
	e := d.varint()
	sign := d.varint()
	n := d.uvarint()
	if d.err != nil {
		return
	}
	switch {
	case sign < -1 || sign > 1:
		d.fail("exact sum sign %d", sign)
		return
	case n > uint64(len(d.b)-d.off) || n > 1<<12:
		d.fail("exact sum of %d bytes, %d left", n, len(d.b)-d.off)
		return
	case e < -1<<20 || e > 1<<20:
		d.fail("exact sum exponent %d", e)
		return
	}
	mag := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	s.m.SetBytes(mag)
	if sign < 0 {
		s.m.Neg(&s.m)
	}
	s.e = int(e)
	if (sign == 0) != (s.m.Sign() == 0) || (n > 0 && mag[0] == 0) || (s.m.Sign() == 0 && e != 0) || (s.m.Sign() != 0 && s.m.Bit(0) == 0) {
		d.fail("exact sum not in canonical form")
	}
}
