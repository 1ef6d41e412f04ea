// Package aggregate is Tandem's aggregation algebra: the partial aggregates
// that the batch pipeline, the streaming pipeline and the server all share.
// It does not import Beam.
//
// A Partial is the partial aggregate of one feature over some set of events
// (usually one tile). Add folds in one event's value, Merge folds in another
// partial of the same op, Result gives the feature value. Merge is associative
// and commutative, and adding all events to one partial gives the same result
// as merging the partials of any split of them: that is what makes batch,
// stream and serving agree.
//
// Encodings are stable and versioned: byte 0 is the format version, byte 1
// the op, the rest the op's payload. Decode rejects anything else with an
// error, never a panic.
package aggregate

import (
	"errors"

	"github.com/tandem-fp/tandem/schemas"
)

// Errors returned by Decode and Merge.
var (
	ErrCorrupt  = errors.New("aggregate: corrupt encoding")
	ErrVersion  = errors.New("aggregate: unknown encoding version")
	ErrMismatch = errors.New("aggregate: op or type mismatch")
)

// Partial is a partial aggregate of one feature.
type Partial interface {
	// Op is the aggregation operation.
	Op() schemas.Op
	// Add folds in one event: v is the value of the feature's field (ignored
	// by count; a null v is skipped by every other op) and t its event time
	// in Unix microseconds (used by last).
	Add(v schemas.Value, t int64)
	// Merge folds other into the receiver. other must have the same op and
	// field type, else Merge returns ErrMismatch and changes nothing.
	Merge(other Partial) error
	// Result returns the feature value; ok is false when the op has no value
	// over the events added so far (min, max, mean, last, stddev of nothing).
	// count, sum and approx_count_distinct return their zero with ok true.
	Result() (v schemas.Value, ok bool)
	// AppendBinary appends the versioned encoding to b.
	AppendBinary(b []byte) ([]byte, error)
	// Clone returns an independent copy.
	Clone() Partial
}
