package serving

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/serving/apikeys"
)

type principalKey struct{}

// authenticate requires a valid "Authorization: Bearer KEY" and puts the
// key's principal in the request context. The key itself is never logged.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		scheme, token, _ := strings.Cut(auth, " ")
		token = strings.TrimSpace(token)
		if !strings.EqualFold(scheme, "Bearer") || token == "" {
			s.writeError(w, r, badInput(ErrUnauthenticated, "missing API key: send Authorization: Bearer KEY"))
			return
		}
		p, ok := s.cfg.Keys.Lookup(token)
		if !ok {
			s.writeError(w, r, badInput(ErrUnauthenticated, "invalid API key"))
			return
		}
		setKeyName(r, p.Name)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// allowed reports whether the request's API key may read set (always true
// without API keys).
func allowed(r *http.Request, set string) bool {
	p, ok := r.Context().Value(principalKey{}).(*apikeys.Principal)
	return !ok || p.Allows(set)
}

// featureSet returns the named set, checking the API key first so that a
// key cannot learn which sets exist beyond those it may read.
func (s *Server) featureSet(r *http.Request, name string) (*setState, error) {
	if !allowed(r, name) {
		return nil, badInput(ErrForbidden, "this API key may not read feature set %q", name)
	}
	st, ok := s.sets[name]
	if !ok {
		return nil, badInput(ErrUnknownFeatureSet, "unknown feature set %q (loaded: %s)", name, s.namesAllowed(r))
	}
	return st, nil
}

func (s *Server) namesAllowed(r *http.Request) string {
	var names []string
	for _, n := range s.names {
		if allowed(r, n) {
			names = append(names, n)
		}
	}
	return strings.Join(names, ", ")
}

// appendSetList appends {"featuresets": [...]} with the sets r may read
// (all of them when r is nil).
func (s *Server) appendSetList(b []byte, r *http.Request) []byte {
	b = append(b, `{"featuresets":[`...)
	n := 0
	for _, name := range s.names {
		if r != nil && !allowed(r, name) {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		st := s.sets[name]
		b = append(b, st.json[:len(st.json)-1]...)
	}
	return append(b, "]}\n"...)
}

func (s *Server) listFeatureSets(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Keys == nil {
		writeJSON(w, http.StatusOK, s.list)
		return nil
	}
	writeJSON(w, http.StatusOK, s.appendSetList(nil, r))
	return nil
}

func (s *Server) getFeatureSet(w http.ResponseWriter, r *http.Request) error {
	st, err := s.featureSet(r, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st.json)
	return nil
}

// getFeatures serves GET /v1/features/{featureset}/{entity}: one entity of
// a single-key set, its key in the path.
func (s *Server) getFeatures(w http.ResponseWriter, r *http.Request) error {
	st, err := s.featureSet(r, r.PathValue("featureset"))
	if err != nil {
		return err
	}
	if st.fs.CompositeKey() {
		return badInput(ErrBadRequest, "feature set %s has a composite key %s: give its parts as query parameters, GET /v1/features/%s?%s",
			st.fs.Name, st.fs.Entity.KeyName(), st.fs.Name, keyQueryExample(st.fs))
	}
	entity := r.PathValue("entity")
	if err := checkEntity(entity, "entity"); err != nil {
		return err
	}
	q, err := parseQuery(r, "features", "at")
	if err != nil {
		return err
	}
	return s.serveOne(w, r, st, entity, q)
}

// getFeaturesByKey serves GET /v1/features/{featureset}?KEY=...: one
// entity, each part of its key (one for a single key) a query parameter
// named like its key field: ?user_id=7&merchant=Subway.
func (s *Server) getFeaturesByKey(w http.ResponseWriter, r *http.Request) error {
	st, err := s.featureSet(r, r.PathValue("featureset"))
	if err != nil {
		return err
	}
	cols := st.fs.KeyColumns()
	params := make([]string, 0, len(cols)+2)
	for _, c := range cols {
		if c.Name == "features" || c.Name == "at" {
			return badInput(ErrBadRequest, "feature set %s has a key field named %s, which this endpoint takes as its own parameter; use POST /v1/features/%s", st.fs.Name, c.Name, st.fs.Name)
		}
		params = append(params, c.Name)
	}
	q, err := parseQuery(r, append(params, "features", "at")...)
	if err != nil {
		return err
	}
	parts := make([]string, len(cols))
	for i, c := range cols {
		text, err := queryOnce(q, c.Name, ErrBadRequest)
		if err != nil {
			return err
		}
		if _, given := q[c.Name]; !given {
			return badInput(ErrBadRequest, "missing key %s: give ?%s (%s)", c.Name, keyQueryExample(st.fs), keyPartUse(st.fs, i))
		}
		if parts[i], err = entityKey(c, text, c.Name); err != nil {
			return err
		}
	}
	entity, err := joinKey(st.fs, parts, "entity")
	if err != nil {
		return err
	}
	return s.serveOne(w, r, st, entity, q)
}

// keyQueryExample is the query string of a key of fs: user_id=...&merchant=...
func keyQueryExample(fs *schemas.FeatureSet) string {
	var b strings.Builder
	for i, k := range fs.Entity.Keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k + "=...")
	}
	return b.String()
}

// keyPartUse names key part i of fs for error messages.
func keyPartUse(fs *schemas.FeatureSet, i int) string {
	c := fs.KeyColumns()[i]
	if len(fs.Entity.Keys) == 1 {
		return fmt.Sprintf("the %s entity key of feature set %s", c.Type, fs.Name)
	}
	return fmt.Sprintf("part %d of %d of the entity key %s of feature set %s, a %s", i+1, len(fs.Entity.Keys), fs.Entity.KeyName(), fs.Name, c.Type)
}

// joinKey encodes checked key parts as the entity key of fs
// (schemas.EntityKey), rejecting parts that are too long together.
func joinKey(fs *schemas.FeatureSet, parts []string, what string) (string, error) {
	e := schemas.EntityKey(parts...)
	if len(e) > MaxEntityKeyBytes {
		return "", badInput(ErrBadRequest, "%s: the parts of entity key %s are %d bytes together (encoded), more than %d", what, fs.Entity.KeyName(), len(e), MaxEntityKeyBytes)
	}
	return e, nil
}

// appendEntity appends an entity key as the API returns it: a string for a
// single-key set, an object of the key fields for a composite key
// ({"user_id": 7, "merchant": "Subway"}, int64 parts as numbers).
func appendEntity(b []byte, fs *schemas.FeatureSet, entity string) []byte {
	if !fs.CompositeKey() {
		return appendString(b, entity)
	}
	parts, ok := schemas.SplitEntityKey(entity, len(fs.Entity.Keys))
	if !ok { // never: joinKey made it
		return appendString(b, entity)
	}
	b = append(b, '{')
	for i, c := range fs.KeyColumns() {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, c.Name)
		b = append(b, ':')
		b = appendKey(b, c, parts[i])
	}
	return append(b, '}')
}

// serveOne answers a read of one entity of st with the parameters
// features and at of q.
func (s *Server) serveOne(w http.ResponseWriter, r *http.Request, st *setState, entity string, q url.Values) error {
	names := queryList(q, "features")
	atText, err := queryOnce(q, "at", ErrBadAt)
	if err != nil {
		return err
	}
	sh, err := st.shapeFor(names)
	if err != nil {
		return err
	}
	at, err := s.parseAt(atText, st, sh)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	p := st.plan(sh, at)
	res := make([]result, sh.width())
	var fresh Freshness
	if err := bounded(ctx, "read one entity", func() (err error) {
		if fresh, err = s.meta.get(ctx, st.fs.Name); err != nil {
			return err
		}
		return s.readOne(ctx, p, entity, fresh, res)
	}); err != nil {
		return err
	}
	stale := s.stale(st.fs, at, fresh)
	b := make([]byte, 0, 256+64*len(sh.outs))
	b = append(b, `{"featureset":`...)
	b = appendString(b, st.fs.Name)
	b = append(b, `,"entity":`...)
	b = appendEntity(b, st.fs, entity)
	b = append(b, `,"at":`...)
	b = appendTime(b, at)
	b = append(b, `,"features":`...)
	b = p.appendFeatures(b, res, stale)
	if len(b) > s.cfg.MaxResponseBytes {
		return s.responseTooLarge(1)
	}
	b = append(b, `,"freshness":`...)
	b = appendFreshness(b, fresh)
	b = append(b, "}\n"...)
	writeJSON(w, http.StatusOK, b)
	return nil
}

// batchRequest is the body of POST /v1/features/{featureset}.
type batchRequest struct {
	// Entities are the entity keys (schemas.EntityKey) of "entities", in
	// request order.
	Entities []string
	Features []string
	At       string
}

// postFeatures serves POST /v1/features/{featureset}.
func (s *Server) postFeatures(w http.ResponseWriter, r *http.Request) error {
	st, err := s.featureSet(r, r.PathValue("featureset"))
	if err != nil {
		return err
	}
	req, err := s.decodeBatch(w, r, st.fs)
	if err != nil {
		return err
	}
	// Read each distinct entity once; answer in request order.
	unique := make([]string, 0, len(req.Entities))
	pos := make([]int, len(req.Entities))
	seen := make(map[string]int, len(req.Entities))
	for i, e := range req.Entities {
		j, ok := seen[e]
		if !ok {
			j = len(unique)
			seen[e] = j
			unique = append(unique, e)
		}
		pos[i] = j
	}
	sh, err := st.shapeFor(req.Features)
	if err != nil {
		return err
	}
	at, err := s.parseAt(req.At, st, sh)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	p := st.plan(sh, at)
	flat := make([]result, len(unique)*sh.width())
	res := make([][]result, len(unique))
	for i := range res {
		res[i] = flat[i*sh.width() : (i+1)*sh.width()]
	}
	var fresh Freshness
	if err := bounded(ctx, "read entities", func() (err error) {
		if fresh, err = s.meta.get(ctx, st.fs.Name); err != nil {
			return err
		}
		return s.readMany(ctx, p, unique, fresh, res)
	}); err != nil {
		return err
	}
	stale := s.stale(st.fs, at, fresh)
	b := make([]byte, 0, min(256+len(req.Entities)*(32+48*len(sh.outs))+jsonLen(req.Entities), s.cfg.MaxResponseBytes+1<<16))
	b = append(b, `{"featureset":`...)
	b = appendString(b, st.fs.Name)
	b = append(b, `,"at":`...)
	b = appendTime(b, at)
	b = append(b, `,"results":[`...)
	for i, e := range req.Entities {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"entity":`...)
		b = appendEntity(b, st.fs, e)
		b = append(b, `,"features":`...)
		b = p.appendFeatures(b, res[pos[i]], stale)
		b = append(b, '}')
		if len(b) > s.cfg.MaxResponseBytes {
			return s.responseTooLarge(len(req.Entities))
		}
	}
	b = append(b, `],"freshness":`...)
	b = appendFreshness(b, fresh)
	b = append(b, "}\n"...)
	writeJSON(w, http.StatusOK, b)
	return nil
}

// responseTooLarge is the error of a response beyond MaxResponseBytes.
func (s *Server) responseTooLarge(entities int) error {
	s.m.reject(rejectResponse)
	return badInput(ErrResponseTooLarge, "the response for %d entities would be larger than %d bytes; ask for fewer entities or features", entities, s.cfg.MaxResponseBytes)
}

// decodeBatch decodes a POST body strictly (see decodeObject): one JSON
// object of at most MaxBodyBytes with the fields of batchRequest only,
// matched case-sensitively, each at most once, and 1 to MaxEntities
// entities, each checked (see entities).
func (s *Server) decodeBatch(w http.ResponseWriter, r *http.Request, fs *schemas.FeatureSet) (batchRequest, error) {
	var req batchRequest
	data, err := readBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		return req, err
	}
	var raw json.RawMessage
	err = decodeObject(data, `{"entities": [...], "features": [...], "at": "..."}`,
		rawField("entities", &raw), stringsField("features", &req.Features), stringField("at", &req.At))
	if err != nil {
		return req, err
	}
	req.Entities, err = s.entities(fs, raw)
	return req, err
}

// entities decodes the "entities" of a POST for set fs: a list of 1 to
// MaxEntities entity keys, each a string (a single-key set only, the
// shape before composite keys) or an object holding every key field of
// fs and nothing else ({"user_id": 7, "merchant": "Subway"}; int64 parts
// as JSON integers or strings holding one). It returns them as entity
// keys (schemas.EntityKey).
func (s *Server) entities(fs *schemas.FeatureSet, raw json.RawMessage) ([]string, error) {
	shape := `a list of entity keys`
	if fs.CompositeKey() {
		shape = fmt.Sprintf(`a list of objects {%s}`, keyObjectExample(fs))
	}
	if raw == nil {
		return nil, badInput(ErrBadRequest, `missing "entities": give %s`, shape)
	}
	var items []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return nil, badInput(ErrBadJSON, `field "entities": want %s, got %s`, shape, jsonRawKind(raw))
	}
	switch {
	case len(items) == 0:
		return nil, badInput(ErrBadRequest, `"entities" is empty: give at least one entity key`)
	case len(items) > s.cfg.MaxEntities:
		return nil, badInput(ErrTooManyEntities, "%d entities, more than the %d one request may read; split the request", len(items), s.cfg.MaxEntities)
	}
	cols := fs.KeyColumns()
	out := make([]string, len(items))
	parts := make([]string, len(cols))
	for i, item := range items {
		what := fmt.Sprintf("entities[%d]", i)
		switch {
		case item[0] == '"' && !fs.CompositeKey():
			var e string
			if err := json.Unmarshal(item, &e); err != nil {
				return nil, badInput(ErrBadJSON, "%s: malformed string", what)
			}
			if err := checkEntity(e, what); err != nil {
				return nil, err
			}
			out[i] = e
			continue
		case item[0] != '{':
			return nil, badInput(ErrBadJSON, `field "entities": want %s, got %s in it`, shape, jsonRawKind(item))
		}
		given := make([]bool, len(cols))
		err := walkObject(item, fmt.Sprintf("%s as {%s}", what, keyObjectExample(fs)), func(name string, v []byte) error {
			k := slices.IndexFunc(cols, func(c schemas.Column) bool { return c.Name == name })
			if k < 0 {
				return badInput(ErrBadRequest, "%s: unknown key field %s (feature set %s is keyed by %s)", what, quoteInput(name), fs.Name, fs.Entity.KeyName())
			}
			given[k] = true
			var err error
			parts[k], err = jsonEntityKey(cols[k], v, what+"."+name)
			return err
		})
		if err != nil {
			return nil, err
		}
		for k, ok := range given {
			if !ok {
				return nil, badInput(ErrBadRequest, "%s: missing key field %s (%s)", what, cols[k].Name, keyPartUse(fs, k))
			}
		}
		if out[i], err = joinKey(fs, parts, what); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// keyObjectExample is the JSON object of a key of fs: "user_id": ...,
// "merchant": ...
func keyObjectExample(fs *schemas.FeatureSet) string {
	var b strings.Builder
	for i, k := range fs.Entity.Keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q: ...", k)
	}
	return b.String()
}

// shapeFor resolves requested feature names, stored or derived (all
// features when empty; duplicates read once), to a read shape.
func (st *setState) shapeFor(names []string) (*readShape, error) {
	if len(names) == 0 {
		return st.all, nil
	}
	feats := make([]int, 0, len(names))
	seen := make(map[int]bool, len(names))
	for _, n := range names {
		o, ok := st.fs.Output(n)
		if !ok {
			return nil, badInput(ErrUnknownFeature, "feature set %s has no feature %q (it has %s)", st.fs.Name, n, st.featureNames())
		}
		if !seen[o] {
			seen[o] = true
			feats = append(feats, o)
		}
	}
	if len(feats) == st.fs.Outputs() {
		same := true
		for i, fi := range feats {
			same = same && fi == i
		}
		if same {
			return st.all, nil
		}
	}
	return st.shape(feats), nil
}

func (st *setState) featureNames() string {
	names := make([]string, st.fs.Outputs())
	for i := range names {
		names[i] = st.fs.OutputName(i)
	}
	return strings.Join(names, ", ")
}

// parseAt parses the `at` of a request (now when empty) and checks it: at
// most MaxClockSkew in the future, and recent enough that every requested
// window lies within the data kept (the feature set's retention).
func (s *Server) parseAt(text string, st *setState, sh *readShape) (time.Time, error) {
	now := s.cfg.Now()
	if text == "" {
		return now.UTC(), nil
	}
	at, err := parseTime(text)
	if err != nil {
		return time.Time{}, badInput(ErrBadAt, "at %s", err)
	}
	if at.After(now.Add(s.cfg.MaxClockSkew)) {
		return time.Time{}, badInput(ErrBadAt, "at %s is in the future (server time %s; up to %s of clock skew is allowed)",
			quoteInput(text), now.UTC().Format(time.RFC3339), s.cfg.MaxClockSkew)
	}
	if oldest := now.Add(sh.maxWin - st.fs.Retention); st.fs.Retention > 0 && at.Before(oldest) {
		return time.Time{}, badInput(ErrBadAt, "at %s is too old: feature set %s keeps %s of tiles, so a %s window can be read at %s or later",
			quoteInput(text), st.fs.Name, schemas.FormatDuration(st.fs.Retention), schemas.FormatDuration(sh.maxWin), oldest.UTC().Format(time.RFC3339))
	}
	return at, nil
}

// stale applies the status rule of Server, with the feature set's own
// freshness expectation (schemas.FeatureSet.FreshFor).
func (s *Server) stale(fs *schemas.FeatureSet, at time.Time, f Freshness) bool {
	c := f.covered()
	return c.IsZero() || at.Sub(c) > fs.FreshFor(s.cfg.StaleAfter)
}

// appendFeatures appends the features object of one entity, in the plan's
// feature order. A value exact only at an instant before the read's at
// (see the read path) carries it as as_of.
func (p *plan) appendFeatures(b []byte, res []result, stale bool) []byte {
	b = append(b, '{')
	for k, o := range p.shape.outs {
		if k > 0 {
			b = append(b, ',')
		}
		b = append(b, p.st.prefix[o]...)
		b = appendResult(b, res[p.shape.order[k]], stale)
	}
	return append(b, '}')
}

// appendResult appends the rest of a feature's object after `{"value":`:
// the value, its status and its as_of, and the closing brace.
func appendResult(b []byte, r result, stale bool) []byte {
	switch {
	case !r.ok:
		b = append(b, `null,"status":"NOT_FOUND"`...)
	case stale:
		b = appendValue(b, r.v)
		b = append(b, `,"status":"STALE"`...)
	default:
		b = appendValue(b, r.v)
		b = append(b, `,"status":"PRESENT"`...)
	}
	if r.asOf != 0 {
		b = append(b, `,"as_of":`...)
		b = appendTime(b, time.UnixMicro(r.asOf))
	}
	return append(b, '}')
}

func appendFreshness(b []byte, f Freshness) []byte {
	b = append(b, `{"batch_watermark":`...)
	b = appendTime(b, f.BatchWatermark)
	b = append(b, `,"stream_latest_tile":`...)
	b = appendTime(b, f.StreamLatestTile)
	b = append(b, `,"stream_watermark":`...)
	b = appendTime(b, f.StreamWatermark)
	return append(b, '}')
}
