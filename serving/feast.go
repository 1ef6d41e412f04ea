package serving

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tandem-fp/tandem/schemas"
)

// POST /get-online-features: the online endpoint of Feast's feature server
// (feast serve), request and response as its JSON mapping of
// GetOnlineFeaturesRequest and GetOnlineFeaturesResponse, so that a client
// written for Feast can switch to Tandem:
//
//	{"features": ["card_activity:txn_count_1h", ...] | "feature_service": "fraud_model",
//	 "entities": {"card_id": ["c_1", "c_2"]}, "full_feature_names": false,
//	 "at": "..."}                                      (at: Tandem's, optional)
//
//	{"metadata": {"feature_names": ["card_id", "txn_count_1h", ...]},
//	 "results": [{"values": [...], "statuses": [...], "event_timestamps": [...]}, ...]}
//
// As in Feast the response is by column: results[i] is the column
// metadata.feature_names[i], the entity columns first, then the features in
// the order requested, each with one value per entity row. Statuses are
// Feast's: PRESENT, NOT_FOUND (null value) and OUTSIDE_MAX_AGE for what
// Tandem calls STALE (the value is kept). An event timestamp is the instant
// the value is exact at: `at`, or the value's as_of when it has one (an
// earlier instant; see the read path); 1970-01-01T00:00:00Z, Feast's empty
// timestamp, for entity columns and NOT_FOUND. With "features", each set is keyed by
// the entity column named like its entity key field; with a service, by the
// service's key columns. Feature names are `<featureset>__<feature>` with
// full_feature_names, else the bare names, which must then be distinct.

// feastEpoch is the event timestamp Feast gives entity columns and missing
// values.
const feastEpoch = `"1970-01-01T00:00:00Z"`

// feastColumn is one feature of a Feast response: a slot of a part, or
// (part == len(parts)) the service's derived feature slot.
type feastColumn struct {
	part, slot int
	name       string
}

func (s *Server) feastOnline(w http.ResponseWriter, r *http.Request) error {
	data, err := readBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	var (
		refs        []string
		serviceName string
		entitiesRaw json.RawMessage
		fullNames   bool
		atText      string
		hasRefs     bool
	)
	const want = `{"features": ["featureset:feature", ...] or "feature_service": "...", "entities": {"KEY": [...]}, "full_feature_names": false}`
	err = decodeObject(data, want,
		jsonField{"features", func(raw []byte) error { hasRefs = true; return unmarshalField("features", raw, &refs) }},
		stringField("feature_service", &serviceName),
		rawField("entities", &entitiesRaw),
		jsonField{"full_feature_names", func(raw []byte) error {
			if err := json.Unmarshal(raw, &fullNames); err != nil || string(raw) == "null" {
				return badInput(ErrBadJSON, `field "full_feature_names": want true or false, got %s`, jsonRawKind(raw))
			}
			return nil
		}},
		stringField("at", &atText))
	if err != nil {
		return err
	}
	var ss *serviceState
	switch {
	case hasRefs && serviceName != "":
		return badInput(ErrBadRequest, `give "features" or "feature_service", not both`)
	case serviceName != "":
		if ss, err = s.service(r, serviceName); err != nil {
			return err
		}
	case !hasRefs:
		return badInput(ErrBadRequest, `missing "features" or "feature_service": name the features to read`)
	case len(refs) == 0:
		return badInput(ErrBadRequest, `"features" is empty: give at least one "featureset:feature"`)
	default:
		if ss, err = s.refService(r, refs); err != nil {
			return err
		}
	}
	var cols []feastColumn
	byName := make(map[string]int)
	for pi, p := range ss.parts {
		for k, o := range p.shape.outs {
			slot := p.shape.order[k]
			name := p.st.fs.OutputName(o)
			if fullNames {
				name = schemas.FeatureColumn(p.st.fs.Name, name)
			}
			if prev, dup := byName[name]; dup {
				hint := "set full_feature_names to true"
				if fullNames {
					hint = "request them separately"
				}
				return badInput(ErrBadRequest, "feature name %s is that of a feature of %s and of %s; %s",
					name, ss.parts[cols[prev].part].st.fs.Name, p.st.fs.Name, hint)
			}
			byName[name] = len(cols)
			cols = append(cols, feastColumn{part: pi, slot: slot, name: name})
		}
	}
	if ss.svc != nil {
		for j, d := range ss.svc.Derived {
			name := d.Name
			if fullNames {
				name = schemas.ServiceDerivedColumn(ss.svc.Name, name)
			}
			if prev, dup := byName[name]; dup {
				return badInput(ErrBadRequest, "feature name %s is that of a feature of %s and of a derived feature of service %s; set full_feature_names to true",
					name, ss.parts[cols[prev].part].st.fs.Name, ss.svc.Name)
			}
			byName[name] = len(cols)
			cols = append(cols, feastColumn{part: len(ss.parts), slot: j, name: name})
		}
	}
	if ss.order != nil {
		ordered := make([]feastColumn, len(cols))
		for i, c := range ss.order {
			ordered[i] = cols[c]
		}
		cols = ordered
	}
	rows, err := s.feastEntities(ss, entitiesRaw)
	if err != nil {
		return err
	}
	rd, err := s.readService(r.Context(), ss, rows, atText)
	if err != nil {
		return err
	}

	b := make([]byte, 0, 256+len(cols)*len(rows)*48)
	b = append(b, `{"metadata":{"feature_names":[`...)
	for k, col := range ss.keys {
		if k > 0 {
			b = append(b, ',')
		}
		b = appendString(b, col.Name)
	}
	for _, c := range cols {
		b = append(b, ',')
		b = appendString(b, c.name)
	}
	b = append(b, `]},"results":[`...)
	list := func(n int, each func(i int)) {
		b = append(b, '[')
		for i := range n {
			if i > 0 {
				b = append(b, ',')
			}
			each(i)
		}
		b = append(b, ']')
	}
	for k, col := range ss.keys {
		if k > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"values":`...)
		list(len(rows), func(i int) { b = appendKey(b, col, rows[i][k]) })
		b = append(b, `,"statuses":`...)
		list(len(rows), func(int) { b = append(b, `"PRESENT"`...) })
		b = append(b, `,"event_timestamps":`...)
		list(len(rows), func(int) { b = append(b, feastEpoch...) })
		b = append(b, '}')
	}
	for _, c := range cols {
		res := func(i int) result { return rd.res[c.part][rd.pos[c.part][i]][c.slot] }
		stale := false
		if c.part == len(ss.parts) {
			res = func(i int) result { return rd.derived[i][c.slot] }
			stale = rd.derivedStale[c.slot]
		} else {
			stale = rd.stale[c.part]
		}
		b = append(b, `,{"values":`...)
		list(len(rows), func(i int) {
			if v := res(i); v.ok {
				b = appendValue(b, v.v)
			} else {
				b = append(b, "null"...)
			}
		})
		b = append(b, `,"statuses":`...)
		list(len(rows), func(i int) {
			switch {
			case !res(i).ok:
				b = append(b, `"NOT_FOUND"`...)
			case stale:
				b = append(b, `"OUTSIDE_MAX_AGE"`...)
			default:
				b = append(b, `"PRESENT"`...)
			}
		})
		b = append(b, `,"event_timestamps":`...)
		list(len(rows), func(i int) {
			switch v := res(i); {
			case !v.ok:
				b = append(b, feastEpoch...)
			case v.asOf != 0:
				b = appendTime(b, time.UnixMicro(v.asOf))
			default:
				b = appendTime(b, rd.at)
			}
		})
		b = append(b, '}')
		if len(b) > s.cfg.MaxResponseBytes {
			return s.responseTooLarge(len(rows))
		}
	}
	b = append(b, "]}\n"...)
	writeJSON(w, http.StatusOK, b)
	return nil
}

// refService builds the service that Feast feature references
// ("featureset:feature") describe: each set keyed by the column named like
// its entity key field. Its order maps the response's feature columns, in
// request order, to the parts' columns.
func (s *Server) refService(r *http.Request, refs []string) (*serviceState, error) {
	ss := &serviceState{name: "features"}
	partOf := make(map[string]int)
	var names [][]string // per part, in request order
	type ref struct{ part, i int }
	var order []ref
	seen := make(map[string]bool, len(refs))
	for i, text := range refs {
		set, feat, ok := strings.Cut(text, ":")
		if !ok || set == "" || feat == "" {
			return nil, badInput(ErrUnknownFeature, "features[%d]: want \"featureset:feature\", got %s", i, quoteInput(text))
		}
		if seen[text] {
			return nil, badInput(ErrBadRequest, "features[%d]: %s is requested twice", i, quoteInput(text))
		}
		seen[text] = true
		pi, ok := partOf[set]
		if !ok {
			st, err := s.featureSet(r, set)
			if err != nil {
				return nil, err
			}
			part := servicePart{st: st}
			for _, col := range st.fs.KeyColumns() {
				k, ok := keyIndex(&ss.keys, col)
				if !ok {
					return nil, badInput(ErrBadRequest, "entity column %s keys feature sets with %s and %s keys (%s and %s); request them separately",
						col.Name, ss.keys[k].Type, col.Type, ss.keyUse(k), set)
				}
				part.keys = append(part.keys, k)
			}
			pi = len(ss.parts)
			partOf[set] = pi
			ss.parts = append(ss.parts, part)
			names = append(names, nil)
		}
		order = append(order, ref{pi, len(names[pi])})
		names[pi] = append(names[pi], feat)
	}
	offset := make([]int, len(ss.parts))
	n := 0
	for pi := range ss.parts {
		p := &ss.parts[pi]
		sh, err := p.st.shapeFor(names[pi])
		if err != nil {
			return nil, err
		}
		p.shape = sh
		offset[pi] = n
		n += len(sh.outs)
	}
	ss.order = make([]int, len(order))
	for i, o := range order {
		ss.order[i] = offset[o.part] + o.i
	}
	return ss, nil
}

// feastEntities decodes Feast's columnar "entities" into rows: every key
// column of ss, no other, each a list of the same length.
func (s *Server) feastEntities(ss *serviceState, raw json.RawMessage) ([][]string, error) {
	if raw == nil {
		return nil, badInput(ErrBadRequest, `missing "entities": give {%s} with a list of keys each`, ss.quotedKeys())
	}
	cols := make([][]json.RawMessage, len(ss.keys))
	given := make([]bool, len(ss.keys))
	err := walkObject(raw, `"entities" as {"KEY": [...]}`, func(name string, v []byte) error {
		k := 0
		for k < len(ss.keys) && ss.keys[k].Name != name {
			k++
		}
		if k == len(ss.keys) {
			return badInput(ErrBadRequest, "entities: unknown entity column %s (the features requested are keyed by %s)", quoteInput(name), ss.keyList())
		}
		if v[0] != '[' || json.Unmarshal(v, &cols[k]) != nil {
			return badInput(ErrBadJSON, "entities.%s: want a list of keys, got %s", name, jsonRawKind(v))
		}
		given[k] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	n := -1
	for k, ok := range given {
		name := ss.keys[k].Name
		switch {
		case !ok:
			return nil, badInput(ErrBadRequest, "entities: missing entity column %s (%s)", name, ss.keyUse(k))
		case n >= 0 && len(cols[k]) != n:
			return nil, badInput(ErrBadRequest, "entities: column %s has %d keys, %s has %d; give one key per row in every column",
				name, len(cols[k]), ss.keys[0].Name, n)
		}
		n = len(cols[k])
	}
	switch {
	case n == 0:
		return nil, badInput(ErrBadRequest, "entities: the columns are empty; give at least one row")
	case n > s.cfg.MaxEntities:
		return nil, badInput(ErrTooManyEntities, "%d entity rows, more than the %d one request may read; split the request", n, s.cfg.MaxEntities)
	}
	rows := make([][]string, n)
	flat := make([]string, n*len(ss.keys))
	for i := range rows {
		rows[i] = flat[i*len(ss.keys) : (i+1)*len(ss.keys)]
		for k, col := range ss.keys {
			var err error
			if rows[i][k], err = jsonEntityKey(col, cols[k][i], fmt.Sprintf("entities.%s[%d]", col.Name, i)); err != nil {
				return nil, err
			}
		}
	}
	return rows, nil
}

func (ss *serviceState) quotedKeys() string {
	names := make([]string, len(ss.keys))
	for i, k := range ss.keys {
		names[i] = fmt.Sprintf("%q: [...]", k.Name)
	}
	return strings.Join(names, ", ")
}
