package aggregate

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/tandem-fp/tandem/schemas"
)

// TestEncodingGolden pins the format: these bytes are in Bigtable and must
// keep decoding to the same values. A change here needs a new version.
func TestEncodingGolden(t *testing.T) {
	tests := []struct {
		name   string
		c      combo
		events []event
		hex    string
	}{
		{"count", combo{schemas.OpCount, schemas.Null}, at(null, null, null), "01010003"},
		{"sum/int64", combo{schemas.OpSum, schemas.Int64}, at(i64(-3)), "01020205"},
		{"sum/float64", combo{schemas.OpSum, schemas.Float64}, at(f64(1.5)), "010203" + "000000000000f83f" + "0000000000000000"},
		{"min/int64", combo{schemas.OpMin, schemas.Int64}, at(i64(300)), "010302" + "01" + "d804"},
		{"max/string", combo{schemas.OpMax, schemas.String}, at(str("ab")), "010401" + "01" + "026162"},
		{"max/string/empty", combo{schemas.OpMax, schemas.String}, nil, "010401" + "00"},
		{"min/timestamp", combo{schemas.OpMin, schemas.Timestamp}, at(ts(-1)), "010305" + "01" + "01"},
		{"max/float64", combo{schemas.OpMax, schemas.Float64}, at(f64(-2)), "010403" + "01" + "00000000000000c0"},
		{"mean/float64", combo{schemas.OpMean, schemas.Float64}, at(f64(2)), "010503" + "01" + "0000000000000040" + "0000000000000000"},
		{"mean/int64/empty", combo{schemas.OpMean, schemas.Int64}, nil, "010502" + "00"},
		{"last/bool", combo{schemas.OpLast, schemas.Bool}, []event{{schemas.BoolValue(true), 5}}, "010604" + "01" + "0a" + "01"},
		{"last/string", combo{schemas.OpLast, schemas.String}, []event{{str("é"), -1}}, "010601" + "01" + "01" + "02c3a9"},
		{"approx_count_distinct/string", combo{schemas.OpApproxCountDistinct, schemas.String}, at(str("a"), str("b")),
			"010701" + "020e0001" + "00000000" + "00000002" + "02293dd8" + "00000008" + "b8bad70ea0c1cd02"},
		{"approx_count_distinct/string/empty", combo{schemas.OpApproxCountDistinct, schemas.String}, nil, "010701"},
		{"stddev/float64", combo{schemas.OpStddev, schemas.Float64}, at(f64(1), f64(3)), "010903" + "02" + "00" + "04" + "02" + "01" + "01" + "02" + "02" + "01" + "05"}, // n 2, finite, S1 = 1·2², S2 = 5·2¹
		{"first/string", combo{schemas.OpFirst, schemas.String}, []event{{str("é"), -1}}, "010a01" + "01" + "01" + "02c3a9"},
		{"last_k/int64", combo{schemas.OpLastK, schemas.Int64}, at(i64(1), i64(-2)), "010b02" + "03" + "02" + "04" + "03" + "02" + "02"}, // k 3, 2 values: (t 2, -2), (t 1, 1)
		{"first_k/int64", combo{schemas.OpFirstK, schemas.Int64}, at(i64(1), i64(-2)), "010c02" + "03" + "02" + "02" + "02" + "04" + "03"},
		{"top_k/string", combo{schemas.OpTopK, schemas.String}, at(str("b"), str("a"), str("b")), "010d01" + "03" + "02" + "0161" + "01" + "0162" + "02"},
		{"histogram/string", combo{schemas.OpHistogram, schemas.String}, at(str("e"), str("a"), str("c"), str("a"), str("b"), str("d")),
			"010f01" + "04" + "01" + "04" + "0161" + "02" + "0162" + "01" + "0163" + "01" + "0164" + "01"}, // 4 buckets, overflow 1 (e)
		{"approx_percentile/float64", combo{schemas.OpApproxPercentile, schemas.Float64}, at(f64(1), f64(0), f64(-1), f64(100)),
			"010e03" + "05" + "7b14ae47e17a843f" + "000000000000d03f" + "000000000000e03f" + "cdccccccccccec3f" + "2b8716d9cef7ef3f" + // 5 percentiles
				"01" + // zero count
				"02" + "00" + "01" + "e601" + "01" + // positive: index 0 (1) once, index 230 (100) once
				"01" + "00" + "01"}, // negative: index 0 (-1) once
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, err := hex.DecodeString(tc.hex)
			if err != nil {
				t.Fatal(err)
			}
			p := addAll(t, tc.c, tc.events)
			if got := mustEncode(t, p); !bytes.Equal(got, want) {
				t.Errorf("Encode() = %x, want %x", got, want)
			}
			if d := diffResults(combo{}, p, mustDecode(t, want)); d != "" {
				t.Errorf("Decode(%x) result mismatch (-want +got):\n%s", want, d)
			}
		})
	}
}

// TestAppendBinaryAppends checks that AppendBinary appends to, and does not
// clobber, what the buffer holds.
func TestAppendBinaryAppends(t *testing.T) {
	for _, c := range allCombos() {
		t.Run(c.String(), func(t *testing.T) {
			p := addAll(t, c, at(randValue(rngFor(t), c.typ)))
			want := mustEncode(t, p)
			got, err := p.AppendBinary([]byte("prefix"))
			if err != nil {
				t.Fatalf("AppendBinary() = %v", err)
			}
			if !bytes.Equal(got, append([]byte("prefix"), want...)) {
				t.Errorf("AppendBinary(prefix) = %x, want prefix+%x", got, want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		hex  string
		want error
		msg  string // part of the message
	}{
		{"nil", "", ErrCorrupt, "empty"},
		{"version 0", "000100", ErrVersion, "version 0"},
		{"version 2", "02010003", ErrVersion, "version 2"},
		{"version only", "01", ErrCorrupt, "header"},
		{"short header", "0101", ErrCorrupt, "header"},
		{"op tag 0", "010000", ErrCorrupt, "op tag 0"},
		{"op tag 16", "011000", ErrCorrupt, "op tag 16"},
		{"stddev exact sum not canonical", "01090301" + "00" + "02" + "02" + "01" + "02" + "00" + "00" + "00", ErrCorrupt, "canonical"},
		{"op tag 255", "01ff00", ErrCorrupt, "op tag 255"},
		{"count over a field", "01010200", ErrCorrupt, "field type int64"},
		{"sum over string", "01020100", ErrCorrupt, "sum over field type string"},
		{"min over bool", "01030400", ErrCorrupt, "min over field type bool"},
		{"last over null", "01060000", ErrCorrupt, "last over field type null"},
		{"unknown type", "01060a00", ErrCorrupt, "Type(10)"},
		{"last over a composite type", "01060600", ErrCorrupt, "last over field type list"},
		{"count without payload", "010100", ErrCorrupt, "truncated varint"},
		{"count truncated varint", "01010080", ErrCorrupt, "truncated varint"},
		{"count non-minimal varint", "0101008000", ErrCorrupt, "non-minimal"},
		{"count overflows int64", "010100ffffffffffffffff8001", ErrCorrupt, "overflows int64"},
		{"count varint overflows", "010100ffffffffffffffffff02", ErrCorrupt, "overflows 64 bits"},
		{"count trailing byte", "0101000300", ErrCorrupt, "1 trailing bytes"},
		{"sum float truncated", "010203000000000000f83f", ErrCorrupt, "truncated float64"},
		{"min no presence byte", "010302", ErrCorrupt, "truncated"},
		{"min presence byte 2", "01030202", ErrCorrupt, "presence byte 2"},
		{"min absent with value", "0103020002", ErrCorrupt, "trailing"},
		{"min non-canonical NaN", "01030301" + "000000000000f87f", ErrCorrupt, "NaN"},
		{"max string too long", "0104010105616263", ErrCorrupt, "string of 5 bytes"},
		{"max string huge length", "01040101ffffffffffffffff7f", ErrCorrupt, "string of"},
		{"mean empty with sums", "010503000000000000000000", ErrCorrupt, "trailing"},
		{"mean truncated sums", "01050301000000000000f83f", ErrCorrupt, "truncated float64"},
		{"last bool byte 2", "010604010a02", ErrCorrupt, "bool byte 2"},
		{"last missing value", "010602010a", ErrCorrupt, "truncated"},
		{"stddev negative M2", "01080302" + "0000000000000040" + "000000000000f0bf", ErrCorrupt, "negative M2"},
		{"first missing value", "010a01" + "01", ErrCorrupt, "truncated"},
		{"last_k k 0", "010b02" + "00" + "00", ErrCorrupt, "k 0"},
		{"last_k k 101", "010b02" + "65" + "00", ErrCorrupt, "k 101"},
		{"last_k more values than k", "010b02" + "01" + "02" + "0202" + "0202", ErrCorrupt, "at most k values"},
		{"last_k out of order", "010b02" + "03" + "02" + "02" + "02" + "04" + "03", ErrCorrupt, "out of order"},
		{"first_k out of order", "010c02" + "03" + "02" + "04" + "03" + "02" + "02", ErrCorrupt, "out of order"},
		{"last_k truncated", "010b02" + "03" + "02" + "04", ErrCorrupt, "truncated"},
		{"top_k count 0", "010d01" + "03" + "01" + "0161" + "00", ErrCorrupt, "count 0"},
		{"top_k repeated value", "010d01" + "03" + "02" + "0161" + "01" + "0161" + "01", ErrCorrupt, "out of order"},
		{"top_k beyond capacity", "010d01" + "01" + "8101", ErrCorrupt, "at most 128 counters"},
		{"histogram limit 0", "010f01" + "00" + "00" + "00", ErrCorrupt, "limit of 0"},
		{"histogram overflow without full buckets", "010f01" + "04" + "01" + "01" + "0161" + "01", ErrCorrupt, "overflow 1 with 1 of 4"},
		{"histogram out of order", "010f01" + "04" + "00" + "02" + "0162" + "01" + "0161" + "01", ErrCorrupt, "out of order"},
		{"histogram over int64", "010f02" + "04" + "00" + "00", ErrCorrupt, "histogram over field type int64"},
		{"percentile over string", "010e01", ErrCorrupt, "approx_percentile over field type string"},
		{"percentile no percentiles", "010e03" + "00", ErrCorrupt, "0 percentiles"},
		{"percentile 1", "010e03" + "01" + "000000000000f03f" + "00" + "00" + "00", ErrCorrupt, "not in (0, 1)"},
		{"percentile bin gap 0", "010e03" + "01" + "000000000000e03f" + "00" + "02" + "00" + "01" + "00" + "01" + "00", ErrCorrupt, "gap 0"},
		{"percentile bin count 0", "010e03" + "01" + "000000000000e03f" + "00" + "01" + "00" + "00" + "00", ErrCorrupt, "bin count 0"},
		{"percentile bins span", "010e03" + "01" + "000000000000e03f" + "00" + "03" + "00" + "01" + "ff0f" + "01" + "02" + "01" + "00", ErrCorrupt, "span"},
		{"percentile bin index beyond", "010e03" + "01" + "000000000000e03f" + "00" + "01" + "feffff0f" + "01" + "00", ErrCorrupt, "bin index"},
		{"distinct short sketch", "01070102", ErrCorrupt, "sketch header"},
		{"distinct sketch version 1", "010701010e0001", ErrCorrupt, "sketch header"},
		{"distinct sketch precision 16", "010701021000010000000000000000000000000000000000", ErrCorrupt, "sketch header"},
		{"distinct sketch truncated", "010701020e0001000000", ErrCorrupt, "sketch"},
		{"distinct sketch bad list", "010701020e0001" + "00000000" + "00000002" + "02293dd8" + "00000008" + "b8bad70ea0c1cd", ErrCorrupt, "sketch"},
		{"distinct sketch trailing", "010701020e0001" + "00000000" + "00000000" + "00000000" + "00000000" + "00", ErrCorrupt, "sketch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := hex.DecodeString(tc.hex)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Decode(b)
			if !errors.Is(err, tc.want) || p != nil {
				t.Fatalf("Decode(%x) = %v, %v; want nil, %v", b, p, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Decode(%x) = %q, want a message containing %q", b, err, tc.msg)
			}
		})
	}
}
