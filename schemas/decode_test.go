package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// eventsYAML declares one field of every type, with a string entity key.
const eventsYAML = `
name: events
entity: {name: card, key: card_id}
event_time: ts
fields:
  card_id: string
  n: int64
  x: float64
  ok: bool
  ts: timestamp
  at: timestamp
features:
  - {name: c, op: count, window: 1h}
`

// intKeyYAML has an int64 entity key.
const intKeyYAML = `
name: users
entity: {name: user, key: user_id}
event_time: ts
fields:
  user_id: int64
  ts: timestamp
features:
  - {name: c, op: count, window: 1h}
`

func mustParse(t testing.TB, yaml string) *FeatureSet {
	t.Helper()
	fs, err := Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return fs
}

func micros(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMicro()
}

func ts(s string) Value { return Value{Type: Timestamp, Int: micros(s)} }

// fixed dates: decoding only: no clock is involved.
func TestDecodeJSON(t *testing.T) {
	fs := mustParse(t, eventsYAML)
	ts0 := ts("2026-03-01T10:15:30Z")
	tests := []struct {
		name    string
		in      string
		want    Event
		wantErr string // substring of the error; "" for success
	}{
		{
			name: "all fields",
			in:   `{"card_id":"c_1001","n":42,"x":12.5,"ok":true,"ts":"2026-03-01T10:15:30Z","at":"2026-03-01T09:00:00Z"}`,
			want: Event{Key: "c_1001", Time: ts0.Int, Values: []Value{
				StringValue("c_1001"), Int64Value(42), Float64Value(12.5), BoolValue(true), ts0, ts("2026-03-01T09:00:00Z"),
			}},
		},
		{
			name: "fractional seconds",
			in:   `{"card_id":"c","ts":"2026-03-01T10:15:30.123456Z"}`,
			want: Event{Key: "c", Time: micros("2026-03-01T10:15:30.123456Z"), Values: []Value{
				StringValue("c"), {}, {}, {}, ts("2026-03-01T10:15:30.123456Z"), {},
			}},
		},
		{
			name: "nanoseconds truncate to microseconds",
			in:   `{"card_id":"c","ts":"2026-03-01T10:15:30.123456789Z"}`,
			want: Event{Key: "c", Time: micros("2026-03-01T10:15:30.123456Z"), Values: []Value{
				StringValue("c"), {}, {}, {}, ts("2026-03-01T10:15:30.123456Z"), {},
			}},
		},
		{
			name: "one fractional digit",
			in:   `{"card_id":"c","ts":"2026-03-01T10:15:30.5Z"}`,
			want: Event{Key: "c", Time: micros("2026-03-01T10:15:30.5Z"), Values: []Value{
				StringValue("c"), {}, {}, {}, ts("2026-03-01T10:15:30.5Z"), {},
			}},
		},
		{
			name: "offset",
			in:   `{"card_id":"c","ts":"2026-03-01T12:15:30+02:00"}`,
			want: Event{Key: "c", Time: ts0.Int, Values: []Value{StringValue("c"), {}, {}, {}, ts0, {}}},
		},
		{
			name: "negative offset across midnight",
			in:   `{"card_id":"c","ts":"2026-02-28T23:15:30-11:00"}`,
			want: Event{Key: "c", Time: ts0.Int, Values: []Value{StringValue("c"), {}, {}, {}, ts0, {}}},
		},
		{
			name: "before 1970",
			in:   `{"card_id":"c","ts":"1969-12-31T23:59:59.999999Z"}`,
			want: Event{Key: "c", Time: -1, Values: []Value{StringValue("c"), {}, {}, {}, {Type: Timestamp, Int: -1}, {}}},
		},
		{
			name: "numbers",
			in:   `{"card_id":"c","ts":"2026-03-01T10:15:30Z","n":-9223372036854775808,"x":3}`,
			want: Event{Key: "c", Time: ts0.Int, Values: []Value{StringValue("c"), Int64Value(math.MinInt64), Float64Value(3), {}, ts0, {}}},
		},
		{
			name: "float exponent",
			in:   `{"card_id":"c","ts":"2026-03-01T10:15:30Z","x":-1.5e-3}`,
			want: Event{Key: "c", Time: ts0.Int, Values: []Value{StringValue("c"), {}, Float64Value(-0.0015), {}, ts0, {}}},
		},
		{
			name: "nulls and missing fields",
			in:   `{"card_id":"c","ts":"2026-03-01T10:15:30Z","n":null,"x":null,"ok":null}`,
			want: Event{Key: "c", Time: ts0.Int, Values: []Value{StringValue("c"), {}, {}, {}, ts0, {}}},
		},
		{
			name: "unknown fields ignored",
			in:   ` {"extra":{"a":[1,2,{"b":null}],"c":"\u00e9"},"card_id":"c","more":[],"ts":"2026-03-01T10:15:30Z","z":-0.5e+10,"t":true}` + "\n",
			want: Event{Key: "c", Time: ts0.Int, Values: []Value{StringValue("c"), {}, {}, {}, ts0, {}}},
		},
		{
			name: "escapes",
			in:   `{"card_id":"c\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00","ts":"2026-03-01T10:15:30Z"}`,
			want: Event{Key: "c\"\\/\b\f\n\r\té😀", Time: ts0.Int, Values: []Value{StringValue("c\"\\/\b\f\n\r\té😀"), {}, {}, {}, ts0, {}}},
		},
		{
			name: "escaped member name",
			in:   `{"card\u005fid":"c","ts":"2026-03-01T10:15:30Z"}`,
			want: Event{Key: "c", Time: ts0.Int, Values: []Value{StringValue("c"), {}, {}, {}, ts0, {}}},
		},
		{
			name: "last duplicate wins",
			in:   `{"card_id":"a","card_id":"b","ts":"2026-03-01T10:15:30Z"}`,
			want: Event{Key: "b", Time: ts0.Int, Values: []Value{StringValue("b"), {}, {}, {}, ts0, {}}},
		},
		{
			name: "invalid UTF-8 becomes U+FFFD",
			in:   "{\"card_id\":\"a\xffb\",\"ts\":\"2026-03-01T10:15:30Z\"}",
			want: Event{Key: "a\uFFFDb", Time: ts0.Int, Values: []Value{StringValue("a\uFFFDb"), {}, {}, {}, ts0, {}}},
		},
		{name: "int as fraction", in: `{"card_id":"c","ts":"2026-03-01T10:15:30Z","n":1.5}`, wantErr: `field "n": want int64, got number 1.5`},
		{name: "int as exponent", in: `{"card_id":"c","ts":"2026-03-01T10:15:30Z","n":1e3}`, wantErr: `field "n": want int64, got number 1e3`},
		{name: "int overflow", in: `{"card_id":"c","ts":"2026-03-01T10:15:30Z","n":9223372036854775808}`, wantErr: `field "n": int64 out of range: 9223372036854775808`},
		{name: "int as string", in: `{"card_id":"c","ts":"2026-03-01T10:15:30Z","n":"12"}`, wantErr: `field "n": want int64, got string "12"`},
		{name: "float as string", in: `{"card_id":"c","ts":"2026-03-01T10:15:30Z","x":"abc"}`, wantErr: `field "x": want float64, got string "abc"`},
		{name: "float overflow", in: `{"card_id":"c","ts":"2026-03-01T10:15:30Z","x":1e400}`, wantErr: `field "x": float64 out of range: 1e400`},
		{name: "bool as number", in: `{"card_id":"c","ts":"2026-03-01T10:15:30Z","ok":1}`, wantErr: `field "ok": want bool, got number 1`},
		{name: "string as number", in: `{"card_id":7,"ts":"2026-03-01T10:15:30Z"}`, wantErr: `field "card_id": want string, got number 7`},
		{name: "string as object", in: `{"card_id":{},"ts":"2026-03-01T10:15:30Z"}`, wantErr: `field "card_id": want string, got object`},
		{name: "missing key", in: `{"ts":"2026-03-01T10:15:30Z"}`, wantErr: `missing entity key "card_id"`},
		{name: "null key", in: `{"card_id":null,"ts":"2026-03-01T10:15:30Z"}`, wantErr: `missing entity key "card_id"`},
		{name: "empty key", in: `{"card_id":"","ts":"2026-03-01T10:15:30Z"}`, wantErr: `empty entity key "card_id"`},
		{name: "long key", in: `{"card_id":"` + strings.Repeat("k", MaxKeyLen+1) + `","ts":"2026-03-01T10:15:30Z"}`, wantErr: `entity key "card_id" is longer than 1024 bytes`},
		{name: "missing time", in: `{"card_id":"c"}`, wantErr: `missing event time "ts"`},
		{name: "bad time", in: `{"card_id":"c","ts":"yesterday"}`, wantErr: `field "ts": want an RFC 3339 timestamp (2006-01-02T15:04:05Z), got string "yesterday"`},
		{name: "time without zone", in: `{"card_id":"c","ts":"2026-03-01T10:15:30"}`, wantErr: `field "ts": want an RFC 3339`},
		{name: "time with space", in: `{"card_id":"c","ts":"2026-03-01 10:15:30Z"}`, wantErr: `field "ts": want an RFC 3339`},
		{name: "time Feb 30", in: `{"card_id":"c","ts":"2026-02-30T10:15:30Z"}`, wantErr: `field "ts": want an RFC 3339`},
		{name: "time leap second", in: `{"card_id":"c","ts":"2016-12-31T23:59:60Z"}`, wantErr: `field "ts": want an RFC 3339`},
		{name: "time as number", in: `{"card_id":"c","ts":1700000000}`, wantErr: `field "ts": want timestamp, got number 1700000000`},
		{name: "empty input", in: ``, wantErr: `invalid JSON: empty input`},
		{name: "array", in: `[1]`, wantErr: `want a JSON object, got array`},
		{name: "truncated", in: `{"card_id":"c","ts":"2026-03-01T10:15:30Z"`, wantErr: `invalid JSON: unexpected end of input`},
		{name: "trailing comma", in: `{"card_id":"c","ts":"2026-03-01T10:15:30Z",}`, wantErr: `invalid JSON: want a string for an object member name at offset 43`},
		{name: "trailing data", in: `{"card_id":"c","ts":"2026-03-01T10:15:30Z"} {}`, wantErr: `invalid JSON: unexpected data after the object`},
		{name: "single quotes", in: `{'card_id':'c'}`, wantErr: `invalid JSON`},
		{name: "bad unknown value", in: `{"card_id":"c","ts":"2026-03-01T10:15:30Z","y":[1,}`, wantErr: `invalid JSON`},
		{name: "leading zero", in: `{"card_id":"c","ts":"2026-03-01T10:15:30Z","y":01}`, wantErr: `invalid JSON`},
		{name: "control character", in: "{\"card_id\":\"a\nb\",\"ts\":\"2026-03-01T10:15:30Z\"}", wantErr: `invalid JSON: control character in string`},
		{name: "bad escape", in: `{"card_id":"a\x","ts":"2026-03-01T10:15:30Z"}`, wantErr: `invalid JSON: invalid escape in string`},
		{name: "NaN", in: `{"card_id":"c","ts":"2026-03-01T10:15:30Z","x":NaN}`, wantErr: `invalid JSON`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fs.DecodeJSON([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("DecodeJSON(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
				}
				if !errors.Is(err, ErrBadEvent) {
					t.Errorf("DecodeJSON(%q) error = %v, does not match ErrBadEvent", tc.in, err)
				}
				if json.Valid([]byte(tc.in)) == strings.Contains(err.Error(), "invalid JSON") {
					t.Errorf("DecodeJSON(%q) error = %v, but json.Valid = %v", tc.in, err, json.Valid([]byte(tc.in)))
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeJSON(%q) error = %v", tc.in, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("DecodeJSON(%q) mismatch (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

// fixed dates: decoding only: no clock is involved.
func TestDecodeJSONIntKey(t *testing.T) {
	fs := mustParse(t, intKeyYAML)
	for _, tc := range []struct {
		in, wantKey string
	}{
		{`{"user_id":42,"ts":"2026-03-01T10:15:30Z"}`, "42"},
		{`{"user_id":-7,"ts":"2026-03-01T10:15:30Z"}`, "-7"},
		{`{"user_id":0,"ts":"2026-03-01T10:15:30Z"}`, "0"},
	} {
		e, err := fs.DecodeJSON([]byte(tc.in))
		if err != nil || e.Key != tc.wantKey {
			t.Errorf("DecodeJSON(%q) = key %q, %v; want key %q", tc.in, e.Key, err, tc.wantKey)
		}
	}
	_, err := fs.DecodeJSON([]byte(`{"user_id":"42","ts":"2026-03-01T10:15:30Z"}`))
	if want := `field "user_id": want int64, got string "42"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("DecodeJSON(string key) error = %v, want %q", err, want)
	}
	var ee *EventError
	if !errors.As(err, &ee) || ee.Field != "user_id" {
		t.Errorf("DecodeJSON(string key) error = %#v, want an *EventError for field user_id", err)
	}
}

// civilDateTime stands in for civil.DateTime.
type civilDateTime struct{ t time.Time }

func (c civilDateTime) In(loc *time.Location) time.Time {
	return time.Date(c.t.Year(), c.t.Month(), c.t.Day(), c.t.Hour(), c.t.Minute(), c.t.Second(), c.t.Nanosecond(), loc)
}

// fixed dates: decoding only: no clock is involved.
func TestDecodeRecord(t *testing.T) {
	fs := mustParse(t, eventsYAML)
	ts0 := ts("2026-03-01T10:15:30Z")
	base := func(v ...Value) []Value { return append([]Value{StringValue("c")}, v...) }
	tests := []struct {
		name    string
		rec     map[string]any
		want    []Value
		wantErr string
	}{
		{
			name: "bigquery types",
			rec:  map[string]any{"card_id": "c", "n": int64(4), "x": 2.5, "ok": false, "ts": ts0.Interface(), "at": nil},
			want: base(Int64Value(4), Float64Value(2.5), BoolValue(false), ts0, Value{}),
		},
		{
			name: "strings as from CSV",
			rec:  map[string]any{"card_id": "c", "n": "-4", "x": "1e2", "ok": "true", "ts": "2026-03-01 10:15:30", "at": ""},
			want: base(Int64Value(-4), Float64Value(100), BoolValue(true), ts0, Value{}),
		},
		{
			name: "civil forms",
			rec:  map[string]any{"card_id": "c", "ts": "2026-03-01 10:15:30.000000 UTC", "at": "2026-03-01 12:15:30+02"},
			want: base(Value{}, Value{}, Value{}, ts0, ts0),
		},
		{
			name: "json.Number, big.Rat, civil.DateTime",
			rec: map[string]any{"card_id": "c", "n": json.Number("12"), "x": big.NewRat(1, 4),
				"ts": civilDateTime{time.Date(2026, 3, 1, 10, 15, 30, 0, time.UTC)}, "at": "2026-03-01T10:15:30Z"},
			want: base(Int64Value(12), Float64Value(0.25), Value{}, ts0, ts0),
		},
		{
			name: "other integer types",
			rec:  map[string]any{"card_id": "c", "n": int32(-3), "x": 7, "ts": ts0.Interface()},
			want: base(Int64Value(-3), Float64Value(7), Value{}, ts0, Value{}),
		},
		{name: "int from float", rec: map[string]any{"card_id": "c", "ts": ts0.Interface(), "n": 1.5}, wantErr: `field "n": want int64, got float64 1.5`},
		{name: "int from bad string", rec: map[string]any{"card_id": "c", "ts": ts0.Interface(), "n": "1.5"}, wantErr: `field "n": want int64, got string "1.5"`},
		{name: "int from json.Number fraction", rec: map[string]any{"card_id": "c", "ts": ts0.Interface(), "n": json.Number("1.5")}, wantErr: `field "n": want int64, got string "1.5"`},
		{name: "uint overflow", rec: map[string]any{"card_id": "c", "ts": ts0.Interface(), "n": uint64(math.MaxUint64)}, wantErr: `field "n": int64 out of range`},
		{name: "NaN", rec: map[string]any{"card_id": "c", "ts": ts0.Interface(), "x": math.NaN()}, wantErr: `field "x": want a finite float64, got NaN`},
		{name: "Inf string", rec: map[string]any{"card_id": "c", "ts": ts0.Interface(), "x": "Inf"}, wantErr: `field "x": want a finite float64, got string "Inf"`},
		{name: "bool from int", rec: map[string]any{"card_id": "c", "ts": ts0.Interface(), "ok": int64(1)}, wantErr: `field "ok": want bool, got int64 1`},
		{name: "bad time string", rec: map[string]any{"card_id": "c", "ts": "01/03/2026"}, wantErr: `field "ts": want a timestamp`},
		{name: "time out of range", rec: map[string]any{"card_id": "c", "ts": time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, wantErr: `field "ts": timestamp out of range`},
		{name: "missing key", rec: map[string]any{"ts": ts0.Interface()}, wantErr: `missing entity key "card_id"`},
		{name: "missing time", rec: map[string]any{"card_id": "c", "ts": ""}, wantErr: `missing event time "ts"`},
		{name: "string key from int", rec: map[string]any{"card_id": int64(5), "ts": ts0.Interface()}, wantErr: `field "card_id": want string, got int64 5`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fs.DecodeRecord(func(name string) (any, bool) {
				v, ok := tc.rec[name]
				return v, ok
			})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrBadEvent) {
					t.Fatalf("DecodeRecord(%v) error = %v, want ErrBadEvent containing %q", tc.rec, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeRecord(%v) error = %v", tc.rec, err)
			}
			want := Event{Key: "c", Time: ts0.Int, Values: tc.want}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("DecodeRecord(%v) mismatch (-want +got):\n%s", tc.rec, diff)
			}
		})
	}
}

// fixed dates: encoding only: no clock is involved.
func TestEncodeJSON(t *testing.T) {
	fs := mustParse(t, eventsYAML)
	e := Event{Key: "c\"1", Time: micros("2026-03-01T10:15:30.1234Z"), Values: []Value{
		StringValue("c\"1"), Int64Value(-3), Float64Value(1e-7), BoolValue(true), ts("2026-03-01T10:15:30.1234Z"), {},
	}}
	got := string(fs.EncodeJSON(e))
	want := `{"card_id":"c\"1","n":-3,"x":1e-7,"ok":true,"ts":"2026-03-01T10:15:30.1234Z","at":null}`
	if got != want {
		t.Errorf("EncodeJSON = %s, want %s", got, want)
	}
	back, err := fs.DecodeJSON([]byte(got))
	if err != nil {
		t.Fatalf("DecodeJSON(EncodeJSON) error = %v", err)
	}
	if diff := cmp.Diff(e, back); diff != "" {
		t.Errorf("DecodeJSON(EncodeJSON(e)) mismatch (-want +got):\n%s", diff)
	}
}

// TestAppendJSONFloat checks float formatting against encoding/json.
func TestAppendJSONFloat(t *testing.T) {
	for _, f := range []float64{0, math.Copysign(0, -1), 1, -1.5, 1e20, 1e21, 1e-6, 1e-7, 123456789.125, math.MaxFloat64, math.SmallestNonzeroFloat64, 0.1} {
		want, _ := json.Marshal(f)
		if got := AppendJSONFloat(nil, f); !bytes.Equal(got, want) {
			t.Errorf("AppendJSONFloat(%v) = %s, want %s", f, got, want)
		}
	}
}

// fixed dates: parsing only: no clock is involved.
func TestParseTimestamp(t *testing.T) {
	tests := []struct {
		in    string
		civil bool
		want  string // RFC 3339 of the result, "" for an error
	}{
		{"2026-03-01T10:15:30Z", false, "2026-03-01T10:15:30Z"},
		{"0000-01-01T00:00:00Z", false, "0000-01-01T00:00:00Z"},
		{"9999-12-31T23:59:59.999999999Z", false, "9999-12-31T23:59:59.999999Z"},
		{"0000-01-01T00:00:00+00:01", false, ""}, // before year 0 in UTC
		{"9999-12-31T23:59:59-00:01", false, ""}, // after 9999 in UTC
		{"2024-02-29T00:00:00Z", false, "2024-02-29T00:00:00Z"},
		{"2100-02-29T00:00:00Z", false, ""},
		{"2026-03-01T10:15:30.Z", false, ""},
		{"2026-03-01T10:15:30.1234567891Z", false, ""},
		{"2026-03-01T10:15:30+0200", false, ""},
		{"2026-03-01T10:15:30+24:00", false, ""},
		{"2026-03-01T24:00:00Z", false, ""},
		{"2026-13-01T00:00:00Z", false, ""},
		{"2026-03-01t10:15:30z", false, ""},
		{"2026-03-01t10:15:30z", true, "2026-03-01T10:15:30Z"},
		{"2026-03-01 10:15:30", true, "2026-03-01T10:15:30Z"},
		{"2026-03-01 10:15:30.5 UTC", true, "2026-03-01T10:15:30.5Z"},
		{"2026-03-01 10:15:30-05", true, "2026-03-01T15:15:30Z"},
		{"2026-03-01 10:15:30-05", false, ""},
		{"2026-03-01", true, ""},
	}
	for _, tc := range tests {
		got, ok := parseTimestamp([]byte(tc.in), tc.civil)
		gotS := ""
		if ok {
			gotS = time.UnixMicro(got).UTC().Format(time.RFC3339Nano)
		}
		if gotS != tc.want {
			t.Errorf("parseTimestamp(%q, civil=%v) = %q, want %q", tc.in, tc.civil, gotS, tc.want)
		}
		if ok && !tc.civil {
			p, err := time.Parse(time.RFC3339Nano, tc.in)
			if err != nil || p.UnixMicro() != got {
				t.Errorf("time.Parse(%q) = %v, %v; parseTimestamp = %d", tc.in, p, err, got)
			}
		}
	}
}

// FuzzDecodeJSON checks that DecodeJSON never panics, accepts only valid
// JSON, tells invalid JSON from a bad event exactly as encoding/json does,
// reads strings and timestamps as encoding/json and time.Parse do, and that
// whatever it decodes round-trips through EncodeJSON.
//
// fixed dates: fuzz seeds, decoded only.
func FuzzDecodeJSON(f *testing.F) {
	fs := mustParse(f, eventsYAML)
	for _, s := range []string{
		`{"card_id":"c_1001","n":42,"x":12.5,"ok":true,"ts":"2026-03-01T10:15:30Z","at":null}`,
		`{"card_id":"c","ts":"2026-03-01T12:15:30.123456789+02:00","x":-1.5e-3,"n":-0}`,
		`{"card_id":"\ud83d\ude00\u00e9","ts":"1969-12-31T23:59:59.999999Z","extra":[{"a":[]},"x",1e5,false]}`,
		`{"card_id":"c","ts":"2026-03-01T10:15:30Z","n":1.5}`,
		`{"card_id":"\ud800x","ts":"2026-03-01T10:15:30Z"}`,
		`[]`,
		`{"card_id":"c",`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := fs.DecodeJSON(data)
		valid := json.Valid(data)
		if err != nil {
			if !errors.Is(err, ErrBadEvent) {
				t.Fatalf("DecodeJSON(%q) error = %v, does not match ErrBadEvent", data, err)
			}
			if invalid := strings.HasPrefix(err.(*EventError).Reason, "invalid JSON"); invalid == valid {
				t.Fatalf("DecodeJSON(%q) error = %v, but json.Valid = %v", data, err, valid)
			}
			return
		}
		if !valid {
			t.Fatalf("DecodeJSON(%q) accepted invalid JSON", data)
		}
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			t.Fatalf("json.Decode(%q) error = %v", data, err)
		}
		for i, f := range fs.Fields {
			v := e.Values[i]
			switch f.Type {
			case String:
				if s, _ := m[f.Name].(string); v.Type == String && s != v.Str {
					t.Errorf("DecodeJSON(%q) field %s = %q, encoding/json reads %q", data, f.Name, v.Str, s)
				}
			case Timestamp:
				if v.Type == Timestamp {
					s, _ := m[f.Name].(string)
					p, err := time.Parse(time.RFC3339Nano, s)
					if err != nil || p.UnixMicro() != v.Int {
						t.Errorf("DecodeJSON(%q) field %s = %d, time.Parse reads %v, %v", data, f.Name, v.Int, p, err)
					}
				}
			}
		}
		enc := fs.EncodeJSON(e)
		back, err := fs.DecodeJSON(enc)
		if err != nil {
			t.Fatalf("DecodeJSON(EncodeJSON(DecodeJSON(%q)) = %s) error = %v", data, enc, err)
		}
		if diff := cmp.Diff(e, back); diff != "" {
			t.Fatalf("DecodeJSON(%q) does not round-trip through %s (-first +second):\n%s", data, enc, diff)
		}
	})
}

// fixed dates: a benchmark input, decoded only.
var benchEvent = []byte(`{"card_id":"c_1042","merchant":"Blue Bottle Coffee","amount":12.5,"approved":true,"ts":"2026-03-01T10:15:30.123456Z","channel":"pos"}`)

func BenchmarkDecodeJSON(b *testing.B) {
	fs, err := Load("card_activity.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(benchEvent)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fs.DecodeJSON(benchEvent); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeJSONStdlib is the baseline DecodeJSON replaces: the same
// event through encoding/json into map[string]any, before any type checks.
func BenchmarkDecodeJSONStdlib(b *testing.B) {
	b.SetBytes(int64(len(benchEvent)))
	b.ReportAllocs()
	for b.Loop() {
		d := json.NewDecoder(bytes.NewReader(benchEvent))
		d.UseNumber()
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeJSON(b *testing.B) {
	fs, err := Load("card_activity.yaml")
	if err != nil {
		b.Fatal(err)
	}
	e, err := fs.DecodeJSON(benchEvent)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = fs.AppendJSON(buf[:0], e)
	}
}
