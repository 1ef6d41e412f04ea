package schemas

import (
	"fmt"
	"strconv"

	"github.com/goccy/go-yaml/ast"
)

// opParams parses the parameters of the feature at n (path field) into f:
// k of last_k, first_k and top_k (required), percentiles of
// approx_percentile (required), buckets of histogram (optional, default
// DefaultBuckets). A parameter that f's op does not take is an error.
// opOK says whether f.Op is known.
func (p *defParser) opParams(m map[string]entry, n ast.Node, field string, f *Feature, opOK bool) {
	if e, ok := m["k"]; ok {
		path := field + ".k"
		switch {
		case opOK && !f.Op.TakesK():
			p.errorf(e.value, path, "%s takes no k (only last_k, first_k and top_k do)", f.Op)
		default:
			if k, ok := p.intParam(e.value, path, 1, MaxK); ok {
				f.K = k
			}
		}
	} else if opOK && f.Op.TakesK() {
		p.errorf(n, field+".k", "required key is missing: %s needs k, 1 to %d", f.Op, MaxK)
	}

	if e, ok := m["percentiles"]; ok {
		path := field + ".percentiles"
		if opOK && f.Op != OpApproxPercentile {
			p.errorf(e.value, path, "%s takes no percentiles (only approx_percentile does)", f.Op)
		} else if items, ok := p.sequence(e.value, path); ok {
			qs := make([]float64, 0, len(items))
			good := true
			for i, item := range items {
				ipath := fmt.Sprintf("%s[%d]", path, i)
				s, ok := p.scalar(item, ipath)
				if !ok {
					good = false
					continue
				}
				q, err := strconv.ParseFloat(s, 64)
				if err != nil || !(q > 0 && q < 1) {
					p.errorf(item, ipath, "percentile %q not in (0, 1) (write 0.9 for p90)", s)
					good = false
					continue
				}
				qs = append(qs, q)
			}
			if good {
				if err := CheckPercentiles(qs); err != nil {
					p.errorf(e.value, path, "%v", err)
				}
				f.Percentiles = qs
			}
		}
	} else if opOK && f.Op == OpApproxPercentile {
		p.errorf(n, field+".percentiles", "required key is missing: approx_percentile needs percentiles, such as [0.5, 0.9, 0.99]")
	}

	if e, ok := m["buckets"]; ok {
		path := field + ".buckets"
		if opOK && f.Op != OpHistogram {
			p.errorf(e.value, path, "%s takes no buckets (only histogram does)", f.Op)
		} else if b, ok := p.intParam(e.value, path, 1, MaxBuckets); ok {
			f.Buckets = b
		}
	} else if opOK && f.Op == OpHistogram {
		f.Buckets = DefaultBuckets
	}
}

// intParam parses the whole number at n, lo to hi.
func (p *defParser) intParam(n ast.Node, field string, lo, hi int) (int, bool) {
	s, ok := p.scalar(n, field)
	if !ok {
		return 0, false
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < lo || v > hi {
		p.errorf(n, field, "%q is not a whole number from %d to %d", s, lo, hi)
		return 0, false
	}
	return v, true
}
