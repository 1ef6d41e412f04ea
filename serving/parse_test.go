package serving

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestStrictRequests covers what issue 15 found the server accepting or
// reading loosely (points 1–4): every case is a 400 whose message says what
// is wrong, and no message quotes more than a bounded part of the input.
//
// fixed dates: only in malformed `at` values, rejected before any clock check.
func TestStrictRequests(t *testing.T) {
	e := newEnv(t)
	seedC1(e)
	at := rfc(e.tb.Add(20 * time.Minute))
	long := strings.Repeat("9", 500_000)
	tests := []struct {
		name, method, path, body string
		code, message            string
	}{
		// 1. A malformed query string is an error, not pairs silently dropped.
		{"bad escape in at", "GET", "/v1/features/cards/c1?features=txn_count_1h&at=" + at + "%zz", "", "bad_request", `malformed query string: bad percent-encoding "%zz"`},
		{"bad escape in features", "GET", "/v1/features/cards/c1?features=txn_count_1h%zz", "", "bad_request", "malformed query string"},
		{"semicolon separator", "GET", "/v1/features/cards/c1?features=txn_count_1h;at=" + at, "", "bad_request", "malformed query string: semicolon separator in query"},
		{"unknown parameter", "GET", "/v1/features/cards/c1?feature=txn_count_1h", "", "bad_request", `unknown query parameter "feature" (want features and at)`},
		{"at twice", "GET", "/v1/features/cards/c1?at=" + at + "&at=" + at, "", "bad_at", "give at once, not 2 times"},

		// 2. The POST body: case-sensitive names, no duplicates, no unknown.
		{"other case beside the field", "POST", "/v1/features/cards", `{"entities":["a"],"Entities":["b"]}`, "bad_json", `unknown field "Entities" (want entities, features, at; names are case-sensitive)`},
		{"upper case", "POST", "/v1/features/cards", `{"ENTITIES":["a"]}`, "bad_json", `unknown field "ENTITIES"`},
		{"mixed case at", "POST", "/v1/features/cards", `{"entities":["a"],"aT":"` + at + `"}`, "bad_json", `unknown field "aT"`},
		{"duplicate at", "POST", "/v1/features/cards", `{"entities":["a"],"at":"` + at + `","at":"` + at + `"}`, "bad_json", `field "at" is given twice`},
		{"duplicate entities", "POST", "/v1/features/cards", `{"entities":["a"],"entities":["b"]}`, "bad_json", `field "entities" is given twice`},
		{"null at", "POST", "/v1/features/cards", `{"entities":["a"],"at":null}`, "bad_json", `field "at": want a string, got null`},
		{"object for at", "POST", "/v1/features/cards", `{"entities":["a"],"at":{}}`, "bad_json", `field "at": want a string, got object`},
		{"long unknown field is cut", "POST", "/v1/features/cards", `{"` + strings.Repeat("x", 1000) + `":1}`, "bad_json", `"` + strings.Repeat("x", 64) + `"… (1000 bytes)`},

		// 3. at: the RFC 3339 grammar, and no whole input echoed.
		{"offset hour 24", "GET", "/v1/features/cards/c1?at=2026-01-02T00:00:00%2B24:00", "", "bad_at", "offset out of range"},
		{"ten fractional digits", "GET", "/v1/features/cards/c1?at=2026-01-02T00:00:00.1234567891Z", "", "bad_at", "more than 9 fractional digits"},
		{"no offset", "GET", "/v1/features/cards/c1?at=2026-01-02T00:00:00", "", "bad_at", "want Z or an offset"},
		{"February 30", "GET", "/v1/features/cards/c1?at=2026-02-30T00:00:00Z", "", "bad_at", "day out of range"},
		{"huge at is quoted in part", "POST", "/v1/features/cards", `{"entities":["a"],"at":"` + long + `"}`, "bad_at", "… (500000 bytes)"},

		// 4. Entity keys: the same rules for GET and POST.
		{"GET invalid UTF-8", "GET", "/v1/features/cards/a%FFb", "", "bad_request", `entity: entity key "a\xffb" is not valid UTF-8`},
		{"GET NUL", "GET", "/v1/features/cards/a%00b", "", "bad_request", "holds NUL, CR or LF"},
		{"GET CR", "GET", "/v1/features/cards/a%0Db", "", "bad_request", "holds NUL, CR or LF"},
		{"GET LF", "GET", "/v1/features/cards/a%0Ab", "", "bad_request", "holds NUL, CR or LF"},
		{"POST invalid UTF-8", "POST", "/v1/features/cards", "{\"entities\":[\"a\xffb\"]}", "bad_json", "request body is not valid UTF-8 (byte 15)"},
		{"POST lone surrogate", "POST", "/v1/features/cards", `{"entities":["a\ud800b"]}`, "bad_json", `\ud800 is half of a UTF-16 surrogate pair`},
		{"POST lone low surrogate", "POST", "/v1/features/cards", `{"entities":["\udc00"]}`, "bad_json", `\udc00 is half of a UTF-16 surrogate pair`},
		{"POST NUL", "POST", "/v1/features/cards", `{"entities":["ok","a\u0000b"]}`, "bad_request", `entities[1]: entity key "a\x00b" holds NUL, CR or LF`},
		{"POST LF", "POST", "/v1/features/cards", `{"entities":["a\nb"]}`, "bad_request", "entities[0]"},
		{"POST CR", "POST", "/v1/features/cards", `{"entities":["a\rb"]}`, "bad_request", "entities[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.body)
			if r.status != http.StatusBadRequest {
				t.Fatalf("%s %s: status %d, want 400: %.300s", tc.method, tc.path, r.status, r.raw)
			}
			errObj, _ := r.body["error"].(map[string]any)
			if errObj["code"] != tc.code {
				t.Errorf("code %v, want %s", errObj["code"], tc.code)
			}
			if msg, _ := errObj["message"].(string); !strings.Contains(msg, tc.message) {
				t.Errorf("message %q, want it to contain %q", msg, tc.message)
			}
			if len(r.raw) > 600 {
				t.Errorf("error body is %d bytes, want it bounded: %.300s", len(r.raw), r.raw)
			}
		})
	}

	// What is valid still reads: a surrogate pair, lower-case t and z, an
	// offset, and the same key by GET and POST.
	for _, tc := range []struct{ name, method, path, body string }{
		{"surrogate pair", "POST", "/v1/features/cards", `{"entities":["\ud83d\ude00"]}`},
		{"lower-case t and z", "GET", "/v1/features/cards/c1?at=" + strings.ToLower(at), ""},
		{"offset", "GET", "/v1/features/cards/c1?at=" + e.tb.Add(20*time.Minute).In(time.FixedZone("", -(5*3600+30*60))).Format(time.RFC3339), ""},
		{"escaped slash in entity", "GET", "/v1/features/cards/a%2Fb", ""},
	} {
		if r := e.do(tc.method, tc.path, tc.body); r.status != http.StatusOK {
			t.Errorf("%s: %s %s = %d, want 200: %s", tc.name, tc.method, tc.path, r.status, r.raw)
		}
	}
}

// fixed dates: parsing only; no clock is involved.
func TestParseTime(t *testing.T) {
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		in   string
		want time.Time // zero: an error
	}{
		{"2026-11-20T10:00:00Z", utc("2026-11-20T10:00:00Z")},
		{"2026-11-20t10:00:00z", utc("2026-11-20T10:00:00Z")},
		{"2026-11-20T10:00:00.5Z", utc("2026-11-20T10:00:00.5Z")},
		{"2026-11-20T10:00:00.123456789Z", utc("2026-11-20T10:00:00.123456789Z")},
		{"2026-11-20T10:00:00+23:59", utc("2026-11-19T10:01:00Z")},
		{"2026-11-20T10:00:00-05:30", utc("2026-11-20T15:30:00Z")},
		{"2026-11-20T10:00:00-00:00", utc("2026-11-20T10:00:00Z")},
		{"2024-02-29T00:00:00Z", utc("2024-02-29T00:00:00Z")},
		{"2026-12-31T23:59:60Z", utc("2027-01-01T00:00:00Z")}, // leap second, POSIX style
		{"2026-11-20T10:00:00.1234567891Z", time.Time{}},
		{"2026-11-20T10:00:00.Z", time.Time{}},
		{"2026-11-20T10:00:00+24:00", time.Time{}},
		{"2026-11-20T10:00:00+05:60", time.Time{}},
		{"2026-11-20T10:00:00+0530", time.Time{}},
		{"2026-11-20T10:00:00", time.Time{}},
		{"2026-11-20 10:00:00Z", time.Time{}},
		{"2026-11-20T24:00:00Z", time.Time{}},
		{"2026-11-20T10:60:00Z", time.Time{}},
		{"2026-11-20T10:00:61Z", time.Time{}},
		{"2026-13-20T10:00:00Z", time.Time{}},
		{"2026-00-20T10:00:00Z", time.Time{}},
		{"2025-02-29T00:00:00Z", time.Time{}},
		{"2026-11-20T10:00:00ZZ", time.Time{}},
		{"2026-11-20T10:00Z", time.Time{}},
		{"+2026-11-20T10:00:00Z", time.Time{}},
		{"", time.Time{}},
	}
	for _, tc := range tests {
		got, err := parseTime(tc.in)
		if tc.want.IsZero() {
			if err == nil {
				t.Errorf("parseTime(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !got.Equal(tc.want) || got.Location() != time.UTC {
			t.Errorf("parseTime(%q) = %v, %v, want %v", tc.in, got, err, tc.want)
		}
	}
}

// FuzzParseTime checks parseTime against time.Parse, which shares no code
// with it: whatever parseTime accepts (but a leap second) time.Parse reads
// as the same instant once upper-cased, and whatever time.Parse accepts
// within the RFC's grammar (offset hours up to 23, at most 9 fractional
// digits, which time.Parse checks loosely) parseTime accepts too.
//
// fixed dates: fuzz seeds, parsed only.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2026-11-20T10:00:00Z", "2026-11-20t10:00:00.123z", "2026-11-20T10:00:00+05:30", "2026-02-29T00:00:00Z", "2026-11-20T10:00:00+24:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseTime(s)
		if err == nil {
			if len(s) >= 19 && s[17:19] == "60" {
				return
			}
			want, perr := time.Parse(time.RFC3339Nano, strings.ToUpper(s))
			if perr != nil || !want.Equal(got) {
				t.Fatalf("parseTime(%q) = %v; time.Parse = %v, %v", s, got, want, perr)
			}
			return
		}
		want, perr := time.Parse(time.RFC3339Nano, s)
		if _, off := want.Zone(); perr == nil && off > -24*3600 && off < 24*3600 && fracDigits(s) <= 9 {
			t.Fatalf("parseTime(%q): %v; time.Parse reads %v", s, err, want)
		}
	})
}

func TestQuoteInput(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"abc", `"abc"`},
		{strings.Repeat("a", 64), `"` + strings.Repeat("a", 64) + `"`},
		{strings.Repeat("a", 65), `"` + strings.Repeat("a", 64) + `"… (65 bytes)`},
		{strings.Repeat("a", 63) + "é", `"` + strings.Repeat("a", 63) + `"… (65 bytes)`}, // not cut inside a rune
	} {
		if got := quoteInput(tc.in); got != tc.want {
			t.Errorf("quoteInput(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// fracDigits counts the digits after the seconds of an RFC 3339 time.
func fracDigits(s string) int {
	if len(s) < 20 || s[19] != '.' {
		return 0
	}
	n := 0
	for _, c := range s[20:] {
		if c < '0' || c > '9' {
			break
		}
		n++
	}
	return n
}
