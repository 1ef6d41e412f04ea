package schemas

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// A feature service may define derived features of its own (YAML key
// `derived`, a list of {name, expr} as in a feature set) over the
// features it lists from all its sets, named by their feature columns
// (`card_activity__amount_sum_24h / user_sessions__views_1h`), and over
// its derived features defined before. They are computed at read time by
// the same evaluator as a set's derived features (Service.EvalDerived),
// when the server answers for the service and when the training pipeline
// writes a row of it. Each is output under the column
// ServiceDerivedColumn(service, name).

// FeatureColumns returns the feature columns of s in order: per entry, per
// listed feature, FeatureColumn(set, feature) with the feature's type.
// Their values are the first len(FeatureColumns()) slots of EvalDerived.
func (s *Service) FeatureColumns() []Column {
	var cols []Column
	for _, e := range s.Entries {
		for _, o := range e.Outputs {
			cols = append(cols, Column{Name: FeatureColumn(e.Set.Name, e.Set.OutputName(o)), Type: e.Set.OutputType(o)})
		}
	}
	return cols
}

// ServiceDerivedColumn is the column name of a service's derived feature
// in a training set and in full feature names: "<service>__<name>", as a
// set's features are "<featureset>__<feature>".
func ServiceDerivedColumn(service, name string) string { return FeatureColumn(service, name) }

// EvalDerived computes the service's derived features. vals has
// len(FeatureColumns()) + len(Derived) slots, the feature columns' values
// first (null where NOT_FOUND); it fills in the rest, in definition order.
// asOf, when not nil, is as for FeatureSet.EvalDerived: a derived value is
// exact at the earliest as_of among the features it reads.
func (s *Service) EvalDerived(vals []Value, asOf []int64) {
	evalDerived(s.Derived, s.width, vals, asOf)
}

// DerivedEntries returns, per derived feature of s, the indexes of the
// entries whose features it reads (directly or through another derived
// feature), ascending: a derived value is STALE when one of them is.
func (s *Service) DerivedEntries(j int) []int {
	var out []int
	col := 0
	for ei, e := range s.Entries {
		for range e.Outputs {
			for _, in := range s.Derived[j].Inputs {
				if in == col && (len(out) == 0 || out[len(out)-1] != ei) {
					out = append(out, ei)
				}
			}
			col++
		}
	}
	return out
}

// serviceDerived parses the derived features of svc at n; its entries are
// parsed. p.columns maps the feature columns to their lines, so a derived
// feature's column cannot collide with them.
func (p *serviceParser) serviceDerived(svc *Service, n ast.Node) {
	cols := svc.FeatureColumns()
	svc.width = len(cols)
	p.derivedList(n, "derived", map[string]int{}, func(d Derived) error {
		if line, dup := p.columns[ServiceDerivedColumn(svc.Name, d.Name)]; dup {
			return fmt.Errorf("its column %q is also the column of the feature at line %d; rename it", ServiceDerivedColumn(svc.Name, d.Name), line)
		}
		j := len(svc.Derived)
		svc.Derived = append(svc.Derived, d)
		if err := compileDerived(svc.Derived, j, len(cols), derivedEnv(cols, svc.Derived, j)); err != nil {
			svc.Derived = svc.Derived[:j]
			return unlisted(svc, err)
		}
		return nil
	}, func() { svc.Derived = svc.Derived[:len(svc.Derived)-1] }, func() []int { return svc.Derived[len(svc.Derived)-1].Inputs })
}

// derivedEnv is the environment of ds[j] over cols: the columns by name
// in slots 0..len(cols)-1, then ds[:j].
func derivedEnv(cols []Column, ds []Derived, j int) ExprEnv {
	names := make([]string, 0, len(cols)+j)
	for _, c := range cols {
		names = append(names, c.Name)
	}
	for _, d := range ds[:j] {
		names = append(names, d.Name)
	}
	return ExprEnv{
		Names: names,
		Lookup: func(name string) (int, Type, bool) {
			for i, c := range cols {
				if c.Name == name {
					return i, c.Type, true
				}
			}
			for _, d := range ds[:j] {
				if d.Name == name {
					return len(cols) + d.Index, d.Type, true
				}
			}
			return 0, Null, false
		},
	}
}

// CompileDerivedOver compiles derived features given by name and
// expression over columns cols, as a service's are (ds[j] reads cols by
// name and ds[:j]): how a pipeline worker rebuilds a service's derived
// features from their text, which the loader checked. Evaluate them with
// EvalDerivedOver(ds, len(cols), ...).
func CompileDerivedOver(cols []Column, exprs []Derived) ([]Derived, error) {
	ds := make([]Derived, len(exprs))
	for j, d := range exprs {
		ds[j] = Derived{Name: d.Name, Expr: d.Expr}
		if err := compileDerived(ds, j, len(cols), derivedEnv(cols, ds, j)); err != nil {
			return nil, fmt.Errorf("derived feature %s: %w", d.Name, err)
		}
	}
	return ds, nil
}

// EvalDerivedOver computes ds, compiled over n columns, into vals[n:] (see
// Service.EvalDerived).
func EvalDerivedOver(ds []Derived, n int, vals []Value, asOf []int64) { evalDerived(ds, n, vals, asOf) }

// unlisted rewrites an unknown-name error about a feature of a member set
// that the service does not list: a derived feature reads only listed
// features.
func unlisted(svc *Service, err error) error {
	for _, e := range svc.Entries {
		for o := range e.Set.Outputs() {
			name := e.Set.OutputName(o)
			col := FeatureColumn(e.Set.Name, name)
			if strings.Contains(err.Error(), "unknown name "+strconv.Quote(col)+" ") {
				return fmt.Errorf("%s is not among the service's features: list %s in the features of feature set %s to use it", col, name, e.Set.Name)
			}
		}
	}
	return err
}
