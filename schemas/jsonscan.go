package schemas

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// jsonScanner is a single-pass reader of the JSON that DecodeJSON accepts: a
// flat object whose declared members are read straight into Values and whose
// other members are validated and skipped. It accepts exactly the documents
// that encoding/json accepts (RFC 8259; invalid UTF-8 inside strings is
// replaced by U+FFFD; nesting is limited to 10000 levels) and reads strings
// and numbers as encoding/json does; the tests check it against
// encoding/json. It exists because decoding through encoding/json's
// map[string]any costs several times more, in time and allocations, and
// events are decoded millions of times a second.
type jsonScanner struct {
	data []byte
	pos  int
}

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

// strPlain marks the bytes that stand for themselves inside a JSON string and
// need no further look: printable ASCII but '"' and '\\'.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func (s *jsonScanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// errSyntax returns the error for invalid JSON at the current position.
func (s *jsonScanner) errSyntax(what string) error {
	if s.pos >= len(s.data) {
		return &EventError{Reason: "invalid JSON: unexpected end of input"}
	}
	return &EventError{Reason: "invalid JSON: " + what + " at offset " + strconv.Itoa(s.pos) +
		", found " + strconv.QuoteRune(rune(s.data[s.pos]))}
}

// expect consumes c or fails.
func (s *jsonScanner) expect(c byte, what string) error {
	if s.pos < len(s.data) && s.data[s.pos] == c {
		s.pos++
		return nil
	}
	return s.errSyntax(what)
}

// literal consumes the literal lit (true, false, null) or fails.
func (s *jsonScanner) literal(lit string) error {
	if len(s.data)-s.pos >= len(lit) && string(s.data[s.pos:s.pos+len(lit)]) == lit {
		s.pos += len(lit)
		return nil
	}
	return s.errSyntax("invalid literal")
}

// str reads the string at s.pos (a '"') and returns its content. The result
// aliases s.data when the string holds no escapes and is valid UTF-8, and is
// a new slice otherwise.
func (s *jsonScanner) str() ([]byte, error) {
	data := s.data
	start := s.pos + 1
	i := start
	for i < len(data) && strPlain[data[i]] {
		i++
	}
	if i < len(data) && data[i] == '"' {
		s.pos = i + 1
		return data[start:i], nil
	}
	var buf []byte // nil while the content is a plain copy of data[start:i]
	for i < len(data) {
		c := data[i]
		switch {
		case strPlain[c]:
			if buf != nil {
				buf = append(buf, c)
			}
			i++
		case c == '"':
			s.pos = i + 1
			if buf == nil {
				return data[start:i], nil
			}
			return buf, nil
		case c < 0x20:
			s.pos = i
			return nil, s.errSyntax("control character in string")
		case c == '\\':
			if buf == nil {
				buf = make([]byte, i-start, i-start+16)
				copy(buf, data[start:i])
			}
			if i+1 >= len(data) {
				s.pos = len(data)
				return nil, s.errSyntax("")
			}
			i++
			switch data[i] {
			case '"', '\\', '/':
				buf = append(buf, data[i])
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r := hex4(data[i+1:])
				if r < 0 {
					s.pos = i
					return nil, s.errSyntax("invalid \\u escape in string")
				}
				i += 4
				if utf16.IsSurrogate(r) {
					// A pair makes one rune; anything else makes U+FFFD and
					// leaves what follows to be read on its own.
					if i+6 < len(data) && data[i+1] == '\\' && data[i+2] == 'u' {
						if r2 := hex4(data[i+3:]); r2 >= 0 {
							if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
								r = dec
								i += 6
							} else {
								r = utf8.RuneError
							}
						} else {
							r = utf8.RuneError
						}
					} else {
						r = utf8.RuneError
					}
				}
				buf = utf8.AppendRune(buf, r)
			default:
				s.pos = i
				return nil, s.errSyntax("invalid escape in string")
			}
			i++
		default: // c >= 0x80
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				if buf == nil {
					buf = make([]byte, i-start, i-start+16)
					copy(buf, data[start:i])
				}
				buf = utf8.AppendRune(buf, utf8.RuneError)
			} else if buf != nil {
				buf = append(buf, data[i:i+size]...)
			}
			i += size
		}
	}
	s.pos = len(data)
	return nil, s.errSyntax("")
}

// hex4 decodes four hex digits, or returns -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// skipStr validates and skips the string at s.pos (a '"').
func (s *jsonScanner) skipStr() error {
	data := s.data
	i := s.pos + 1
	for i < len(data) {
		c := data[i]
		switch {
		case c == '"':
			s.pos = i + 1
			return nil
		case c == '\\':
			i++
			if i >= len(data) {
				break
			}
			switch data[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if hex4(data[i+1:]) < 0 {
					s.pos = i
					return s.errSyntax("invalid \\u escape in string")
				}
				i += 4
			default:
				s.pos = i
				return s.errSyntax("invalid escape in string")
			}
			i++
		case c < 0x20:
			s.pos = i
			return s.errSyntax("control character in string")
		default:
			i++
		}
	}
	s.pos = len(data)
	return s.errSyntax("")
}

// number validates and skips the number at s.pos and returns its literal
// and whether that is an integer (no fraction, no exponent).
func (s *jsonScanner) number() (lit []byte, isInt bool, err error) {
	data := s.data
	i := s.pos
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && data[i] >= '1' && data[i] <= '9':
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	default:
		s.pos = i
		return nil, false, s.errSyntax("invalid number")
	}
	isInt = true
	if i < len(data) && data[i] == '.' {
		isInt = false
		i++
		if i >= len(data) || data[i] < '0' || data[i] > '9' {
			s.pos = i
			return nil, false, s.errSyntax("invalid number")
		}
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		isInt = false
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || data[i] < '0' || data[i] > '9' {
			s.pos = i
			return nil, false, s.errSyntax("invalid number")
		}
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	}
	lit = data[s.pos:i]
	s.pos = i
	return lit, isInt, nil
}

// skip validates and skips the value at s.pos; depth is the nesting depth of
// the container that holds it.
func (s *jsonScanner) skip(depth int) error {
	var stack []byte // closing brackets of the open containers
	for {
		// A value.
		s.skipSpace()
		if s.pos >= len(s.data) {
			return s.errSyntax("")
		}
		switch c := s.data[s.pos]; c {
		case '{', '[':
			if depth+len(stack)+1 > maxDepth {
				return &EventError{Reason: "invalid JSON: nested too deeply"}
			}
			s.pos++
			s.skipSpace()
			closing := byte(']')
			if c == '{' {
				closing = '}'
			}
			if s.pos < len(s.data) && s.data[s.pos] == closing {
				s.pos++ // empty
				break
			}
			stack = append(stack, closing)
			if c == '{' {
				if err := s.skipMemberName(); err != nil {
					return err
				}
			}
			continue
		case '"':
			if err := s.skipStr(); err != nil {
				return err
			}
		case 't':
			if err := s.literal("true"); err != nil {
				return err
			}
		case 'f':
			if err := s.literal("false"); err != nil {
				return err
			}
		case 'n':
			if err := s.literal("null"); err != nil {
				return err
			}
		default:
			if _, _, err := s.number(); err != nil {
				return err
			}
		}
		// After a value: close containers until one continues.
		for {
			if len(stack) == 0 {
				return nil
			}
			s.skipSpace()
			if s.pos >= len(s.data) {
				return s.errSyntax("")
			}
			top := stack[len(stack)-1]
			c := s.data[s.pos]
			if c == top {
				s.pos++
				stack = stack[:len(stack)-1]
				continue
			}
			if c != ',' {
				if top == '}' {
					return s.errSyntax("want , or } after object member")
				}
				return s.errSyntax("want , or ] after array element")
			}
			s.pos++
			if top == '}' {
				s.skipSpace()
				if err := s.skipMemberName(); err != nil {
					return err
				}
			}
			break
		}
	}
}

// skipMemberName skips `"name" :` inside an object being skipped.
func (s *jsonScanner) skipMemberName() error {
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		return s.errSyntax("want a string for an object member name")
	}
	if err := s.skipStr(); err != nil {
		return err
	}
	s.skipSpace()
	return s.expect(':', "want : after object member name")
}
