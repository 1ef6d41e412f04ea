package schemas

import (
	"slices"
)

// Derived is a derived feature: an expression over other features of its
// set (stored features and derived features defined before it), computed
// at read time, when the server answers and when the training pipeline
// writes a row, by the one evaluator FeatureSet.EvalDerived. It has no
// tiles of its own.
type Derived struct {
	Name string `json:"name"`
	Expr string `json:"expr"`
	// Type is the type of its value.
	Type Type `json:"-"`
	// Index is its position in FeatureSet.Derived; its slot in the values
	// of EvalDerived (and its output index, see FeatureSet.Output) is
	// len(Features) + Index.
	Index int `json:"-"`
	// Compiled is Expr compiled over the set's slots: Features[i] in slot
	// i, Derived[j] in slot len(Features)+j.
	Compiled *Expr `json:"-"`
	// Inputs are the indexes of the stored features it reads, directly or
	// through other derived features, ascending.
	Inputs []int `json:"-"`
}

// Output resolves a feature name, stored or derived, to its output index:
// i < len(Features) is Features[i], len(Features)+j is Derived[j].
func (fs *FeatureSet) Output(name string) (int, bool) {
	if f, ok := fs.Feature(name); ok {
		return f.Index, true
	}
	for _, d := range fs.Derived {
		if d.Name == name {
			return len(fs.Features) + d.Index, true
		}
	}
	return 0, false
}

// OutputName and OutputType are the name and value type of output index i
// (see Output).
func (fs *FeatureSet) OutputName(i int) string {
	if i < len(fs.Features) {
		return fs.Features[i].Name
	}
	return fs.Derived[i-len(fs.Features)].Name
}

// OutputType is the type of output index i's value.
func (fs *FeatureSet) OutputType(i int) Type {
	if i < len(fs.Features) {
		return fs.Features[i].ResultType()
	}
	return fs.Derived[i-len(fs.Features)].Type
}

// Outputs is the number of output indexes: stored and derived features.
func (fs *FeatureSet) Outputs() int { return len(fs.Features) + len(fs.Derived) }

// StoredInputs returns the stored features (indexes, ascending, each once)
// that must be read to answer the outputs outs: the stored ones among them
// and the inputs of the derived ones.
func (fs *FeatureSet) StoredInputs(outs []int) []int {
	var in []int
	for _, o := range outs {
		if o < len(fs.Features) {
			in = append(in, o)
		} else {
			in = append(in, fs.Derived[o-len(fs.Features)].Inputs...)
		}
	}
	slices.Sort(in)
	return slices.Compact(in)
}

// EvalDerived is the one evaluator of derived features, shared by the
// server and the training pipeline so that they never disagree. vals has
// Outputs() slots: the values of the stored features in the first
// len(Features) (null where a feature has no value, NOT_FOUND), and it
// fills in the derived ones, in definition order. asOf, when not nil, has
// as many slots too: the instant (Unix µs) each stored value is exact at,
// 0 for the read's `at`; a derived value gets the earliest non-zero as_of
// among the stored features it reads (0 when none has one), as a derived
// value is no more recent than its oldest input. A derived feature whose
// inputs were not read is computed over nulls; callers read only the
// derived features whose StoredInputs they read.
func (fs *FeatureSet) EvalDerived(vals []Value, asOf []int64) {
	evalDerived(fs.Derived, len(fs.Features), vals, asOf)
}

// evalDerived computes ds, whose slots follow the n slots of stored
// values, in order (see FeatureSet.EvalDerived).
func evalDerived(ds []Derived, n int, vals []Value, asOf []int64) {
	for j := range ds {
		d := &ds[j]
		vals[n+j] = d.Compiled.Eval(vals)
		if asOf == nil {
			continue
		}
		a := int64(0)
		for _, i := range d.Inputs {
			if t := asOf[i]; t != 0 && (a == 0 || t < a) {
				a = t
			}
		}
		asOf[n+j] = a
	}
}

// outputEnv is the environment of derived feature j: the stored features
// and the derived ones before it.
func (fs *FeatureSet) outputEnv(j int) ExprEnv {
	var names []string
	for _, f := range fs.Features {
		names = append(names, f.Name)
	}
	for _, d := range fs.Derived[:j] {
		names = append(names, d.Name)
	}
	return ExprEnv{
		Names: names,
		Lookup: func(name string) (int, Type, bool) {
			if f, ok := fs.Feature(name); ok {
				return f.Index, f.ResultType(), true
			}
			for _, d := range fs.Derived[:j] {
				if d.Name == name {
					return len(fs.Features) + d.Index, d.Type, true
				}
			}
			return 0, Null, false
		},
	}
}

// compileDerived compiles derived feature j and resolves its inputs; the
// stored features and the derived ones before it are indexed.
func (fs *FeatureSet) compileDerived(j int) error {
	return compileDerived(fs.Derived, j, len(fs.Features), fs.outputEnv(j))
}

// compileDerived compiles ds[j] in env, whose slots are n stored values
// then ds[:j], and resolves its inputs to stored slots.
func compileDerived(ds []Derived, j, n int, env ExprEnv) error {
	d := &ds[j]
	d.Index = j
	x, err := CompileExpr(d.Expr, env, Null)
	if err != nil {
		return err
	}
	d.Compiled, d.Type = x, x.Type()
	d.Inputs = nil
	for _, s := range x.Refs() {
		if s < n {
			d.Inputs = append(d.Inputs, s)
		} else {
			d.Inputs = append(d.Inputs, ds[s-n].Inputs...)
		}
	}
	slices.Sort(d.Inputs)
	d.Inputs = slices.Compact(d.Inputs)
	return nil
}
