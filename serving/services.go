package serving

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandem-fp/tandem/schemas"
)

// Feature services (schemas.Service): the features of one model from
// several feature sets, each keyed by its own request column. A request
// names the service and gives rows of key columns; the server reads each
// feature set once per request, over the distinct keys of its column (one
// ReadRow, or ReadRows through readMany), with the same plan and merge as
// the per-set endpoints, so a service's values are those of
// /v1/features/{featureset} for the same entity and instant.
//
//	GET  /v1/services                 the services the caller may read
//	GET  /v1/services/{name}?card_id=c_1&user_id=7[&at=]
//	POST /v1/services/{name}          {"rows": [{"card_id": "c_1", "user_id": 7}], "at": "..."}
//	POST /get-online-features        Feast's feature-server shape (feastOnline)

// serviceState is a loaded service and what the server derives from it
// once. A request that names features (Feast's "features") gets an ad hoc
// serviceState of its own.
type serviceState struct {
	name  string
	json  []byte // its entry in GET /v1/services
	keys  []schemas.Column
	parts []servicePart
	// order maps the feature columns of a Feast response, in request order,
	// to the parts' features taken in part order (nil: that order itself).
	order []int
	// svc is the loaded service (nil for Feast's ad hoc "features"); its
	// derived features are computed over the parts' values, each STALE
	// when a part it reads is (derivedParts).
	svc          *schemas.Service
	derivedParts [][]int
}

// servicePart is the part of a service that one feature set provides.
type servicePart struct {
	st *setState
	// keys are the indexes in serviceState.keys of the columns that hold
	// the parts of the set's entity key, in key order (one for a single
	// key).
	keys  []int
	shape *readShape
}

// entity is the entity key (schemas.EntityKey) of the part's set in row
// (key column → key text).
func (p *servicePart) entity(row []string) string {
	if len(p.keys) == 1 {
		return row[p.keys[0]]
	}
	var buf [schemas.MaxKeyParts]string
	parts := buf[:len(p.keys)]
	for i, k := range p.keys {
		parts[i] = row[k]
	}
	return schemas.EntityKey(parts...)
}

// keyIndex returns the index in keys of the column named name, adding col
// when it is not there; ok is false when it is there with another type.
func keyIndex(keys *[]schemas.Column, col schemas.Column) (int, bool) {
	for k, c := range *keys {
		if c.Name == col.Name {
			return k, c.Type == col.Type
		}
	}
	*keys = append(*keys, col)
	return len(*keys) - 1, true
}

// sameKeyTypes reports whether a and b are key columns of the same types.
func sameKeyTypes(a, b []schemas.Column) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type {
			return false
		}
	}
	return true
}

// newServiceState resolves svc against the served sets by name: every set
// it uses must be served, with the features it names and the same key type.
func (s *Server) newServiceState(svc *schemas.Service) (*serviceState, error) {
	ss := &serviceState{name: svc.Name, keys: svc.Keys(), svc: svc}
	for j := range svc.Derived {
		ss.derivedParts = append(ss.derivedParts, svc.DerivedEntries(j))
	}
	b, err := svc.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encode service %s: %w", svc.Name, err)
	}
	ss.json = b
	for _, e := range svc.Entries {
		st, ok := s.sets[e.Set.Name]
		if !ok {
			return nil, fmt.Errorf("service %s uses feature set %s, which is not served", svc.Name, e.Set.Name)
		}
		if cols := e.KeyColumns(); !sameKeyTypes(cols, st.fs.KeyColumns()) {
			return nil, fmt.Errorf("service %s keys feature set %s by %v, but the served set's key is %v", svc.Name, e.Set.Name, cols, st.fs.KeyColumns())
		}
		sh, err := st.shapeFor(e.FeatureNames())
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", svc.Name, err)
		}
		part := servicePart{st: st, shape: sh}
		for _, col := range e.KeyColumns() {
			k, _ := keyIndex(&ss.keys, col) // svc.Keys() has them all, typed alike
			part.keys = append(part.keys, k)
		}
		ss.parts = append(ss.parts, part)
	}
	return ss, nil
}

// allowedService reports whether the request's API key may read every set
// of ss.
func allowedService(r *http.Request, ss *serviceState) bool {
	for _, p := range ss.parts {
		if !allowed(r, p.st.fs.Name) {
			return false
		}
	}
	return true
}

// service returns the named service: 404 when there is none, 403 when the
// API key may not read one of its sets.
func (s *Server) service(r *http.Request, name string) (*serviceState, error) {
	ss, ok := s.services[name]
	if !ok {
		var names []string
		for _, n := range s.serviceNames {
			if allowedService(r, s.services[n]) {
				names = append(names, n)
			}
		}
		return nil, badInput(ErrUnknownService, "unknown feature service %s (loaded: %s)", quoteInput(name), strings.Join(names, ", "))
	}
	for _, p := range ss.parts {
		if !allowed(r, p.st.fs.Name) {
			return nil, badInput(ErrForbidden, "this API key may not read feature set %q, which service %s uses", p.st.fs.Name, name)
		}
	}
	return ss, nil
}

// listServices serves GET /v1/services: the services the caller may read.
func (s *Server) listServices(w http.ResponseWriter, r *http.Request) error {
	b := append([]byte(nil), `{"services":[`...)
	n := 0
	for _, name := range s.serviceNames {
		ss := s.services[name]
		if !allowedService(r, ss) {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, ss.json...)
	}
	b = append(b, "]}\n"...)
	writeJSON(w, http.StatusOK, b)
	return nil
}

// serviceAt parses the `at` of a service request (now when empty) and
// checks it against every set of the service, as parseAt does for one.
func (s *Server) serviceAt(text string, ss *serviceState) (time.Time, error) {
	if text == "" {
		return s.cfg.Now().UTC(), nil
	}
	var at time.Time
	for _, p := range ss.parts {
		var err error
		if at, err = s.parseAt(text, p.st, p.shape); err != nil {
			return time.Time{}, err
		}
	}
	return at, nil
}

// entityKey checks a key column's value given as text (a query parameter,
// a JSON string) and returns it in the form of Bigtable row keys: int64
// keys in canonical decimal. what names it in errors.
func entityKey(col schemas.Column, text, what string) (string, error) {
	if col.Type == schemas.Int64 {
		v, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return "", badInput(ErrBadRequest, "%s: want an int64 key, got %s", what, quoteInput(text))
		}
		return strconv.FormatInt(v, 10), nil
	}
	if err := checkEntity(text, what); err != nil {
		return "", err
	}
	return text, nil
}

// jsonEntityKey decodes a key column's value given as JSON: a string for a
// string key; an integer or a string holding one for an int64 key (JSON
// clients often send int64 as strings, beyond 2^53).
func jsonEntityKey(col schemas.Column, raw []byte, what string) (string, error) {
	switch {
	case len(raw) > 0 && raw[0] == '"':
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			return "", badInput(ErrBadJSON, "%s: malformed string", what)
		}
		return entityKey(col, text, what)
	case col.Type == schemas.Int64 && len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9'):
		return entityKey(col, string(raw), what)
	case col.Type == schemas.Int64:
		return "", badInput(ErrBadRequest, "%s: want an int64 key (a JSON integer or a string holding one), got %s", what, jsonRawKind(raw))
	}
	return "", badInput(ErrBadRequest, "%s: want a string key, got %s", what, jsonRawKind(raw))
}

// jsonRawKind names the JSON type of a value's text.
func jsonRawKind(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch c := raw[0]; {
	case c == '{':
		return "an object"
	case c == '[':
		return "a list"
	case c == '"':
		return "a string"
	case c == 't' || c == 'f':
		return "a bool"
	case c == 'n':
		return "null"
	}
	return "a number " + quoteInput(string(raw))
}

// serviceRead is the outcome of reading a service for some rows at one
// instant: per part, the distinct entities of its key column, each row's
// index among them, their results, and the set's freshness.
type serviceRead struct {
	at    time.Time
	plans []*plan
	pos   [][]int      // part → row → index of the row's entity
	res   [][][]result // part → entity → feature slot
	fresh []Freshness
	stale []bool
	// derived holds the service's derived features: row → derived feature;
	// derivedStale whether each is STALE.
	derived      [][]result
	derivedStale []bool
}

// derive computes the service's derived features of every row with the
// one evaluator the training pipeline uses too (schemas.Service.EvalDerived):
// NOT_FOUND when null, STALE when a set it reads is, exact at the earliest
// as_of of its inputs.
func (rd *serviceRead) derive(ss *serviceState, rows int) {
	svc := ss.svc
	width := len(svc.FeatureColumns())
	n := width + len(svc.Derived)
	rd.derivedStale = make([]bool, len(svc.Derived))
	for j, parts := range ss.derivedParts {
		for _, pi := range parts {
			rd.derivedStale[j] = rd.derivedStale[j] || rd.stale[pi]
		}
	}
	rd.derived = make([][]result, rows)
	flat := make([]result, rows*len(svc.Derived))
	vals := make([]schemas.Value, n)
	asOf := make([]int64, n)
	for i := range rows {
		clear(vals)
		c := 0
		for pi, p := range ss.parts {
			res := rd.res[pi][rd.pos[pi][i]]
			for k := range p.shape.outs {
				r := res[p.shape.order[k]]
				if r.ok {
					vals[c] = r.v
				}
				asOf[c] = r.asOf
				c++
			}
		}
		svc.EvalDerived(vals, asOf)
		out := flat[i*len(svc.Derived) : (i+1)*len(svc.Derived)]
		for j := range out {
			v := vals[width+j]
			out[j] = result{v: v, ok: !v.IsNull(), asOf: asOf[width+j]}
		}
		rd.derived[i] = out
	}
}

// readService reads every part of ss for rows (row → key column → entity
// key) at the instant atText (see serviceAt), each set once, all sets in
// parallel, bounded by the request timeout.
func (s *Server) readService(ctx context.Context, ss *serviceState, rows [][]string, atText string) (*serviceRead, error) {
	at, err := s.serviceAt(atText, ss)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	n := len(ss.parts)
	rd := &serviceRead{at: at, plans: make([]*plan, n), pos: make([][]int, n), res: make([][][]result, n),
		fresh: make([]Freshness, n), stale: make([]bool, n)}
	entities := make([][]string, n)
	for i, p := range ss.parts {
		rd.plans[i] = p.st.plan(p.shape, at)
		rd.pos[i] = make([]int, len(rows))
		seen := make(map[string]int, len(rows))
		for r, row := range rows {
			e := p.entity(row)
			if len(e) > schemas.MaxKeyLen {
				return nil, badInput(ErrBadRequest, "row %d: the parts of the entity key of feature set %s are %d bytes together (encoded), more than the %d a key may have",
					r, p.st.fs.Name, len(e), schemas.MaxKeyLen)
			}
			j, ok := seen[e]
			if !ok {
				j = len(entities[i])
				seen[e] = j
				entities[i] = append(entities[i], e)
			}
			rd.pos[i][r] = j
		}
		nf := p.shape.width()
		flat := make([]result, len(entities[i])*nf)
		rd.res[i] = make([][]result, len(entities[i]))
		for j := range rd.res[i] {
			rd.res[i][j] = flat[j*nf : (j+1)*nf]
		}
	}
	err = bounded(ctx, "read service "+ss.name, func() error {
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i, p := range ss.parts {
			wg.Go(func() {
				fresh, err := s.meta.get(ctx, p.st.fs.Name)
				if err != nil {
					errs[i] = err
					return
				}
				rd.fresh[i] = fresh
				if len(entities[i]) == 1 {
					errs[i] = s.readOne(ctx, rd.plans[i], entities[i][0], fresh, rd.res[i][0])
				} else {
					errs[i] = s.readMany(ctx, rd.plans[i], entities[i], fresh, rd.res[i])
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range ss.parts {
		rd.stale[i] = s.stale(ss.parts[i].st.fs, at, rd.fresh[i])
	}
	if ss.svc != nil && len(ss.svc.Derived) > 0 {
		rd.derive(ss, len(rows))
	}
	return rd, nil
}

// getService serves GET /v1/services/{name}?KEY=...&at=...: one row.
func (s *Server) getService(w http.ResponseWriter, r *http.Request) error {
	ss, err := s.service(r, r.PathValue("name"))
	if err != nil {
		return err
	}
	params := make([]string, 0, len(ss.keys)+1)
	for _, k := range ss.keys {
		params = append(params, k.Name)
	}
	q, err := parseQuery(r, append(params, "at")...)
	if err != nil {
		return err
	}
	row := make([]string, len(ss.keys))
	for i, k := range ss.keys {
		text, err := queryOnce(q, k.Name, ErrBadRequest)
		if err != nil {
			return err
		}
		if _, given := q[k.Name]; !given {
			return badInput(ErrBadRequest, "missing key column %s: give ?%s=... (%s)", k.Name, k.Name, ss.keyUse(i))
		}
		if row[i], err = entityKey(k, text, k.Name); err != nil {
			return err
		}
	}
	atText, err := queryOnce(q, "at", ErrBadAt)
	if err != nil {
		return err
	}
	rd, err := s.readService(r.Context(), ss, [][]string{row}, atText)
	if err != nil {
		return err
	}
	b := make([]byte, 0, 512)
	b = append(b, `{"service":`...)
	b = appendString(b, ss.name)
	b = append(b, `,"at":`...)
	b = appendTime(b, rd.at)
	b = append(b, ',')
	b = ss.appendRow(b, rd, row, 0)
	if len(b) > s.cfg.MaxResponseBytes {
		return s.responseTooLarge(1)
	}
	b = append(b, `,"freshness":`...)
	b = ss.appendFreshness(b, rd)
	b = append(b, "}\n"...)
	writeJSON(w, http.StatusOK, b)
	return nil
}

// keyUse names the sets a key column keys, for error messages.
func (ss *serviceState) keyUse(k int) string {
	var sets []string
	part := false
	for _, p := range ss.parts {
		if i := slices.Index(p.keys, k); i >= 0 {
			sets = append(sets, p.st.fs.Name)
			part = part || len(p.keys) > 1
		}
	}
	if part {
		return fmt.Sprintf("a %s part of the entity key of feature set %s", ss.keys[k].Type, strings.Join(sets, " and "))
	}
	return fmt.Sprintf("the %s entity key of feature set %s", ss.keys[k].Type, strings.Join(sets, " and "))
}

// postService serves POST /v1/services/{name} {"rows": [...], "at": ...}.
func (s *Server) postService(w http.ResponseWriter, r *http.Request) error {
	ss, err := s.service(r, r.PathValue("name"))
	if err != nil {
		return err
	}
	data, err := readBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	var rowsRaw json.RawMessage
	var atText string
	const want = `{"rows": [{"KEY": ...}, ...], "at": "..."}`
	if err := decodeObject(data, want, rawField("rows", &rowsRaw), stringField("at", &atText)); err != nil {
		return err
	}
	rows, err := s.serviceRows(ss, rowsRaw)
	if err != nil {
		return err
	}
	rd, err := s.readService(r.Context(), ss, rows, atText)
	if err != nil {
		return err
	}
	b := make([]byte, 0, 256+len(rows)*256)
	b = append(b, `{"service":`...)
	b = appendString(b, ss.name)
	b = append(b, `,"at":`...)
	b = appendTime(b, rd.at)
	b = append(b, `,"results":[`...)
	for i, row := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		b = ss.appendRow(b, rd, row, i)
		b = append(b, '}')
		if len(b) > s.cfg.MaxResponseBytes {
			return s.responseTooLarge(len(rows))
		}
	}
	b = append(b, `],"freshness":`...)
	b = ss.appendFreshness(b, rd)
	b = append(b, "}\n"...)
	writeJSON(w, http.StatusOK, b)
	return nil
}

// serviceRows decodes the "rows" of a POST: a list of 1 to MaxEntities
// objects, each with every key column of ss and nothing else.
func (s *Server) serviceRows(ss *serviceState, raw json.RawMessage) ([][]string, error) {
	if raw == nil {
		return nil, badInput(ErrBadRequest, `missing "rows": give a list of objects holding %s`, ss.keyList())
	}
	var items []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return nil, badInput(ErrBadJSON, `field "rows": want a list of objects, got %s`, jsonRawKind(raw))
	}
	switch {
	case len(items) == 0:
		return nil, badInput(ErrBadRequest, `"rows" is empty: give at least one row`)
	case len(items) > s.cfg.MaxEntities:
		return nil, badInput(ErrTooManyEntities, "%d rows, more than the %d one request may read; split the request", len(items), s.cfg.MaxEntities)
	}
	rows := make([][]string, len(items))
	flat := make([]string, len(items)*len(ss.keys))
	for i, item := range items {
		row := flat[i*len(ss.keys) : (i+1)*len(ss.keys)]
		given := make([]bool, len(ss.keys))
		err := walkObject(item, fmt.Sprintf("rows[%d] as {%s}", i, ss.keyList()), func(col string, v []byte) error {
			k := 0
			for k < len(ss.keys) && ss.keys[k].Name != col {
				k++
			}
			if k == len(ss.keys) {
				return badInput(ErrBadRequest, "rows[%d]: unknown key column %s (service %s uses %s)", i, quoteInput(col), ss.name, ss.keyList())
			}
			given[k] = true
			var err error
			row[k], err = jsonEntityKey(ss.keys[k], v, fmt.Sprintf("rows[%d].%s", i, col))
			return err
		})
		if err != nil {
			return nil, err
		}
		for k, ok := range given {
			if !ok {
				return nil, badInput(ErrBadRequest, "rows[%d]: missing key column %s (%s)", i, ss.keys[k].Name, ss.keyUse(k))
			}
		}
		rows[i] = row
	}
	return rows, nil
}

func (ss *serviceState) keyList() string {
	names := make([]string, len(ss.keys))
	for i, k := range ss.keys {
		names[i] = k.Name
	}
	return strings.Join(names, ", ")
}

// appendKey appends an entity key as the JSON value of its column: int64
// keys as numbers.
func appendKey(b []byte, col schemas.Column, key string) []byte {
	if col.Type == schemas.Int64 {
		return append(b, key...) // canonical decimal, a JSON number
	}
	return appendString(b, key)
}

// appendRow appends `"row":{...},"features":{SET:{...},...}` for row i,
// then `,"derived":{NAME:{...},...}` when the service has derived features.
func (ss *serviceState) appendRow(b []byte, rd *serviceRead, row []string, i int) []byte {
	b = append(b, `"row":{`...)
	for k, col := range ss.keys {
		if k > 0 {
			b = append(b, ',')
		}
		b = appendString(b, col.Name)
		b = append(b, ':')
		b = appendKey(b, col, row[k])
	}
	b = append(b, `},"features":{`...)
	for pi, p := range ss.parts {
		if pi > 0 {
			b = append(b, ',')
		}
		b = appendString(b, p.st.fs.Name)
		b = append(b, ':')
		b = rd.plans[pi].appendFeatures(b, rd.res[pi][rd.pos[pi][i]], rd.stale[pi])
	}
	b = append(b, '}')
	if rd.derived == nil {
		return b
	}
	b = append(b, `,"derived":{`...)
	for j, d := range ss.svc.Derived {
		if j > 0 {
			b = append(b, ',')
		}
		b = appendString(b, d.Name)
		b = append(b, `:{"value":`...)
		b = appendResult(b, rd.derived[i][j], rd.derivedStale[j])
	}
	return append(b, '}')
}

// appendFreshness appends {SET: freshness, ...}.
func (ss *serviceState) appendFreshness(b []byte, rd *serviceRead) []byte {
	b = append(b, '{')
	for pi, p := range ss.parts {
		if pi > 0 {
			b = append(b, ',')
		}
		b = appendString(b, p.st.fs.Name)
		b = append(b, ':')
		b = appendFreshness(b, rd.fresh[pi])
	}
	return append(b, '}')
}
