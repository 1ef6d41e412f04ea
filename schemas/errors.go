package schemas

import (
	"errors"
	"strconv"
)

// ErrInvalid matches, with errors.Is, every error that Parse, Load and
// LoadAll return for a definition that is not valid (as opposed to a file
// that cannot be read).
var ErrInvalid = errors.New("schemas: invalid definition")

// ErrBadEvent matches, with errors.Is, every error that DecodeJSON and
// DecodeRecord return for a record that does not match the feature set.
var ErrBadEvent = errors.New("schemas: bad event")

// DefinitionError is one problem in a feature-set definition: where it is
// (File, Line), which value (Field, a path such as "features[2].op" or
// "entity.key"; empty for a YAML syntax error) and why (Reason).
// It matches ErrInvalid.
type DefinitionError struct {
	File   string
	Line   int
	Field  string
	Reason string
}

// Error formats e as "file:line: field: reason", the way compilers do, so
// editors can jump to it.
func (e *DefinitionError) Error() string {
	b := make([]byte, 0, len(e.File)+len(e.Field)+len(e.Reason)+16)
	if e.File != "" {
		b = append(b, e.File...)
		b = append(b, ':')
	} else {
		b = append(b, "line "...)
	}
	b = strconv.AppendInt(b, int64(e.Line), 10)
	b = append(b, ": "...)
	if e.Field != "" {
		b = append(b, e.Field...)
		b = append(b, ": "...)
	}
	b = append(b, e.Reason...)
	return string(b)
}

// Is reports whether target is ErrInvalid.
func (e *DefinitionError) Is(target error) bool { return target == ErrInvalid }

// EventError is why a record could not be decoded into an Event. Field is
// the declared field at fault ("" when the record as a whole is bad, such as
// invalid JSON); Reason names it too, so Reason alone is a complete message
// for a dead-letter output. It matches ErrBadEvent.
type EventError struct {
	Field  string
	Reason string
}

// Error returns "schemas: bad event: " followed by the reason.
func (e *EventError) Error() string { return "schemas: bad event: " + e.Reason }

// Is reports whether target is ErrBadEvent.
func (e *EventError) Is(target error) bool { return target == ErrBadEvent }
