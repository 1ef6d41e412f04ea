// Package schemas provides Tandem's feature-set definitions: the YAML format,
// the Go types behind it, the loader that validates a definition and reports
// errors as file:line, field and reason, the typed event that both pipelines
// decode records into, and the Bigtable layout that writers and the reader
// share. It also loads feature services (Service): the features of one
// model, drawn from several feature sets, each keyed by a request column.
package schemas

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// Type is the type of an event field.
type Type uint8

// The field types a feature set may declare. Null is the type of an absent
// value and cannot be declared.
const (
	Null Type = iota
	String
	Int64
	Float64
	Bool
	Timestamp
)

// The composite types of feature values (never of fields): their entries
// are in Value.Items(), see Item.
const (
	// List is a list of values of the field's type, in order (last_k,
	// first_k). Each Item is a value.
	List Type = iota + Timestamp + 1
	// Counts is a list of values with their counts, most frequent first
	// (top_k). Each Item is a value and its Count.
	Counts
	// Quantiles maps percentile names ("p50", "p99.9") to float64 values,
	// in the definition's order (approx_percentile). Each Item has the
	// name in Key and the value in Float.
	Quantiles
	// Histogram maps string buckets to counts, bytewise in order of the
	// bucket, with the count of the values in no bucket in Value.Int
	// (histogram). Each Item has the bucket in Str and its Count.
	Histogram
)

var typeNames = [...]string{Null: "null", String: "string", Int64: "int64", Float64: "float64", Bool: "bool", Timestamp: "timestamp",
	List: "list", Counts: "counts", Quantiles: "quantiles", Histogram: "histogram"}

// String returns the YAML spelling of t ("string", "int64", ...).
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// ParseType parses the YAML spelling of a declarable field type.
func ParseType(s string) (Type, bool) {
	for i, n := range typeNames[String : Timestamp+1] {
		if n == s {
			return Type(i) + String, true
		}
	}
	return Null, false
}

// Composite reports whether t is one of the composite result types (List,
// Counts, Quantiles, Histogram), whose entries are in Value.Items().
func (t Type) Composite() bool { return t >= List && t <= Histogram }

// Numeric reports whether values of t can be summed and averaged.
func (t Type) Numeric() bool { return t == Int64 || t == Float64 }

// Ordered reports whether values of t can be compared for min and max.
func (t Type) Ordered() bool { return t == Int64 || t == Float64 || t == Timestamp || t == String }

// Value is one typed value of an event field or a feature. The zero Value
// is null. Int holds int64 values, bools (0 or 1) and timestamps (Unix
// microseconds); Float holds float64 values; Str holds strings. A value of
// a composite type (a feature's List, Counts, Quantiles or Histogram) holds
// its entries in Composite (see Items), and a Histogram its overflow count
// in Int; Composite is nil for every other type.
//
// Values are comparable with ==, which compares composite values by the
// identity of their Composite; Same compares their entries.
type Value struct {
	Type      Type
	Int       int64
	Float     float64
	Str       string
	Composite *Composite
}

// Composite holds the entries of a composite Value. It is not changed once
// the value is made.
type Composite struct {
	Items []Item
}

// CompositeValue returns the composite value of type t with entries items
// (and for a Histogram its overflow in Int).
func CompositeValue(t Type, overflow int64, items []Item) Value {
	return Value{Type: t, Int: overflow, Composite: &Composite{Items: items}}
}

// Items returns the entries of a composite value, nil for other values.
func (v Value) Items() []Item {
	if v.Composite == nil {
		return nil
	}
	return v.Composite.Items
}

// Same reports whether v and w are the same value: == for scalars (so NaN
// is not the same as itself and -0 is the same as +0), and entry by entry
// for composites. (It is not named Equal so that go-cmp keeps comparing
// Values field by field, with the tests' float options.)
func (v Value) Same(w Value) bool {
	if v.Composite == nil || w.Composite == nil {
		return v == w
	}
	if v.Type != w.Type || v.Int != w.Int || v.Float != w.Float || v.Str != w.Str {
		return false
	}
	return slices.Equal(v.Composite.Items, w.Composite.Items)
}

// Item is one entry of a composite Value: a value of type Type (its Int,
// Float or Str, as in Value) for List and Counts, with its Count for Counts
// and Histogram (whose bucket is Str), and for Quantiles the percentile's
// name in Key and its value in Float.
type Item struct {
	Type  Type
	Int   int64
	Float float64
	Str   string
	Key   string
	Count int64
}

// Value returns the scalar value the item holds (Type, Int, Float, Str).
func (it Item) Value() Value { return Value{Type: it.Type, Int: it.Int, Float: it.Float, Str: it.Str} }

// ItemOf returns the item holding scalar value v.
func ItemOf(v Value) Item { return Item{Type: v.Type, Int: v.Int, Float: v.Float, Str: v.Str} }

// Constructors for Values.
func StringValue(s string) Value       { return Value{Type: String, Str: s} }
func Int64Value(i int64) Value         { return Value{Type: Int64, Int: i} }
func Float64Value(f float64) Value     { return Value{Type: Float64, Float: f} }
func TimestampValue(t time.Time) Value { return Value{Type: Timestamp, Int: t.UnixMicro()} }
func BoolValue(b bool) Value {
	if b {
		return Value{Type: Bool, Int: 1}
	}
	return Value{Type: Bool}
}

// IsNull reports whether v is the null value.
func (v Value) IsNull() bool { return v.Type == Null }

// AsFloat returns a numeric value as float64.
func (v Value) AsFloat() float64 {
	if v.Type == Float64 {
		return v.Float
	}
	return float64(v.Int)
}

// Interface returns v as a plain Go value for JSON: string, int64, float64,
// bool, time.Time (UTC), or nil for null; for composites the JSON shapes of
// the feature API: a List as []any of its values, Counts as
// []map[string]any{"value": v, "count": n}, Quantiles as
// map[string]float64, a Histogram as map[string]any{"buckets":
// map[string]int64, "overflow": n}.
func (v Value) Interface() any {
	switch v.Type {
	case List:
		out := make([]any, len(v.Items()))
		for i, it := range v.Items() {
			out[i] = it.Value().Interface()
		}
		return out
	case Counts:
		out := make([]map[string]any, len(v.Items()))
		for i, it := range v.Items() {
			out[i] = map[string]any{"value": it.Value().Interface(), "count": it.Count}
		}
		return out
	case Quantiles:
		out := make(map[string]float64, len(v.Items()))
		for _, it := range v.Items() {
			out[it.Key] = it.Float
		}
		return out
	case Histogram:
		b := make(map[string]int64, len(v.Items()))
		for _, it := range v.Items() {
			b[it.Str] = it.Count
		}
		return map[string]any{"buckets": b, "overflow": v.Int}
	case String:
		return v.Str
	case Int64:
		return v.Int
	case Float64:
		return v.Float
	case Bool:
		return v.Int != 0
	case Timestamp:
		return time.UnixMicro(v.Int).UTC()
	}
	return nil
}

// String formats v for humans and logs.
func (v Value) String() string {
	switch v.Type {
	case Timestamp:
		return time.UnixMicro(v.Int).UTC().Format(time.RFC3339Nano)
	case Null:
		return "null"
	}
	return fmt.Sprint(v.Interface())
}

// Op is an aggregation operation of a feature.
type Op string

// The aggregation operations Tandem supports.
const (
	OpCount               Op = "count"
	OpSum                 Op = "sum"
	OpMin                 Op = "min"
	OpMax                 Op = "max"
	OpMean                Op = "mean"
	OpLast                Op = "last"
	OpApproxCountDistinct Op = "approx_count_distinct"
	OpStddev              Op = "stddev"
	OpFirst               Op = "first"
	OpLastK               Op = "last_k"
	OpFirstK              Op = "first_k"
	OpTopK                Op = "top_k"
	OpApproxPercentile    Op = "approx_percentile"
	OpHistogram           Op = "histogram"
)

// Ops lists every supported operation in a stable order.
var Ops = []Op{OpCount, OpSum, OpMin, OpMax, OpMean, OpLast, OpApproxCountDistinct, OpStddev,
	OpFirst, OpLastK, OpFirstK, OpTopK, OpApproxPercentile, OpHistogram}

// Limits of the ops' parameters (the definition's k, percentiles, buckets).
const (
	MaxK           = 100  // k of last_k, first_k and top_k: 1 to MaxK
	MaxPercentiles = 20   // percentiles of approx_percentile: 1 to MaxPercentiles
	MaxBuckets     = 1000 // buckets of histogram: 1 to MaxBuckets
	DefaultBuckets = 20   // buckets of histogram when the definition gives none
)

// TakesK reports whether op takes a k (last_k, first_k, top_k).
func (op Op) TakesK() bool { return op == OpLastK || op == OpFirstK || op == OpTopK }

// Known reports whether op is a supported operation.
func (op Op) Known() bool {
	for _, o := range Ops {
		if o == op {
			return true
		}
	}
	return false
}

// NeedsField reports whether op aggregates a field (all but count).
func (op Op) NeedsField() bool { return op != OpCount }

// Accepts reports whether op can aggregate a field of type t.
func (op Op) Accepts(t Type) bool {
	switch op {
	case OpCount:
		return true
	case OpSum, OpMean, OpStddev:
		return t.Numeric()
	case OpMin, OpMax:
		return t.Ordered()
	case OpLast, OpApproxCountDistinct, OpFirst, OpLastK, OpFirstK, OpTopK:
		return t >= String && t <= Timestamp
	case OpApproxPercentile:
		return t.Numeric()
	case OpHistogram:
		return t == String
	}
	return false
}

// ResultType is the type of op's result over a field of type t.
func (op Op) ResultType(t Type) Type {
	switch op {
	case OpCount, OpApproxCountDistinct:
		return Int64
	case OpMean, OpStddev:
		return Float64
	case OpLastK, OpFirstK:
		return List
	case OpTopK:
		return Counts
	case OpApproxPercentile:
		return Quantiles
	case OpHistogram:
		return Histogram
	}
	return t
}

// HasEmptyValue reports whether op has a value over an empty window (0 for
// count, sum and approx_count_distinct, no buckets and no overflow for
// histogram); the others have none (not found).
func (op Op) HasEmptyValue() bool {
	return op == OpCount || op == OpSum || op == OpApproxCountDistinct || op == OpHistogram
}

// PercentileName names percentile q (0 < q < 1) in results: "p" and 100·q
// with at most 6 decimals and no trailing zeros ("p50", "p99.9").
func PercentileName(q float64) string {
	return "p" + strconv.FormatFloat(math.Round(q*1e8)/1e6, 'f', -1, 64)
}

// CheckPercentiles reports what is wrong with a list of percentiles: each
// in (0, 1), no two with the same name, 1 to MaxPercentiles of them.
func CheckPercentiles(qs []float64) error {
	if len(qs) < 1 || len(qs) > MaxPercentiles {
		return fmt.Errorf("%d percentiles, want 1 to %d", len(qs), MaxPercentiles)
	}
	seen := make(map[string]bool, len(qs))
	for _, q := range qs {
		if !(q > 0 && q < 1) || math.IsNaN(q) {
			return fmt.Errorf("percentile %v not in (0, 1)", q)
		}
		n := PercentileName(q)
		if n == "p0" || n == "p100" {
			return fmt.Errorf("percentile %v is %s to 6 decimals; want one in (0, 1) with at most 8 decimals", q, n)
		}
		if seen[n] {
			return fmt.Errorf("percentile %v listed twice (as %s)", q, n)
		}
		seen[n] = true
	}
	return nil
}
