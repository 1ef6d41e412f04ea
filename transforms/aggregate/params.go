package aggregate

import (
	"fmt"

	"github.com/tandem-fp/tandem/schemas"
)

// Params are the parameters of the ops that take them: K of last_k,
// first_k and top_k, Percentiles of approx_percentile, Buckets of
// histogram. A zero field takes its default (DefaultK,
// DefaultPercentiles, schemas.DefaultBuckets); the other ops ignore them.
type Params struct {
	K           int
	Percentiles []float64
	Buckets     int
}

// Defaults of Params, for New and for zero fields.
const DefaultK = 10

// DefaultPercentiles are approx_percentile's percentiles when none are
// given.
var DefaultPercentiles = []float64{0.5, 0.9, 0.99}

// ParamsOf returns the parameters of feature f.
func ParamsOf(f schemas.Feature) Params {
	return Params{K: f.K, Percentiles: f.Percentiles, Buckets: f.Buckets}
}

// withDefaults fills the zero fields of p and checks the others (the
// percentiles only if checkPercentiles).
func (p Params) withDefaults(op schemas.Op, checkPercentiles bool) (Params, error) {
	if p.K == 0 {
		p.K = DefaultK
	}
	if p.Buckets == 0 {
		p.Buckets = schemas.DefaultBuckets
	}
	if len(p.Percentiles) == 0 {
		p.Percentiles = DefaultPercentiles
	}
	switch {
	case op.TakesK() && (p.K < 1 || p.K > schemas.MaxK):
		return p, fmt.Errorf("k %d, want 1 to %d", p.K, schemas.MaxK)
	case op == schemas.OpHistogram && (p.Buckets < 1 || p.Buckets > schemas.MaxBuckets):
		return p, fmt.Errorf("buckets %d, want 1 to %d", p.Buckets, schemas.MaxBuckets)
	case op == schemas.OpApproxPercentile && checkPercentiles:
		if err := schemas.CheckPercentiles(p.Percentiles); err != nil {
			return p, err
		}
	}
	return p, nil
}
