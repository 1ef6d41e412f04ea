package schemas

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// EncodeJSON returns e as a JSON object that DecodeJSON decodes back to e:
// one member per declared field in file order, null for null values,
// timestamps in RFC 3339 UTC to the microsecond. The entity key and event
// time are written from e.Values (e.Key and e.Time are not consulted).
// Floats that JSON cannot hold (NaN, ±Inf) are written as null.
func (fs *FeatureSet) EncodeJSON(e Event) []byte {
	return fs.AppendJSON(make([]byte, 0, 32*len(fs.Fields)), e)
}

// AppendJSON appends EncodeJSON(e) to b and returns the extended buffer.
func (fs *FeatureSet) AppendJSON(b []byte, e Event) []byte {
	b = append(b, '{')
	for i, f := range fs.Fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, f.Name)
		b = append(b, ':')
		var v Value
		if i < len(e.Values) {
			v = e.Values[i]
		}
		b = appendJSONValue(b, v)
	}
	return append(b, '}')
}

func appendJSONValue(b []byte, v Value) []byte {
	switch v.Type {
	case String:
		return AppendJSONString(b, v.Str)
	case Int64:
		return strconv.AppendInt(b, v.Int, 10)
	case Float64:
		return AppendJSONFloat(b, v.Float)
	case Bool:
		return strconv.AppendBool(b, v.Int != 0)
	case Timestamp:
		b = append(b, '"')
		b = time.UnixMicro(v.Int).UTC().AppendFormat(b, timestampLayout)
		return append(b, '"')
	}
	return append(b, "null"...)
}

// AppendJSONFloat appends f as encoding/json formats it: the shortest
// decimal that reads back as f, in exponent form only for very large or
// small magnitudes. JSON has no NaN or infinity: those are written as null
// (a caller that wants another spelling checks first).
func AppendJSONFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// strPlain (jsonscan.go) and strHTMLSafe mark the bytes that the JSON
// string writers copy as they are: printable ASCII but '"' and '\\', and
// for strHTMLSafe also but '<', '>' and '&'.
var strHTMLSafe = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = strPlain[c] && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// AppendJSONString appends s as a JSON string, escaping quotes,
// backslashes and control characters (as encoding/json's Encoder with
// SetEscapeHTML(false)) and replacing invalid UTF-8 by U+FFFD.
func AppendJSONString(b []byte, s string) []byte { return appendJSONString(b, s, false) }

// AppendHTMLSafeJSONString is AppendJSONString that also escapes <, >, &
// and U+2028/U+2029, as encoding/json does by default, so that the output
// is safe to embed in HTML or JavaScript.
func AppendHTMLSafeJSONString(b []byte, s string) []byte { return appendJSONString(b, s, true) }

func appendJSONString(b []byte, s string, html bool) []byte {
	plain := &strPlain
	if html {
		plain = &strHTMLSafe
	}
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if plain[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case html && (r == '\u2028' || r == '\u2029'):
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
