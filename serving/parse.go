package serving

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// Strict request parsing, shared by every endpoint: a request that is not
// exactly what the API describes is a 400 that says what is wrong, never a
// guess. Each parser here quotes the client's input only through quoteInput,
// so no error message is much longer than the limit below.

// maxQuotedInput is how many bytes of the client's own input an error
// message quotes.
const maxQuotedInput = 64

// quoteInput quotes s for an error message (Go syntax, so invalid UTF-8 and
// control characters show as escapes), cut to its first maxQuotedInput
// bytes and marked with "…" when longer.
func quoteInput(s string) string {
	if len(s) <= maxQuotedInput {
		return fmt.Sprintf("%q", s)
	}
	cut := maxQuotedInput
	for cut > maxQuotedInput-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:cut], len(s))
}

// parseQuery parses the request's query string strictly: a malformed one
// (bad percent-encoding, a ';' separator) is an error rather than silently
// dropped pairs as with r.URL.Query, and so is a parameter not in allowed.
func parseQuery(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		var ee url.EscapeError
		if errors.As(err, &ee) {
			return nil, badInput(ErrBadRequest, "malformed query string: bad percent-encoding %s", quoteInput(string(ee)))
		}
		return nil, badInput(ErrBadRequest, "malformed query string: %s", strings.TrimPrefix(err.Error(), "invalid "))
	}
	for k := range q {
		if !contains(allowed, k) {
			return nil, badInput(ErrBadRequest, "unknown query parameter %s (want %s)", quoteInput(k), strings.Join(allowed, " and "))
		}
	}
	return q, nil
}

// queryOnce returns the one value of parameter k ("" when absent), or an
// error of kind when it is given more than once.
func queryOnce(q url.Values, k string, kind error) (string, error) {
	switch vs := q[k]; len(vs) {
	case 0:
		return "", nil
	case 1:
		return vs[0], nil
	default:
		return "", badInput(kind, "give %s once, not %d times", k, len(vs))
	}
}

// queryList returns the comma-separated values of parameter k, over all of
// its occurrences, without empty items.
func queryList(q url.Values, k string) []string {
	var out []string
	for _, v := range q[k] {
		for n := range strings.SplitSeq(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				out = append(out, n)
			}
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// readBody reads a request body of at most maxBytes (413 above it).
func readBody(w http.ResponseWriter, r *http.Request, maxBytes int64) ([]byte, error) {
	buf := bytes.NewBuffer(make([]byte, 0, min(max(r.ContentLength, 0), maxBytes)+bytes.MinRead))
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxBytes))
	data := buf.Bytes()
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		return nil, badInput(ErrBodyTooLarge, "request body is larger than %d bytes", maxErr.Limit)
	case err != nil:
		return nil, badInput(ErrBadRequest, "reading the request body: %v", err)
	}
	return data, nil
}

// jsonField is one field of a JSON object that decodeObject accepts, with
// the function that decodes its value.
type jsonField struct {
	name   string
	decode func(raw []byte) error
}

// stringField decodes a JSON string into *dst.
func stringField(name string, dst *string) jsonField {
	return jsonField{name, func(raw []byte) error { return unmarshalField(name, raw, dst) }}
}

// stringsField decodes a JSON list of strings into *dst.
func stringsField(name string, dst *[]string) jsonField {
	return jsonField{name, func(raw []byte) error { return unmarshalField(name, raw, dst) }}
}

// rawField keeps the value's JSON text in *dst, for a caller that decodes
// it itself (with decodeObject or walkObject for a nested object).
func rawField(name string, dst *json.RawMessage) jsonField {
	return jsonField{name, func(raw []byte) error { *dst = append((*dst)[:0], raw...); return nil }}
}

// unmarshalField decodes raw into dst (a *string or *[]string), rejecting
// null, with an error that names the field and the JSON types.
func unmarshalField(name string, raw []byte, dst any) error {
	if string(raw) == "null" {
		return badInput(ErrBadJSON, "field %q: want %s, got null", name, jsonTypeName(dst))
	}
	err := json.Unmarshal(raw, dst)
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		if _, list := dst.(*[]string); list && raw[0] == '[' {
			return badInput(ErrBadJSON, "field %q: want a list of strings, got a %s in it", name, typeErr.Value)
		}
		return badInput(ErrBadJSON, "field %q: want %s, got %s", name, jsonTypeName(dst), typeErr.Value)
	}
	if err != nil {
		return badInput(ErrBadJSON, "field %q: malformed value", name)
	}
	return nil
}

func jsonTypeName(dst any) string {
	switch dst.(type) {
	case *string:
		return "a string"
	case *[]string:
		return "a list of strings"
	}
	return fmt.Sprintf("%T", dst)
}

// decodeObject decodes data, which must be exactly one JSON object, field by
// field: names match case-sensitively, each at most once, and a name not
// among fields is an error. Fields absent from data are left as they are.
// want describes the expected object in errors (`{"entities": [...]}`).
func decodeObject(data []byte, want string, fields ...jsonField) error {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	return walkObject(data, want, func(key string, raw []byte) error {
		for _, f := range fields {
			if f.name == key {
				return f.decode(raw)
			}
		}
		return badInput(ErrBadJSON, "unknown field %s (want %s; names are case-sensitive)", quoteInput(key), strings.Join(names, ", "))
	})
}

// walkObject calls each for every member of data, which must be exactly
// one JSON object in valid UTF-8 with no duplicate member names, in order.
// raw is the member's value as JSON text. It is the strict counterpart of
// json.Unmarshal into a struct or map, which matches names
// case-insensitively, keeps the last of duplicates and replaces invalid
// UTF-8 with U+FFFD, so that two spellings of one request would read
// different data.
func walkObject(data []byte, want string, each func(key string, raw []byte) error) error {
	if err := checkJSONText(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return jsonSyntax(err, want)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return badInput(ErrBadJSON, "want a JSON object %s, got %s", want, jsonKind(tok))
	}
	seen := make(map[string]bool, 4)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return jsonSyntax(err, want)
		}
		key := tok.(string) // json.Decoder returns object keys as strings
		if seen[key] {
			return badInput(ErrBadJSON, "field %s is given twice", quoteInput(key))
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return jsonSyntax(err, want)
		}
		if err := each(key, raw); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return jsonSyntax(err, want)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badInput(ErrBadJSON, "malformed JSON: data after the request object")
	}
	return nil
}

// jsonSyntax describes a decoding error of malformed JSON.
func jsonSyntax(err error, want string) error {
	var syntaxErr *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF):
		return badInput(ErrBadJSON, "empty body: want %s", want)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badInput(ErrBadJSON, "malformed JSON: the body ends early")
	case errors.As(err, &syntaxErr):
		return badInput(ErrBadJSON, "malformed JSON at byte %d: %s", syntaxErr.Offset, strings.TrimPrefix(syntaxErr.Error(), "json: "))
	}
	return badInput(ErrBadJSON, "malformed JSON body")
}

// jsonKind names the JSON type of a token.
func jsonKind(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "array"
		}
		return "object"
	case string:
		return "string"
	case float64, json.Number:
		return "number"
	case bool:
		return "bool"
	case nil:
		return "null"
	}
	return "a value"
}

// checkJSONText rejects a body that is not valid UTF-8 or whose strings
// hold an escaped lone surrogate (\ud800): encoding/json would turn both
// into U+FFFD, so that different entity keys read one row.
func checkJSONText(data []byte) error {
	if !utf8.Valid(data) {
		n := 0
		for n < len(data) {
			r, size := utf8.DecodeRune(data[n:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			n += size
		}
		return badInput(ErrBadJSON, "request body is not valid UTF-8 (byte %d)", n)
	}
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' || i+1 >= len(data) {
			continue
		}
		i++ // the escaped character
		if data[i] != 'u' {
			continue
		}
		r, ok := hex4(data[i+1:])
		if !ok {
			continue // a syntax error the decoder reports
		}
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return badInput(ErrBadJSON, "malformed JSON at byte %d: \\u%04x is half of a UTF-16 surrogate pair", i, r)
		case r >= 0xD800 && r <= 0xDBFF:
			rest := data[i+5:]
			if len(rest) < 6 || rest[0] != '\\' || rest[1] != 'u' {
				return badInput(ErrBadJSON, "malformed JSON at byte %d: \\u%04x is half of a UTF-16 surrogate pair", i, r)
			}
			if lo, ok := hex4(rest[2:]); !ok || lo < 0xDC00 || lo > 0xDFFF {
				return badInput(ErrBadJSON, "malformed JSON at byte %d: \\u%04x is half of a UTF-16 surrogate pair", i, r)
			}
			i += 10 // the low half too
		default:
			i += 4
		}
	}
	return nil
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// checkEntity validates an entity key, the same way for every endpoint and
// whatever the transport (a path segment or a JSON string): non-empty, at
// most MaxEntityKeyBytes, valid UTF-8, and without NUL, CR or LF. what names
// it in the error ("entity", "entities[3]").
func checkEntity(e, what string) error {
	switch {
	case e == "":
		return badInput(ErrBadRequest, "%s: empty entity key", what)
	case len(e) > MaxEntityKeyBytes:
		return badInput(ErrBadRequest, "%s: entity key longer than %d bytes", what, MaxEntityKeyBytes)
	case !utf8.ValidString(e):
		return badInput(ErrBadRequest, "%s: entity key %s is not valid UTF-8", what, quoteInput(e))
	case strings.ContainsAny(e, "\x00\r\n"):
		return badInput(ErrBadRequest, "%s: entity key %s holds NUL, CR or LF", what, quoteInput(e))
	}
	return nil
}

// parseTime parses an RFC 3339 date-time (section 5.6), exactly its
// grammar: YYYY-MM-DD, 'T' or 't', HH:MM:SS, an optional fraction of 1 to 9 digits (nanoseconds;
// the RFC allows more, which would be silently cut), and 'Z', 'z' or an
// offset ±HH:MM with HH ≤ 23 and MM ≤ 59. Dates must exist (no February
// 30); a leap second (SS = 60) is accepted and, as in POSIX time, is the
// instant after 23:59:59.999999999, the start of the next minute.
func parseTime(s string) (time.Time, error) {
	bad := func(why string) (time.Time, error) {
		return time.Time{}, fmt.Errorf("%s is not an RFC 3339 time such as 2026-11-20T10:00:00Z: %s", quoteInput(s), why)
	}
	num := func(i, n int) (int, bool) {
		if i+n > len(s) {
			return 0, false
		}
		v := 0
		for _, c := range []byte(s[i : i+n]) {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	sep := func(i int, cs string) bool { return i < len(s) && strings.IndexByte(cs, s[i]) >= 0 }
	year, ok1 := num(0, 4)
	month, ok2 := num(5, 2)
	day, ok3 := num(8, 2)
	if !ok1 || !ok2 || !ok3 || !sep(4, "-") || !sep(7, "-") {
		return bad("want the date as YYYY-MM-DD")
	}
	if !sep(10, "Tt") {
		return bad("want T between date and time")
	}
	hour, ok1 := num(11, 2)
	minute, ok2 := num(14, 2)
	sec, ok3 := num(17, 2)
	if !ok1 || !ok2 || !ok3 || !sep(13, ":") || !sep(16, ":") {
		return bad("want the time as HH:MM:SS")
	}
	switch {
	case month < 1 || month > 12:
		return bad("month out of range")
	case day < 1 || day > daysIn(year, month):
		return bad("day out of range")
	case hour > 23:
		return bad("hour out of range")
	case minute > 59:
		return bad("minute out of range")
	case sec > 60:
		return bad("second out of range")
	}
	i := 19
	nsec := 0
	if sep(i, ".") {
		i++
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		switch n := i - start; {
		case n == 0:
			return bad("want digits after the decimal point")
		case n > 9:
			return bad("more than 9 fractional digits (nanoseconds are the finest)")
		default:
			f, _ := num(start, n)
			for ; n < 9; n++ {
				f *= 10
			}
			nsec = f
		}
	}
	var offset int
	switch {
	case sep(i, "Zz") && i+1 == len(s):
	case sep(i, "+-") && i+6 == len(s):
		oh, ok1 := num(i+1, 2)
		om, ok2 := num(i+4, 2)
		if !ok1 || !ok2 || !sep(i+3, ":") {
			return bad("want the offset as Z or ±HH:MM")
		}
		if oh > 23 || om > 59 {
			return bad("offset out of range")
		}
		offset = (oh*60 + om) * 60
		if s[i] == '-' {
			offset = -offset
		}
	default:
		return bad("want Z or an offset ±HH:MM at the end")
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	return t.Add(-time.Duration(offset) * time.Second), nil
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
