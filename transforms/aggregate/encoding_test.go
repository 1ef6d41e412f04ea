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
		{"op tag 10", "010a00", ErrCorrupt, "op tag 10"},
		{"stddev exact sum not canonical", "01090301" + "00" + "02" + "02" + "01" + "02" + "00" + "00" + "00", ErrCorrupt, "canonical"},
		{"op tag 255", "01ff00", ErrCorrupt, "op tag 255"},
		{"count over a field", "01010200", ErrCorrupt, "field type int64"},
		{"sum over string", "01020100", ErrCorrupt, "sum over field type string"},
		{"min over bool", "01030400", ErrCorrupt, "min over field type bool"},
		{"last over null", "01060000", ErrCorrupt, "last over field type null"},
		{"unknown type", "01060600", ErrCorrupt, "Type(6)"},
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
