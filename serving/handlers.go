package serving

import (
	"context"
	"fmt"
	"net/http"
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

// getFeatures serves GET /v1/features/{featureset}/{entity}.
func (s *Server) getFeatures(w http.ResponseWriter, r *http.Request) error {
	st, err := s.featureSet(r, r.PathValue("featureset"))
	if err != nil {
		return err
	}
	entity := r.PathValue("entity")
	if err := checkEntity(entity, "entity"); err != nil {
		return err
	}
	q, err := parseQuery(r, "features", "at")
	if err != nil {
		return err
	}
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
	b = appendString(b, entity)
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
	Entities []string `json:"entities"`
	Features []string `json:"features"`
	At       string   `json:"at"`
}

// postFeatures serves POST /v1/features/{featureset}.
func (s *Server) postFeatures(w http.ResponseWriter, r *http.Request) error {
	st, err := s.featureSet(r, r.PathValue("featureset"))
	if err != nil {
		return err
	}
	req, err := s.decodeBatch(w, r)
	if err != nil {
		return err
	}
	switch {
	case req.Entities == nil:
		return badInput(ErrBadRequest, `missing "entities": give a list of entity keys`)
	case len(req.Entities) == 0:
		return badInput(ErrBadRequest, `"entities" is empty: give at least one entity key`)
	case len(req.Entities) > s.cfg.MaxEntities:
		return badInput(ErrTooManyEntities, "%d entities, more than the %d one request may read; split the request", len(req.Entities), s.cfg.MaxEntities)
	}
	// Read each distinct entity once; answer in request order.
	unique := make([]string, 0, len(req.Entities))
	pos := make([]int, len(req.Entities))
	seen := make(map[string]int, len(req.Entities))
	for i, e := range req.Entities {
		if err := checkEntity(e, fmt.Sprintf("entities[%d]", i)); err != nil {
			return err
		}
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
		b = appendString(b, e)
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
// matched case-sensitively, each at most once.
func (s *Server) decodeBatch(w http.ResponseWriter, r *http.Request) (batchRequest, error) {
	var req batchRequest
	data, err := readBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		return req, err
	}
	err = decodeObject(data, `{"entities": [...], "features": [...], "at": "..."}`,
		stringsField("entities", &req.Entities), stringsField("features", &req.Features), stringField("at", &req.At))
	return req, err
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
