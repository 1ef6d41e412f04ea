package trainpipe

import (
	"fmt"
	"slices"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/tandem-fp/tandem/schemas"
)

func init() {
	register.DoFn2x1[OutRow, func(OutRow), error](&deriveFn{})
}

// A feature service's own derived features (schemas/service_derived.go)
// are computed over each output row's feature columns, after the sets'
// values are joined, by the evaluator the server uses
// (schemas.EvalDerivedOver), and written as the columns
// `<service>__<name>` after the features.

// checkService checks that cfg's requests are cfg.Service's entries, in
// order, with the same features: the derived features read the feature
// columns by position.
func (cfg *Config) checkService() error {
	svc := cfg.Service
	if len(cfg.Requests) != len(svc.Entries) {
		return fmt.Errorf("%w: service %s has %d feature sets, the config requests %d", ErrConfig, svc.Name, len(svc.Entries), len(cfg.Requests))
	}
	for i, e := range svc.Entries {
		r := cfg.Requests[i]
		if r.Set.Name != e.Set.Name || !slices.Equal(r.feats, e.Outputs) {
			return fmt.Errorf("%w: request %d (%s %v) is not entry %d of service %s (%s %v)", ErrConfig, i, r.Set.Name, r.Features, i, svc.Name, e.Set.Name, e.FeatureNames())
		}
	}
	return nil
}

// derivedColumns are the output columns of the service's derived features.
func (cfg *Config) derivedColumns() []Column {
	if cfg.Service == nil {
		return nil
	}
	var cols []Column
	for _, d := range cfg.Service.Derived {
		cols = append(cols, Column{Name: schemas.ServiceDerivedColumn(cfg.Service.Name, d.Name), Type: d.Type})
	}
	return cols
}

// deriveRows appends the service's derived features to each row.
//
//	PCollection<OutRow> → PCollection<OutRow>
func deriveRows(s beam.Scope, cfg *Config, rows beam.PCollection) beam.PCollection {
	s = s.Scope("trainpipe.Derive")
	fn := &deriveFn{Offset: len(cfg.Spine.Columns), Columns: cfg.Service.FeatureColumns()}
	for _, d := range cfg.Service.Derived {
		fn.Exprs = append(fn.Exprs, derivedExpr{Name: d.Name, Expr: d.Expr})
	}
	return beam.ParDo(s, fn, rows)
}

type derivedExpr struct {
	Name string `json:"name"`
	Expr string `json:"expr"`
}

// deriveFn computes derived features over Columns, which start at Offset
// in each row.
type deriveFn struct {
	Offset  int              `json:"offset"`
	Columns []schemas.Column `json:"columns"`
	Exprs   []derivedExpr    `json:"exprs"`

	ds   []schemas.Derived
	vals []schemas.Value
}

func (fn *deriveFn) Setup() error {
	in := make([]schemas.Derived, len(fn.Exprs))
	for i, x := range fn.Exprs {
		in[i] = schemas.Derived{Name: x.Name, Expr: x.Expr}
	}
	ds, err := schemas.CompileDerivedOver(fn.Columns, in)
	if err != nil {
		return fmt.Errorf("training: %w", err)
	}
	fn.ds = ds
	fn.vals = make([]schemas.Value, len(fn.Columns)+len(ds))
	return nil
}

func (fn *deriveFn) ProcessElement(r OutRow, emit func(OutRow)) error {
	n := len(fn.Columns)
	if len(r.Values) != fn.Offset+n {
		return fmt.Errorf("training: a row of %d values, want %d spine columns and %d features", len(r.Values), fn.Offset, n)
	}
	copy(fn.vals, r.Values[fn.Offset:])
	clear(fn.vals[n:])
	schemas.EvalDerivedOver(fn.ds, n, fn.vals, nil)
	emit(OutRow{Values: append(r.Values, fn.vals[n:]...)})
	return nil
}
