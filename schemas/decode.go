package schemas

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// MaxKeyLen is the longest entity key, in bytes, that an event may carry.
// Bigtable row keys hold at most 4 KiB; this leaves room for the feature-set
// prefix and keeps rows cheap to look up.
const MaxKeyLen = 1024

// DecodeJSON decodes one event from a JSON object, such as a Pub/Sub message
// or a line of a JSON-lines file.
//
// Members named after declared fields must have the JSON type of the field:
// a string for string; an integer literal (no fraction or exponent) within
// int64 for int64; any number for float64; true or false for bool; an RFC 3339
// string for timestamp (2006-01-02T15:04:05Z, or with 1 to 9 fractional
// digits, and Z or an offset ±hh:mm; kept to the microsecond, truncated). A
// missing member or null is a null value, except for the entity key and the
// event time, which are required; the key must not be empty or longer than
// MaxKeyLen. Other members are ignored, whatever their value. If a member
// appears twice, the last one counts, as in encoding/json.
//
// The document must be valid JSON (RFC 8259) with an object at the top;
// whitespace around it, such as the newline of a JSON line, is fine. Invalid
// UTF-8 in strings is replaced by U+FFFD, as encoding/json does.
//
// Every error matches ErrBadEvent and is an *EventError whose Reason names
// the field: `field "amount": want float64, got string "abc"`,
// `missing entity key "card_id"`, `invalid JSON: ...`.
func (fs *FeatureSet) DecodeJSON(data []byte) (Event, error) {
	s := jsonScanner{data: data}
	s.skipSpace()
	if s.pos >= len(data) {
		return Event{}, &EventError{Reason: "invalid JSON: empty input"}
	}
	if data[s.pos] != '{' {
		return Event{}, s.notObject()
	}
	s.pos++
	values := make([]Value, len(fs.Fields))
	// The string values are copied out of data into one allocation at the
	// end, rather than one each; pend holds them until then.
	var pendBuf [8]pendingString
	pend, pendLen := pendBuf[:0], 0
	var fieldErr error // the first bad value
	s.skipSpace()
	if s.pos < len(data) && data[s.pos] == '}' {
		s.pos++
	} else {
		for {
			s.skipSpace()
			if s.pos >= len(data) || data[s.pos] != '"' {
				return Event{}, s.errSyntax("want a string for an object member name")
			}
			name, err := s.str()
			if err != nil {
				return Event{}, err
			}
			s.skipSpace()
			if err := s.expect(':', "want : after object member name"); err != nil {
				return Event{}, err
			}
			s.skipSpace()
			if i, ok := fs.fieldIndex[string(name)]; ok {
				for j := range pend {
					if pend[j].index == i {
						pend[j].index = -1 // a later duplicate wins
					}
				}
				if fs.Fields[i].Type == String && len(pend) < cap(pend) && s.pos < len(data) && data[s.pos] == '"' {
					b, err := s.str()
					if err != nil {
						return Event{}, err
					}
					pend = append(pend, pendingString{index: i, b: b})
					pendLen += len(b)
					values[i] = Value{Type: String}
				} else if values[i], err = s.value(fs.Fields[i]); err != nil {
					// A bad value was read whole: report it only once the
					// rest is known to be valid JSON.
					if ee, ok := err.(*EventError); !ok || ee.Field == "" {
						return Event{}, err
					}
					if fieldErr == nil {
						fieldErr = err
					}
				}
			} else if err := s.skip(1); err != nil {
				return Event{}, err
			}
			s.skipSpace()
			if s.pos < len(data) && data[s.pos] == ',' {
				s.pos++
				continue
			}
			if err := s.expect('}', "want , or } after object member"); err != nil {
				return Event{}, err
			}
			break
		}
	}
	s.skipSpace()
	if s.pos < len(data) {
		return Event{}, s.errSyntax("unexpected data after the object")
	}
	if fieldErr != nil {
		return Event{}, fieldErr
	}
	if len(pend) > 0 {
		var sb strings.Builder
		sb.Grow(pendLen)
		for _, p := range pend {
			if p.index >= 0 {
				sb.Write(p.b)
			}
		}
		all, off := sb.String(), 0
		for _, p := range pend {
			if p.index >= 0 {
				values[p.index].Str = all[off : off+len(p.b)]
				off += len(p.b)
			}
		}
	}
	return fs.event(values)
}

// pendingString is a string value that DecodeJSON has read but not copied.
type pendingString struct {
	index int // in Fields, -1 if overwritten
	b     []byte
}

// notObject is the error for a document that does not start with '{' at
// s.pos: invalid JSON, or valid JSON of another kind.
func (s *jsonScanner) notObject() error {
	var what string
	switch c := s.data[s.pos]; {
	case c == '[':
		what = "array"
	case c == '"':
		what = "string"
	case c == 't' || c == 'f':
		what = "bool"
	case c == 'n':
		what = "null"
	case c == '-' || c >= '0' && c <= '9':
		what = "number"
	default:
		return s.errSyntax("want a JSON object")
	}
	if err := s.skip(0); err != nil {
		return err
	}
	if s.skipSpace(); s.pos < len(s.data) {
		return s.errSyntax("unexpected data after the value")
	}
	return &EventError{Reason: "want a JSON object, got " + what}
}

// value reads the JSON value at s.pos as a value of field f. An error for
// a value that is valid JSON but bad for f has Field set and leaves s after
// the value; any other error is invalid JSON.
func (s *jsonScanner) value(f Field) (Value, error) {
	if s.pos >= len(s.data) {
		return Value{}, s.errSyntax("")
	}
	c := s.data[s.pos]
	if c == 'n' {
		return Value{}, s.literal("null")
	}
	switch f.Type {
	case String:
		if c == '"' {
			b, err := s.str()
			return StringValue(string(b)), err
		}
	case Int64:
		if c == '-' || c >= '0' && c <= '9' {
			lit, isInt, err := s.number()
			if err != nil {
				return Value{}, err
			}
			if !isInt {
				return Value{}, wantGot(f, "number "+string(lit))
			}
			n, ok := parseInt64(lit)
			if !ok {
				return Value{}, fieldError(f, "int64 out of range: "+string(lit))
			}
			return Int64Value(n), nil
		}
	case Float64:
		if c == '-' || c >= '0' && c <= '9' {
			lit, _, err := s.number()
			if err != nil {
				return Value{}, err
			}
			x, err := strconv.ParseFloat(string(lit), 64)
			if err != nil {
				return Value{}, fieldError(f, "float64 out of range: "+truncate(string(lit)))
			}
			return Float64Value(x), nil
		}
	case Bool:
		switch c {
		case 't':
			return BoolValue(true), s.literal("true")
		case 'f':
			return BoolValue(false), s.literal("false")
		}
	case Timestamp:
		if c == '"' {
			b, err := s.str()
			if err != nil {
				return Value{}, err
			}
			t, ok := parseTimestamp(b, false)
			if !ok {
				return Value{}, fieldError(f, "want an RFC 3339 timestamp (2006-01-02T15:04:05Z), got string "+quote(b))
			}
			return Value{Type: Timestamp, Int: t}, nil
		}
	}
	return Value{}, s.mismatch(f)
}

// mismatch is the error for a JSON value of the wrong type at s.pos; it
// reads the value whole, so that the caller can go on.
func (s *jsonScanner) mismatch(f Field) error {
	switch c := s.data[s.pos]; {
	case c == '"':
		b, err := s.str()
		if err != nil {
			return err
		}
		return wantGot(f, "string "+quote(b))
	case c == '-' || c >= '0' && c <= '9':
		lit, _, err := s.number()
		if err != nil {
			return err
		}
		return wantGot(f, "number "+truncate(string(lit)))
	case c == 't':
		if err := s.literal("true"); err != nil {
			return err
		}
		return wantGot(f, "true")
	case c == 'f':
		if err := s.literal("false"); err != nil {
			return err
		}
		return wantGot(f, "false")
	case c == '{' || c == '[':
		if err := s.skip(1); err != nil {
			return err
		}
		if c == '{' {
			return wantGot(f, "object")
		}
		return wantGot(f, "array")
	}
	return s.errSyntax("want a value")
}

// parseInt64 parses a JSON integer literal.
func parseInt64(b []byte) (int64, bool) {
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) > 19 {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		u = u*10 + uint64(c-'0')
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

// event checks the entity key and event time of values and returns the
// event.
func (fs *FeatureSet) event(values []Value) (Event, error) {
	var key string
	if len(fs.keyIdx) == 1 {
		k, err := fs.keyPart(values, 0)
		if err != nil {
			return Event{}, err
		}
		key = k
	} else {
		var buf [MaxKeyParts]string
		parts := buf[:len(fs.keyIdx)]
		for i := range parts {
			k, err := fs.keyPart(values, i)
			if err != nil {
				return Event{}, err
			}
			parts[i] = k
		}
		key = EntityKey(parts...)
		if len(key) > MaxKeyLen {
			return Event{}, &EventError{Field: fs.Entity.Keys[0], Reason: fmt.Sprintf("entity key %s is longer than %d bytes", fs.Entity.KeyName(), MaxKeyLen)}
		}
	}
	t := values[fs.timeIdx]
	if t.Type != Timestamp {
		name := fs.Fields[fs.timeIdx].Name
		return Event{}, &EventError{Field: name, Reason: fmt.Sprintf("missing event time %q", name)}
	}
	return Event{Key: key, Time: t.Int, Values: values}, nil
}

// keyPart checks entity key part i of values and returns its text: a
// non-empty string of at most MaxKeyLen bytes, or an int64 in decimal. The
// error names the part ("missing entity key part "merchant"" for a
// composite key).
func (fs *FeatureSet) keyPart(values []Value, i int) (string, error) {
	kf := fs.Fields[fs.keyIdx[i]]
	what := "entity key"
	if len(fs.keyIdx) > 1 {
		what = "entity key part"
	}
	switch k := values[fs.keyIdx[i]]; k.Type {
	case String:
		if k.Str == "" {
			return "", &EventError{Field: kf.Name, Reason: fmt.Sprintf("empty %s %q", what, kf.Name)}
		}
		if len(k.Str) > MaxKeyLen {
			return "", &EventError{Field: kf.Name, Reason: fmt.Sprintf("%s %q is longer than %d bytes", what, kf.Name, MaxKeyLen)}
		}
		return k.Str, nil
	case Int64:
		return strconv.FormatInt(k.Int, 10), nil
	}
	return "", &EventError{Field: kf.Name, Reason: fmt.Sprintf("missing %s %q", what, kf.Name)}
}

func fieldError(f Field, reason string) error {
	return &EventError{Field: f.Name, Reason: "field " + strconv.Quote(f.Name) + ": " + reason}
}

func wantGot(f Field, got string) error {
	return fieldError(f, "want "+f.Type.String()+", got "+got)
}

// truncate shortens s for an error message.
func truncate(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// quote quotes b, shortened, for an error message.
func quote(b []byte) string {
	const max = 64
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "..."
	}
	return strconv.Quote(string(b))
}

// DecodeRecord decodes one event from a record whose values get returns by
// field name, such as a BigQuery row (bigquery.Value), a CSV line or a
// decoded JSON document; get reports false, or returns nil, for a missing or
// null value. For each declared field it accepts:
//
//   - string: a string.
//   - int64: any Go integer within int64, a json.Number that is an integer
//     literal, or a decimal string.
//   - float64: a float64, a float32, any Go integer, a *big.Rat (BigQuery
//     NUMERIC), a json.Number, or a decimal string; the value must be finite.
//   - bool: a bool, or a string that strconv.ParseBool accepts (true, false,
//     1, 0, TRUE, ...).
//   - timestamp: a time.Time; a value with a method In(*time.Location)
//     time.Time, such as civil.DateTime (BigQuery DATETIME), read in UTC; or
//     a string in RFC 3339 or in the civil forms BigQuery and SQL databases
//     print: "2006-01-02 15:04:05.999999", with no zone or " UTC" meaning
//     UTC, or an offset ±hh or ±hh:mm.
//
// An empty string is a null value for every type but string. The entity key
// and the event time are required as in DecodeJSON, and errors are the same
// kind.
func (fs *FeatureSet) DecodeRecord(get func(name string) (any, bool)) (Event, error) {
	values := make([]Value, len(fs.Fields))
	for i, f := range fs.Fields {
		x, ok := get(f.Name)
		if !ok || x == nil {
			continue
		}
		v, err := recordValue(f, x)
		if err != nil {
			return Event{}, err
		}
		values[i] = v
	}
	return fs.event(values)
}

// inLocation is civil.DateTime's way to become an instant.
type inLocation interface {
	In(*time.Location) time.Time
}

// recordValue converts one Go value of a record to a Value of field f.
func recordValue(f Field, x any) (Value, error) {
	if s, ok := x.(string); ok && s == "" && f.Type != String {
		return Value{}, nil
	}
	switch f.Type {
	case String:
		if s, ok := x.(string); ok {
			return StringValue(s), nil
		}
	case Int64:
		var n int64
		var ok bool
		switch x := x.(type) {
		case int64:
			n, ok = x, true
		case int:
			n, ok = int64(x), true
		case int32:
			n, ok = int64(x), true
		case int16:
			n, ok = int64(x), true
		case int8:
			n, ok = int64(x), true
		case uint64:
			n, ok = int64(x), x <= math.MaxInt64
		case uint:
			n, ok = int64(x), uint64(x) <= math.MaxInt64
		case uint32:
			n, ok = int64(x), true
		case uint16:
			n, ok = int64(x), true
		case uint8:
			n, ok = int64(x), true
		case json.Number:
			return intString(f, string(x))
		case string:
			return intString(f, x)
		default:
			return Value{}, wantGotGo(f, x)
		}
		if !ok {
			return Value{}, fieldError(f, fmt.Sprintf("int64 out of range: %v", x))
		}
		return Int64Value(n), nil
	case Float64:
		var v float64
		switch x := x.(type) {
		case float64:
			v = x
		case float32:
			v = float64(x)
		case int64:
			v = float64(x)
		case int:
			v = float64(x)
		case int32:
			v = float64(x)
		case uint64:
			v = float64(x)
		case uint32:
			v = float64(x)
		case *big.Rat:
			if x == nil {
				return Value{}, nil
			}
			v, _ = x.Float64()
		case json.Number:
			return floatString(f, string(x))
		case string:
			return floatString(f, x)
		default:
			return Value{}, wantGotGo(f, x)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return Value{}, fieldError(f, fmt.Sprintf("want a finite float64, got %v", v))
		}
		return Float64Value(v), nil
	case Bool:
		switch x := x.(type) {
		case bool:
			return BoolValue(x), nil
		case string:
			if b, err := strconv.ParseBool(x); err == nil {
				return BoolValue(b), nil
			}
		}
	case Timestamp:
		var t time.Time
		switch x := x.(type) {
		case time.Time:
			t = x
		case *time.Time:
			if x == nil {
				return Value{}, nil
			}
			t = *x
		case string:
			us, ok := parseTimestamp([]byte(x), true)
			if !ok {
				return Value{}, fieldError(f, "want a timestamp (RFC 3339 or 2006-01-02 15:04:05[.ffffff][ UTC]), got string "+quote([]byte(x)))
			}
			return Value{Type: Timestamp, Int: us}, nil
		case inLocation:
			t = x.In(time.UTC)
		default:
			return Value{}, wantGotGo(f, x)
		}
		us, ok := microsOf(t)
		if !ok {
			return Value{}, fieldError(f, "timestamp out of range (years 0000 to 9999): "+t.String())
		}
		return Value{Type: Timestamp, Int: us}, nil
	}
	return Value{}, wantGotGo(f, x)
}

func intString(f Field, s string) (Value, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return Value{}, fieldError(f, "int64 out of range: "+truncate(s))
		}
		return Value{}, wantGot(f, "string "+quote([]byte(s)))
	}
	return Int64Value(n), nil
}

func floatString(f Field, s string) (Value, error) {
	x, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
		return Value{}, fieldError(f, "want a finite float64, got string "+quote([]byte(s)))
	}
	return Float64Value(x), nil
}

// wantGotGo is the error for a Go value x of the wrong type for f.
func wantGotGo(f Field, x any) error {
	if s, ok := x.(string); ok {
		return wantGot(f, "string "+quote([]byte(s)))
	}
	return wantGot(f, fmt.Sprintf("%T %s", x, truncate(fmt.Sprint(x))))
}
