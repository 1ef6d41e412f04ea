package serving

import (
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/tandem-fp/tandem/schemas"
)

// The feature responses are encoded by hand, without reflection: they are
// the hot path, and their shape is fixed. Values are typed JSON as
// schemas.Value.Interface describes them: int64 and float64 as numbers,
// bool as true/false, string as a string, timestamp as an RFC 3339 string
// in UTC, null as null. Non-finite floats, which JSON cannot hold, are the
// strings "NaN", "Infinity" and "-Infinity" (as in protobuf's JSON mapping).
// List and map values (last_k, top_k, approx_percentile, histogram) have
// the shapes of schemas.AppendCompositeJSON, their scalars encoded as here.

// writeJSON writes a complete JSON body.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	h["X-Content-Type-Options"] = noSniff
	w.WriteHeader(status)
	_, _ = w.Write(body) // a failed write means the client went away
}

var (
	jsonContentType = []string{"application/json"}
	noSniff         = []string{"nosniff"}
)

// appendValue appends v as a JSON value.
func appendValue(b []byte, v schemas.Value) []byte {
	switch v.Type {
	case schemas.Int64:
		return strconv.AppendInt(b, v.Int, 10)
	case schemas.Float64:
		return appendFloat(b, v.Float)
	case schemas.Bool:
		if v.Int != 0 {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case schemas.String:
		return appendString(b, v.Str)
	case schemas.Timestamp:
		return appendTime(b, time.UnixMicro(v.Int))
	case schemas.List, schemas.Counts, schemas.Quantiles, schemas.Histogram:
		return schemas.AppendCompositeJSON(b, v, appendValue)
	}
	return append(b, "null"...)
}

// appendTime appends t as an RFC 3339 string in UTC, or null for the zero
// time.
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendFloat appends f the way encoding/json does, with non-finite values
// as strings.
func appendFloat(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	return schemas.AppendJSONFloat(b, f)
}

// appendString appends s as a JSON string, safe to embed in HTML or
// JavaScript.
func appendString(b []byte, s string) []byte { return schemas.AppendHTMLSafeJSONString(b, s) }

// jsonLen is about the bytes appendString takes for the strings, so that
// a response is allocated once: each byte, plus 5 for every one that is
// escaped as \u00XX (control characters, and < > & for HTML safety) or
// as \" and \\ (over-counted by 4).
func jsonLen(strs []string) int {
	n := 0
	for _, s := range strs {
		n += len(s)
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c == '<' || c == '>' || c == '&' || c == '"' || c == '\\' {
				n += 5
			}
		}
	}
	return n
}
