package serving

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/tandem-fp/tandem/schemas"
)

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote\`, "tab\tnl\n\r", "\x00\x1f", "<a&b>", "é ü 日本", "\u2028\u2029", "bad\xffutf8", "emoji 😀"} {
		got := appendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("appendString(%q) = %s: not JSON: %v", s, got, err)
			continue
		}
		want, _ := json.Marshal(s) // encoding/json's escaping is the reference
		if string(got) != string(want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
}

// fixed dates: JSON encoding only: no clock is involved.
func TestAppendValue(t *testing.T) {
	ts := time.Date(2026, 11, 20, 10, 0, 0, 123000, time.UTC)
	tests := []struct {
		v    schemas.Value
		want string
	}{
		{schemas.Value{}, "null"},
		{schemas.Int64Value(-42), "-42"},
		{schemas.Int64Value(math.MaxInt64), "9223372036854775807"},
		{schemas.Float64Value(72.5), "72.5"},
		{schemas.Float64Value(0), "0"},
		{schemas.Float64Value(1e21), "1e+21"},
		{schemas.Float64Value(1e-7), "1e-7"},
		{schemas.Float64Value(123456789.125), "123456789.125"},
		{schemas.Float64Value(math.NaN()), `"NaN"`},
		{schemas.Float64Value(math.Inf(1)), `"Infinity"`},
		{schemas.Float64Value(math.Inf(-1)), `"-Infinity"`},
		{schemas.BoolValue(true), "true"},
		{schemas.BoolValue(false), "false"},
		{schemas.StringValue(`a"b`), `"a\"b"`},
		{schemas.TimestampValue(ts), `"2026-11-20T10:00:00.000123Z"`},
	}
	for _, tc := range tests {
		if got := string(appendValue(nil, tc.v)); got != tc.want {
			t.Errorf("appendValue(%v) = %s, want %s", tc.v, got, tc.want)
		}
	}
	// Finite floats match encoding/json.
	for _, f := range []float64{3.14159, -0.5, 1e20, 1e-6, 5e-324, math.MaxFloat64, 0.1 + 0.2} {
		want, _ := json.Marshal(f)
		if got := string(appendFloat(nil, f)); got != string(want) {
			t.Errorf("appendFloat(%v) = %s, want %s", f, got, want)
		}
	}
}
