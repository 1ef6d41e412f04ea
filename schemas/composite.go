package schemas

// AppendCompositeJSON appends composite value v (v.Type.Composite()) in
// the JSON shapes of the feature API, writing each scalar (an element, a
// value, a percentile, a count) with scalar, so that each output keeps its
// own scalar conventions (non-finite floats, HTML safety):
//
//	List        [v1, v2, …]                                 (last_k, first_k)
//	Counts      [{"value": v1, "count": n1}, …]             (top_k)
//	Quantiles   {"p50": x, "p90": y, …}                     (approx_percentile)
//	Histogram   {"buckets": {"a": n1, …}, "overflow": n}     (histogram)
//
// A value of any other type is appended with scalar.
func AppendCompositeJSON(b []byte, v Value, scalar func([]byte, Value) []byte) []byte {
	switch v.Type {
	case List:
		b = append(b, '[')
		for i, it := range v.Items() {
			if i > 0 {
				b = append(b, ',')
			}
			b = scalar(b, it.Value())
		}
		return append(b, ']')
	case Counts:
		b = append(b, '[')
		for i, it := range v.Items() {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"value":`...)
			b = scalar(b, it.Value())
			b = append(b, `,"count":`...)
			b = scalar(b, Int64Value(it.Count))
			b = append(b, '}')
		}
		return append(b, ']')
	case Quantiles:
		b = append(b, '{')
		for i, it := range v.Items() {
			if i > 0 {
				b = append(b, ',')
			}
			b = scalar(b, StringValue(it.Key))
			b = append(b, ':')
			b = scalar(b, Float64Value(it.Float))
		}
		return append(b, '}')
	case Histogram:
		b = append(b, `{"buckets":{`...)
		for i, it := range v.Items() {
			if i > 0 {
				b = append(b, ',')
			}
			b = scalar(b, StringValue(it.Str))
			b = append(b, ':')
			b = scalar(b, Int64Value(it.Count))
		}
		b = append(b, `},"overflow":`...)
		b = scalar(b, Int64Value(v.Int))
		return append(b, '}')
	}
	return scalar(b, v)
}

// ResultTypeName names the type of f's value for people and the API:
// the scalar type ("int64", "string"), or for composites "list<T>" (T the
// field type), "counts<T>", "quantiles" or "histogram".
func (f Feature) ResultTypeName() string {
	switch t := f.ResultType(); t {
	case List, Counts:
		return t.String() + "<" + f.FieldType.String() + ">"
	default:
		return t.String()
	}
}
