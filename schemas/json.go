package schemas

import (
	"encoding/json"
	"fmt"
	"time"
)

// featureSetJSON is the JSON form of a FeatureSet: durations in definition
// syntax ("1h", "7d"), fields as an ordered list. It is what the serving API
// returns and how pipelines ship a definition to their workers.
type featureSetJSON struct {
	Name            string        `json:"name"`
	Entity          Entity        `json:"entity"`
	EventTime       string        `json:"event_time"`
	Fields          []fieldJSON   `json:"fields"`
	Sources         Sources       `json:"sources"`
	AllowedLateness string        `json:"allowed_lateness"`
	MaxFuture       string        `json:"max_future"`
	Retention       string        `json:"retention"`
	StaleAfter      string        `json:"stale_after,omitempty"`
	Features        []featureJSON `json:"features"`
	Derived         []derivedJSON `json:"derived,omitempty"`
	File            string        `json:"file,omitempty"`
}

type derivedJSON struct {
	Name       string `json:"name"`
	Expr       string `json:"expr"`
	ResultType string `json:"result_type"`
}

type fieldJSON struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

type featureJSON struct {
	Name       string `json:"name"`
	Op         Op     `json:"op"`
	Field      string `json:"field,omitempty"`
	Where      string `json:"where,omitempty"`
	Window     string `json:"window"`
	Tile       string `json:"tile"`
	Qualifier  string `json:"qualifier"`
	ResultType string `json:"result_type"`
	// The op's parameters (last_k, first_k, top_k, approx_percentile,
	// histogram).
	K           int       `json:"k,omitempty"`
	Percentiles []float64 `json:"percentiles,omitempty"`
	Buckets     int       `json:"buckets,omitempty"`
}

// MarshalJSON encodes fs with durations in definition syntax.
func (fs *FeatureSet) MarshalJSON() ([]byte, error) {
	j := featureSetJSON{
		Name: fs.Name, Entity: fs.Entity, EventTime: fs.EventTime, Sources: fs.Sources,
		AllowedLateness: FormatDuration(fs.AllowedLateness), MaxFuture: FormatDuration(fs.MaxFuture), Retention: FormatDuration(fs.Retention), File: fs.File,
	}
	if fs.StaleAfter > 0 {
		j.StaleAfter = FormatDuration(fs.StaleAfter)
	}
	for _, f := range fs.Fields {
		j.Fields = append(j.Fields, fieldJSON{Name: f.Name, Type: f.Type.String()})
	}
	for _, f := range fs.Features {
		j.Features = append(j.Features, featureJSON{
			Name: f.Name, Op: f.Op, Field: f.Field, Where: f.Where,
			Window: FormatDuration(f.Window), Tile: FormatDuration(f.Tile),
			Qualifier: f.Qualifier(), ResultType: f.ResultTypeName(),
			K: f.K, Percentiles: f.Percentiles, Buckets: f.Buckets,
		})
	}
	for _, d := range fs.Derived {
		j.Derived = append(j.Derived, derivedJSON{Name: d.Name, Expr: d.Expr, ResultType: d.Type.String()})
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON produced (a definition that was
// validated when it was loaded) and rebuilds the lookup indexes. It checks
// types, durations and references, not the full set of load-time rules.
func (fs *FeatureSet) UnmarshalJSON(data []byte) error {
	var j featureSetJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return fmt.Errorf("schemas: decode feature set JSON: %w", err)
	}
	out := FeatureSet{Name: j.Name, Entity: j.Entity, EventTime: j.EventTime, Sources: j.Sources, File: j.File}
	var err error
	if out.AllowedLateness, err = parseDurationJSON(j.AllowedLateness); err != nil {
		return fmt.Errorf("schemas: feature set %q: allowed_lateness: %w", j.Name, err)
	}
	if out.MaxFuture, err = parseDurationJSON(j.MaxFuture); err != nil {
		return fmt.Errorf("schemas: feature set %q: max_future: %w", j.Name, err)
	}
	if out.Retention, err = parseDurationJSON(j.Retention); err != nil {
		return fmt.Errorf("schemas: feature set %q: retention: %w", j.Name, err)
	}
	if j.StaleAfter != "" {
		if out.StaleAfter, err = parseDurationJSON(j.StaleAfter); err != nil {
			return fmt.Errorf("schemas: feature set %q: stale_after: %w", j.Name, err)
		}
	}
	for _, f := range j.Fields {
		t, ok := ParseType(f.Type)
		if !ok {
			return fmt.Errorf("schemas: feature set %q: field %q: unknown type %q", j.Name, f.Name, f.Type)
		}
		out.Fields = append(out.Fields, Field{Name: f.Name, Type: t})
	}
	for _, f := range j.Features {
		ft := Feature{Name: f.Name, Op: f.Op, Field: f.Field, Where: f.Where, K: f.K, Percentiles: f.Percentiles, Buckets: f.Buckets}
		if ft.Window, err = parseDurationJSON(f.Window); err != nil {
			return fmt.Errorf("schemas: feature %s.%s: window: %w", j.Name, f.Name, err)
		}
		if ft.Tile, err = parseDurationJSON(f.Tile); err != nil {
			return fmt.Errorf("schemas: feature %s.%s: tile: %w", j.Name, f.Name, err)
		}
		if err := checkTile(ft.Window, ft.Tile); err != nil {
			return fmt.Errorf("schemas: feature %s.%s: %w", j.Name, f.Name, err)
		}
		out.Features = append(out.Features, ft)
	}
	out.index()
	env := out.fieldEnv()
	for i := range out.Features {
		f := &out.Features[i]
		if f.Where == "" {
			continue
		}
		if f.Filter, err = CompileExpr(f.Where, env, Bool); err != nil {
			return fmt.Errorf("schemas: feature %s.%s: where: %w", j.Name, f.Name, err)
		}
	}
	for _, f := range out.Features {
		if !f.Op.Known() || (f.Op.NeedsField() && (f.FieldIndex < 0 || !f.Op.Accepts(f.FieldType))) {
			return fmt.Errorf("schemas: feature %s.%s: op %q cannot take field %q", j.Name, f.Name, f.Op, f.Field)
		}
	}
	for _, d := range j.Derived {
		out.Derived = append(out.Derived, Derived{Name: d.Name, Expr: d.Expr})
		if err := out.compileDerived(len(out.Derived) - 1); err != nil {
			return fmt.Errorf("schemas: derived feature %s.%s: %w", j.Name, d.Name, err)
		}
	}
	for _, k := range out.Entity.Keys {
		if _, ok := out.fieldIndex[k]; !ok {
			return fmt.Errorf("schemas: feature set %q: entity key %q is not a field", j.Name, k)
		}
	}
	if _, ok := out.fieldIndex[out.EventTime]; !ok {
		return fmt.Errorf("schemas: feature set %q: event_time %q is not a field", j.Name, out.EventTime)
	}
	*fs = out
	return nil
}

// parseDurationJSON parses a duration in definition syntax or Go syntax.
func parseDurationJSON(s string) (time.Duration, error) {
	if len(s) > 1 && s[len(s)-1] == 'd' {
		var n int64
		if _, err := fmt.Sscanf(s, "%dd", &n); err == nil && n > 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	return time.ParseDuration(s)
}
