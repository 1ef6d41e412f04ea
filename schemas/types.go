// Package schemas provides Tandem's feature-set definitions: the YAML format,
// the Go types behind it, the loader that validates a definition and reports
// errors as file:line, field and reason, the typed event that both pipelines
// decode records into, and the Bigtable layout that writers and the reader
// share. It also loads feature services (Service): the features of one
// model, drawn from several feature sets, each keyed by a request column.
package schemas

import (
	"fmt"
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

var typeNames = [...]string{Null: "null", String: "string", Int64: "int64", Float64: "float64", Bool: "bool", Timestamp: "timestamp"}

// String returns the YAML spelling of t ("string", "int64", ...).
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// ParseType parses the YAML spelling of a declarable field type.
func ParseType(s string) (Type, bool) {
	for i, n := range typeNames {
		if n == s && Type(i) != Null {
			return Type(i), true
		}
	}
	return Null, false
}

// Numeric reports whether values of t can be summed and averaged.
func (t Type) Numeric() bool { return t == Int64 || t == Float64 }

// Ordered reports whether values of t can be compared for min and max.
func (t Type) Ordered() bool { return t == Int64 || t == Float64 || t == Timestamp || t == String }

// Value is one typed value of an event field. The zero Value is null.
// Int holds int64 values, bools (0 or 1) and timestamps (Unix microseconds);
// Float holds float64 values; Str holds strings.
type Value struct {
	Type  Type
	Int   int64
	Float float64
	Str   string
}

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
// bool, time.Time (UTC), or nil for null.
func (v Value) Interface() any {
	switch v.Type {
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
)

// Ops lists every supported operation in a stable order.
var Ops = []Op{OpCount, OpSum, OpMin, OpMax, OpMean, OpLast, OpApproxCountDistinct, OpStddev}

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
	case OpLast, OpApproxCountDistinct:
		return t != Null
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
	}
	return t
}

// HasEmptyValue reports whether op has a value over an empty window (0 for
// count, sum and approx_count_distinct); the others have none (not found).
func (op Op) HasEmptyValue() bool {
	return op == OpCount || op == OpSum || op == OpApproxCountDistinct
}
