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
// # Algebra
//
// For every op the partials form a commutative monoid: New returns the
// identity (the partial of no events), Merge is the monoid operation, and
// p.Add(v, t) equals merging the partial of the single event (v, t) into p.
// Results are exact and independent of the order of adds and merges, with one
// exception: sum over float64 and mean round, so two orders agree to about
// 1e-9 relative rather than bit for bit in the worst case. They use
// Neumaier's compensated summation, whose error is at most about
// 2ε|S| + nε²Σ|xᵢ| (ε = 2^-53) whatever the merge tree: a few ulps of the
// exact sum S unless the n terms cancel almost exactly, and in practice the
// correctly rounded sum, the same in any order. stddev keeps exact sums of
// the values and of their squares (arbitrary precision, exactSum), so it is
// exact in any order of adds and merges and its result is correctly rounded
// from the exact variance: streaming (arrival order), batch and training
// (time order) agree bit for bit.
//
// Partials are not safe for concurrent use, Result included: Result and
// AppendBinary of approx_count_distinct compact the sketch in place.
//
// # Ops
//
// Every op but count skips null values, and values whose type is not the
// field type (the pipelines validate events before they reach Add, so such a
// value is a caller bug, skipped rather than allowed to corrupt the state).
//
//   - count: the number of events, nulls included. Int64; 0 over no events.
//   - sum over int64: the exact int64 sum, wrapping modulo 2^64 on overflow
//     (wrapping keeps merge associative). Int64; 0 over no values.
//   - sum over float64: the compensated sum, within a few ulps of the exact
//     sum of the values (±Inf or NaN if a value is, or if the sum
//     overflows). Float64; 0 over no values.
//   - min, max over int64, float64, timestamp and string (strings compare
//     bytewise, that is lexicographically in UTF-8). The field type; no value
//     over no values. Over float64, NaN wins over any number in both min and
//     max, and -0 is smaller than +0, so the result never depends on order.
//   - mean over int64 or float64: the compensated sum over the count of
//     non-null values. Float64; no value over no values.
//   - last over any type: the value with the latest event time. Values with
//     equal event times are ordered by a total order on values (numbers
//     numerically, -0 before +0 and NaNs beyond ±Inf by their sign; false
//     before true; strings bytewise) and the larger wins, so ties do not
//     depend on arrival order.
//     The field type; no value over no values.
//   - approx_count_distinct over any type: a HyperLogLog++ estimate of the
//     number of distinct values (github.com/axiomhq/hyperloglog, precision
//     14, sparse representation while small). Its standard error is about
//     1.04/sqrt(2^14) ≈ 0.81%, so about 95% of estimates are within 1.6% and
//     practically all within 3%; small cardinalities (up to a few thousand)
//     are counted almost exactly by the sparse representation. A value is
//     hashed as its type byte followed by its canonical bytes (little-endian
//     int64 for int64, timestamp and bool; the IEEE 754 bits for float64,
//     with -0 read as +0 and every NaN as one NaN; the UTF-8 bytes for
//     string). Merge is the exact union of sketches. Int64; 0 over no values.
//   - stddev over int64 or float64: the population standard deviation
//     sqrt((n·S2 − S1²)/n²) from the exact sums S1 = Σx and S2 = Σx².
//     Float64; no value over no values; NaN once a non-finite value was added.
//   - first over any type: the value with the earliest event time; of values
//     with equal event times the smallest by the order of last. The field
//     type; no value over no values.
//   - last_k over any type, with k (1 to 100): the k values with the latest
//     event times, newest first; equal event times ordered as last orders
//     them (the larger value first), so last_k[0] is last, and equal values
//     at equal times kept as often as they occur. A List of the field type;
//     no value over no values. Exact: the k greatest events by (time, value).
//   - first_k: as last_k with the k earliest events, oldest first, of equal
//     times the smaller value first (first_k[0] is first).
//   - top_k over any type, with k (1 to 100): the at most k most frequent
//     values with their counts, the highest count first, equal counts by
//     the order of last's ties (smaller first). Counts; no value over no
//     values. A Misra-Gries summary of TopKCapacity(k) = max(128, 8k)
//     counters: exact (and independent of order) while the events hold at
//     most that many distinct values; beyond, each count is a lower bound
//     at most N/(c+1) under the true count (N values, c counters) for any
//     tree of merges, every value occurring more than N/(c+1) times is
//     kept, and which values are kept may depend on the order of merges.
//   - approx_percentile over int64 or float64, with its percentiles (each in
//     (0, 1)): for each percentile q the value x of rank ⌊q·(n−1)⌋ (from 0,
//     as DDSketch ranks; ⌈q·(n−1)⌉ where that rank falls among negative
//     values) of the n finite values, within a relative error of
//     PercentileRelativeError (1%): |estimate − x| ≤ 0.01·|x| (a DDSketch,
//     github.com/DataDog/sketches-go, logarithmic mapping, at most 2048
//     bins for positive and for negative values each; values spanning more
//     than a factor of about 6·10^17 collapse their smallest magnitudes
//     into one bin, outside the guarantee). Non-finite values are skipped.
//     Merge adds bin counts: the same sketch in any order. Quantiles (float64
//     values named "p50", "p99.9", in the definition's order); no value over
//     no values.
//   - histogram over string, with a bucket limit b (1 to 1000, default 20):
//     the exact counts of the b bytewise-smallest distinct values, and the
//     number of all other values as the overflow. Exact and independent of
//     order. A Histogram; over no values no buckets and overflow 0.
//
// Partials of last_k, first_k, top_k and histogram written with different
// parameters (a definition changed its k or buckets) merge into the
// smaller one; approx_percentile keeps the receiver's percentiles (a
// window takes its feature's).
//
// # Encoding
//
// Encodings are stable and versioned:
//
//	byte 0   format version, currently 1
//	byte 1   op tag: 1 count, 2 sum, 3 min, 4 max, 5 mean, 6 last,
//	         7 approx_count_distinct, 8 stddev (Welford's state: read, no
//	         longer written), 9 stddev (exact sums), 10 first, 11 last_k,
//	         12 first_k, 13 top_k, 14 approx_percentile, 15 histogram
//	byte 2   field type, a schemas.Type: 0 null (count, always), 1 string,
//	         2 int64, 3 float64, 4 bool, 5 timestamp
//	byte 3-  the op's payload, below
//
// In the payloads, uvarint and varint are encoding/binary's unsigned and
// zig-zag varints, minimally encoded; f64 is an IEEE 754 float64 in 8 bytes,
// little-endian; opt is one byte, 0 (no value, nothing follows) or 1 (a value
// follows); a value is a varint for int64 and timestamp (Unix microseconds),
// one byte 0 or 1 for bool, an f64 for float64, and a uvarint length and the
// bytes for string.
//
//	count                   uvarint n
//	sum                     int64: varint sum; float64: f64 sum, f64 compensation
//	min, max                opt, value
//	mean                    uvarint n; if n > 0: f64 sum, f64 compensation
//	last                    opt, varint event time, value
//	approx_count_distinct   nothing when no value was added, else the sketch in
//	                        axiomhq/hyperloglog's format version 2, precision 14
//	stddev (tag 8)          uvarint n; if n > 0: f64 mean, f64 M2; decoded as
//	                        S1 = n·mean, S2 = M2 + n·mean²
//	stddev (tag 9)          uvarint n; if n > 0: one byte 0 or 1 (a non-finite
//	                        value was added), then S1 and S2, each exact as
//	                        m·2^e: varint e, varint sign of m (-1, 0, 1),
//	                        uvarint length and the big-endian bytes of |m|;
//	                        m odd or zero (then e = 0)
//	first                   as last
//	last_k, first_k         uvarint k, uvarint n ≤ k, then n times varint
//	                        event time and value, in result order
//	top_k                   uvarint k, uvarint n ≤ TopKCapacity(k), then n
//	                        times value and uvarint count > 0, values
//	                        strictly increasing in last's order
//	approx_percentile       uvarint number of percentiles, each an f64; uvarint
//	                        zero count; then the positive and the negative
//	                        store, each uvarint number of bins ≤ 2048, then
//	                        per bin its index (varint for the first, uvarint
//	                        gap > 0 after) and uvarint count > 0, spanning
//	                        fewer than 2048 indexes
//	histogram               uvarint bucket limit b, uvarint overflow, uvarint
//	                        n ≤ b (n = b if overflow > 0), then n times string
//	                        and uvarint count > 0, strictly increasing
//
// The encoding of a state is deterministic, and Encode(Decode(b)) == b for
// every b that Encode writes (not for tag 8, which is written as tag 9). Decode rejects anything else, including trailing
// bytes and non-minimal varints, with an error wrapping ErrCorrupt, or
// ErrVersion for an unknown version byte; it never panics. Any incompatible
// change to the layout above takes a new version byte, and op tags and type
// numbers are never reused; readers are deployed before writers of a new
// version.
package aggregate

import (
	"errors"
	"fmt"
	"reflect"
	"slices"

	"github.com/tandem-fp/tandem/schemas"
)

// Errors returned by Decode, Merge and New.
var (
	ErrCorrupt     = errors.New("aggregate: corrupt encoding")
	ErrVersion     = errors.New("aggregate: unknown encoding version")
	ErrMismatch    = errors.New("aggregate: op or type mismatch")
	ErrUnsupported = errors.New("aggregate: unsupported op or field type")
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

// partial is what every implementation provides beyond Partial.
type partial interface {
	Partial
	// fieldType is the type of the aggregated field, Null for count.
	fieldType() schemas.Type
	// decodePayload reads the op's payload from d into the receiver, which
	// is empty (as New returned it).
	decodePayload(d *decoder)
}

// New returns the empty partial aggregate of op over a field of type t. t is
// ignored by count (whose partials all have field type Null); the other ops
// need a type that op.Accepts, else New returns an error wrapping
// ErrUnsupported.
//
// The ops that take parameters (last_k, first_k, top_k, approx_percentile,
// histogram) take the defaults of Params; NewWith takes them.
func New(op schemas.Op, t schemas.Type) (Partial, error) {
	return NewWith(op, t, Params{})
}

// NewWith is New with the parameters of last_k, first_k, top_k,
// approx_percentile and histogram (the other ops ignore them). Parameters
// out of range give an error wrapping ErrUnsupported.
func NewWith(op schemas.Op, t schemas.Type, params Params) (Partial, error) {
	p, err := newPartial(op, t, params, false)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// newPartial returns the empty partial of op over t. With valid set, the
// parameters are known to be valid and never to change (a loaded
// definition's, or the defaults): their percentiles are then neither
// checked again nor copied, which a tile, made per entity and tile of
// every event, would otherwise pay for each time.
func newPartial(op schemas.Op, t schemas.Type, params Params, valid bool) (partial, error) {
	if op == schemas.OpCount {
		return new(countPartial), nil
	}
	if !declarable(t) || !op.Accepts(t) {
		return nil, fmt.Errorf("new %s partial over a %s field: %w", op, t, ErrUnsupported)
	}
	params, err := params.withDefaults(op, !valid)
	if err != nil {
		return nil, fmt.Errorf("new %s partial: %v: %w", op, err, ErrUnsupported)
	}
	switch op {
	case schemas.OpSum:
		if t == schemas.Int64 {
			return new(sumInt), nil
		}
		return new(sumFloat), nil
	case schemas.OpMin, schemas.OpMax:
		isMax := op == schemas.OpMax
		switch t {
		case schemas.Float64:
			return &extremeFloat{max: isMax}, nil
		case schemas.String:
			return &extremeString{max: isMax}, nil
		default: // Int64, Timestamp
			return &extremeInt{typ: t, max: isMax}, nil
		}
	case schemas.OpMean:
		return &meanPartial{typ: t}, nil
	case schemas.OpLast:
		return &lastPartial{typ: t}, nil
	case schemas.OpApproxCountDistinct:
		return &distinctPartial{typ: t}, nil
	case schemas.OpStddev:
		return &stddevPartial{typ: t}, nil
	case schemas.OpFirst:
		return &lastPartial{typ: t, first: true}, nil
	case schemas.OpLastK, schemas.OpFirstK:
		return &lastKPartial{typ: t, first: op == schemas.OpFirstK, k: params.K}, nil
	case schemas.OpTopK:
		return &topKPartial{typ: t, k: params.K}, nil
	case schemas.OpApproxPercentile:
		qs := params.Percentiles
		if !valid {
			qs = slices.Clone(qs)
		}
		return &percentilePartial{typ: t, qs: qs}, nil
	case schemas.OpHistogram:
		return &histogramPartial{b: params.Buckets}, nil
	}
	return nil, fmt.Errorf("new %s partial: unknown op: %w", op, ErrUnsupported)
}

// For returns the empty partial aggregate of feature f. f must be valid (as
// schemas' loader guarantees): For panics if f's op does not accept its
// field type, and takes its percentiles as they are, unchecked and shared
// (a definition's never change).
func For(f schemas.Feature) Partial {
	p, err := newPartial(f.Op, f.FieldType, ParamsOf(f), true)
	if err != nil {
		panic(fmt.Sprintf("aggregate.For(feature %q): %v", f.Name, err))
	}
	return p
}

// Encode returns the versioned encoding of p.
func Encode(p Partial) ([]byte, error) {
	return p.AppendBinary(make([]byte, 0, 32))
}

// declarable reports whether t is a type a field may have.
func declarable(t schemas.Type) bool {
	return t >= schemas.String && t <= schemas.Timestamp
}

// mismatch returns the error of merging other into p.
func mismatch(p partial, other Partial) error {
	what := fmt.Sprintf("%T", other)
	if o, ok := other.(partial); ok && !isNil(o) {
		what = kind(o.Op(), o.fieldType())
	}
	return fmt.Errorf("merge %s into %s: %w", what, kind(p.Op(), p.fieldType()), ErrMismatch)
}

// isNil reports whether p is nil or holds a nil pointer.
func isNil(p Partial) bool {
	if p == nil {
		return true
	}
	v := reflect.ValueOf(p)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

// kind names an op over a field type for messages: "count", "sum(float64)".
func kind(op schemas.Op, t schemas.Type) string {
	if op == schemas.OpCount {
		return string(op)
	}
	return fmt.Sprintf("%s(%s)", op, t)
}
