package aggregate

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"testing"

	"github.com/tandem-fp/tandem/schemas"
)

// TestApproxCountDistinctAccuracy checks the estimate of 100k distinct
// values against the documented bound: standard error 0.81%, so within 3%
// (3.7 standard errors).
func TestApproxCountDistinctAccuracy(t *testing.T) {
	const n = 100_000
	tests := []struct {
		typ   schemas.Type
		value func(i int) schemas.Value
	}{
		{schemas.String, func(i int) schemas.Value { return str(fmt.Sprintf("merchant-%d", i)) }},
		{schemas.Int64, func(i int) schemas.Value { return i64(int64(i)) }},
		{schemas.Float64, func(i int) schemas.Value { return f64(float64(i) / 7) }},
		{schemas.Timestamp, func(i int) schemas.Value { return ts(1_700_000_000_000_000 + int64(i)*1_000_000) }},
	}
	for _, tc := range tests {
		t.Run(tc.typ.String(), func(t *testing.T) {
			p := mustNew(t, combo{schemas.OpApproxCountDistinct, tc.typ})
			for i := range n {
				p.Add(tc.value(i), 0)
				p.Add(tc.value(i/2), 0) // duplicates do not count
			}
			v, _ := p.Result()
			if rel := math.Abs(float64(v.Int)-n) / n; rel > 0.03 {
				t.Errorf("estimate of %d distinct values = %d, off by %.2f%%, want within 3%%", n, v.Int, 100*rel)
			} else {
				t.Logf("estimate of %d distinct values = %d, off by %.2f%%", n, v.Int, 100*rel)
			}
		})
	}
}

// TestApproxCountDistinctSmallExact checks that small cardinalities, as in
// one tile, are counted exactly by the sparse representation.
func TestApproxCountDistinctSmallExact(t *testing.T) {
	for _, n := range []int{1, 2, 20, 100, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			p := mustNew(t, combo{schemas.OpApproxCountDistinct, schemas.String})
			for i := range 3 * n {
				p.Add(str(fmt.Sprintf("merchant-%d", i%n)), 0)
			}
			if v, _ := p.Result(); v.Int != int64(n) {
				t.Errorf("estimate of %d distinct values = %d", n, v.Int)
			}
			if b := mustEncode(t, p); n <= 20 && len(b) > 8*n+32 {
				t.Errorf("%d distinct values encode to %d bytes, want a sparse sketch", n, len(b))
			}
		})
	}
}

// TestApproxCountDistinctDenseSplit checks that merge stays exact when the
// sketch grows past its sparse representation: the parts are sparse, their
// union dense.
func TestApproxCountDistinctDenseSplit(t *testing.T) {
	c := combo{schemas.OpApproxCountDistinct, schemas.Int64}
	for _, n := range []int{3_000, 8_000, 30_000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			r := rngFor(t)
			all := mustNew(t, c)
			parts := []Partial{mustNew(t, c), mustNew(t, c), mustNew(t, c), mustNew(t, c), mustNew(t, c)}
			for range n {
				v := i64(r.Int64())
				all.Add(v, 0)
				parts[r.IntN(len(parts))].Add(v, 0)
			}
			if n == 8_000 {
				// The case this test is for: sparse parts, dense union.
				if !sparse(t, parts[0]) || sparse(t, all) {
					t.Fatalf("%d values: part sparse %v, union sparse %v; want true, false", n, sparse(t, parts[0]), sparse(t, all))
				}
			}
			got := parts[0]
			for _, p := range parts[1:] {
				mustMerge(t, got, mustDecode(t, mustEncode(t, p)))
			}
			if d := diffResults(c, all, got); d != "" {
				t.Errorf("add all and merge of parts differ (-all +merged):\n%s", d)
			}
			if a, g := mustEncode(t, all), mustEncode(t, got); !bytes.Equal(a, g) {
				t.Errorf("add all encodes to %d bytes, merge of parts to %d other bytes", len(a), len(g))
			}
		})
	}
}

// sparse reports whether p's sketch is in the sparse representation.
func sparse(t *testing.T, p Partial) bool {
	t.Helper()
	b := mustEncode(t, p)
	return len(b) > 6 && b[6] == 1 // byte 3 of the sketch
}

// TestApproxCountDistinctNormalForm decodes a sparse sketch whose key list
// has outgrown the dense registers (Encode never writes one, but it is a
// valid sketch): its encoding must be the dense normal form, before and
// after Result.
func TestApproxCountDistinctNormalForm(t *testing.T) {
	const keys = 6000
	var stream []byte
	for range keys {
		stream = binary.AppendUvarint(stream, 1<<15) // even keys 2^15, 2*2^15, ...
	}
	b := []byte{formatVersion, tagApproxCountDistinct, byte(schemas.Int64), hllVersion, hllPrecision, 0, 1}
	b = binary.BigEndian.AppendUint32(b, 0) // no buffered keys
	b = binary.BigEndian.AppendUint32(b, keys)
	b = binary.BigEndian.AppendUint32(b, keys<<15)
	b = binary.BigEndian.AppendUint32(b, uint32(len(stream)))
	b = append(b, stream...)

	p := mustDecode(t, b)
	enc := mustEncode(t, p)
	if sparse(t, p) {
		t.Errorf("Encode(sketch of %d sparse bytes) is sparse, want dense", len(stream))
	}
	p.Result()
	if after := mustEncode(t, p); !bytes.Equal(after, enc) {
		t.Errorf("Result changed the encoding from %d to %d bytes", len(enc), len(after))
	}
	if d := diffResults(combo{}, p, mustDecode(t, enc)); d != "" {
		t.Errorf("re-decoded result mismatch (-want +got):\n%s", d)
	}
}
