// Package serving provides Tandem's serving API: an HTTP handler that
// answers "the features of entity X at instant T" by reading tiles from
// Bigtable and merging, at read time, the batch side (tiles before the
// feature set's batch watermark) with the real-time side (stream tiles from
// the watermark on), over each feature's window ending at T. It also serves
// the loaded definitions, Prometheus metrics and health checks. It never
// imports Beam.
//
// The API (openapi.yaml beside this file is its full description):
//
//	GET  /v1/featuresets                         the loaded definitions
//	GET  /v1/featuresets/{name}                  one definition
//	GET  /v1/features/{featureset}/{entity}      one entity of a single-key set (?features=a,b&at=RFC3339)
//	GET  /v1/features/{featureset}?KEY=...       one entity, each key part a parameter (?user_id=7&merchant=Subway)
//	POST /v1/features/{featureset}               many entities {"entities", "features", "at"}
//	GET  /healthz, /readyz                       open, without an API key
//
// Prometheus metrics are not on this handler: AdminHandler serves them
// (with /healthz and /readyz), for an address of their own.
//
// Every value carries a status: PRESENT, NOT_FOUND (an op with no value
// over an empty window: min, max, mean, last, stddev; the value is null) or
// STALE (a value, but the feature set's data is behind `at` by more than
// the set's freshness expectation, its stale_after; see Server for the
// exact rule).
package serving

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/bigtable"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/serving/apikeys"
)

// Defaults of Config.
const (
	DefaultMaxEntities     = 1000
	DefaultMaxBodyBytes    = 1 << 20
	DefaultStaleAfter      = schemas.DefaultStreamStaleAfter
	DefaultRequestTimeout  = 2 * time.Second
	DefaultMaxClockSkew    = time.Minute
	DefaultMetaRefresh     = time.Second
	DefaultPingTimeout     = time.Second
	DefaultReadParallelism = 4
	DefaultMaxConnections  = 1024
	DefaultMaxConcurrent   = 64
	DefaultMaxInFlight     = 4 << 20
	DefaultQueueTimeout    = 100 * time.Millisecond
	DefaultMaxResponse     = 8 << 20
	DefaultRateLimit       = 1000
	DefaultRateBurst       = 2000
	DefaultAccessLogSample = 0.01
	DefaultReadyCache      = time.Second
	// MaxEntityKeyBytes bounds an entity key (Bigtable row keys are at most
	// 4 KiB).
	MaxEntityKeyBytes = 1024
)

// Config configures a Server. Sets and Table are required; zero values of
// the other fields mean their defaults.
type Config struct {
	// Sets are the feature sets served.
	Sets []*schemas.FeatureSet
	// Table is the Bigtable table that holds their tiles and metadata.
	Table *bigtable.Table
	// Services are the feature services served; every set they use must be
	// among Sets.
	Services []*schemas.Service
	// Keys, when not nil, are the API keys the feature endpoints require.
	Keys *apikeys.Keys
	// MaxEntities bounds the entities of one POST request.
	MaxEntities int
	// MaxBodyBytes bounds a request body (413 above it).
	MaxBodyBytes int64
	// StaleAfter is how far the data of a feature set with a stream
	// source may be behind `at` before values are STALE, when its
	// definition sets no stale_after. A batch-only set without one
	// expects a daily run (schemas.FeatureSet.FreshFor).
	StaleAfter time.Duration
	// RequestTimeout bounds the Bigtable reads of one request; when it
	// expires the request fails with 503. Keep it below the http.Server's
	// WriteTimeout so that the 503 reaches the client.
	RequestTimeout time.Duration
	// MaxClockSkew is how far in the future `at` may be (clients' clocks
	// differ from the server's).
	MaxClockSkew time.Duration
	// MetaRefresh is how often the feature sets' metadata is re-read.
	// Responses use metadata at most 5×MetaRefresh old.
	MetaRefresh time.Duration
	// ReadParallelism bounds the parallel Bigtable reads of one POST
	// request; each reads at least 25 rows.
	ReadParallelism int
	// PingTimeout bounds the Bigtable read of /readyz.
	PingTimeout time.Duration
	// CheckTable, when set, tells what is missing when the read of /readyz
	// finds no table: its error (bigtablestore.CheckTable's one line naming
	// the table, the instance and the command that creates it) is logged
	// and /readyz answers 503 saying the table is not set up.
	CheckTable func(context.Context) error
	// ReadyCache is how long a /readyz answer is reused, so that the open
	// endpoint costs Bigtable at most one read per ReadyCache.
	ReadyCache time.Duration
	// ExposeSources puts the definitions' sources (BigQuery table or query,
	// file glob, Pub/Sub subscription) in GET /v1/featuresets; without it
	// they are empty, as they describe the deployment, not the features.
	ExposeSources bool
	// MaxConnections bounds the open connections of LimitListener.
	MaxConnections int
	// MaxConcurrent bounds the feature requests served at once, and
	// MaxInFlightBytes the body bytes they hold (at least MaxBodyBytes);
	// a request that finds no room within QueueTimeout gets 503 overloaded.
	MaxConcurrent    int
	MaxInFlightBytes int64
	QueueTimeout     time.Duration
	// MaxResponseBytes bounds one response body (400 response_too_large).
	MaxResponseBytes int
	// RateLimit is the requests per second one API key may make, with
	// bursts of RateBurst (429 above it); negative for no limit. It
	// applies only with Keys.
	RateLimit float64
	RateBurst int
	// AccessLogSample is the fraction of requests written to the access
	// log (negative: none); refused requests are logged at a bounded rate
	// regardless (see observe).
	AccessLogSample float64
	// Logger receives the server's logs (slog.Default() if nil).
	Logger *slog.Logger
	// Now is the clock for the default `at` and its checks (time.Now if nil).
	Now func() time.Time
}

// Server is the serving API; it implements http.Handler. Create it with
// New and stop its background metadata refresh with Close.
//
// Status rule. Let T_b be the batch watermark and W the stream watermark
// that the response reports in "freshness" (when no stream watermark was
// ever written, the start of the newest stream tile stands in for it; a
// value never written counts as minus infinity), and C = max(T_b, W): the
// data is known to be current up to C. A feature's status is NOT_FOUND when its op has no
// value over the window (min, max, mean, last, stddev of nothing); else
// STALE when at − C > S; else PRESENT, where S is the set's freshness
// expectation, FeatureSet.FreshFor(Config.StaleAfter): the definition's
// stale_after if set, else Config.StaleAfter (5m by default) for a set with
// a stream source, else 26h plus the set's largest tile for a batch-only
// set refreshed by a daily run. So reads at a past `at`
// that the pipelines have passed are never STALE, a feature set whose
// pipelines never wrote metadata is always STALE, and count, sum and
// approx_count_distinct over an empty window are 0 with PRESENT or STALE.
type Server struct {
	cfg    Config
	tbl    *bigtable.Table
	sets   map[string]*setState
	names  []string
	list   []byte // GET /v1/featuresets for a caller that may read every set
	meta   *metaCache
	m      *metrics
	log    *slog.Logger
	mux    *http.ServeMux
	allow  map[string][]string // path pattern → methods, for the 405s
	adm    *admission
	rates  *keyLimits
	conns  *connTracker
	access *accessLog
	ready  readyCache

	stop context.CancelFunc
	done sync.WaitGroup

	services     map[string]*serviceState // feature services by name
	serviceNames []string
}

var _ http.Handler = (*Server)(nil)

// New validates cfg and returns a Server, whose metadata refresh runs in
// the background until Close.
func New(cfg Config) (*Server, error) {
	if cfg.Table == nil {
		return nil, errors.New("serving: Config.Table is nil")
	}
	if len(cfg.Sets) == 0 {
		return nil, errors.New("serving: no feature sets")
	}
	setDefault(&cfg.MaxEntities, DefaultMaxEntities)
	setDefault(&cfg.MaxBodyBytes, DefaultMaxBodyBytes)
	setDefault(&cfg.StaleAfter, DefaultStaleAfter)
	setDefault(&cfg.RequestTimeout, DefaultRequestTimeout)
	setDefault(&cfg.MaxClockSkew, DefaultMaxClockSkew)
	setDefault(&cfg.MetaRefresh, DefaultMetaRefresh)
	setDefault(&cfg.PingTimeout, DefaultPingTimeout)
	setDefault(&cfg.ReadParallelism, DefaultReadParallelism)
	setDefault(&cfg.ReadyCache, DefaultReadyCache)
	setDefault(&cfg.MaxConnections, DefaultMaxConnections)
	setDefault(&cfg.MaxConcurrent, DefaultMaxConcurrent)
	setDefault(&cfg.MaxInFlightBytes, DefaultMaxInFlight)
	setDefault(&cfg.QueueTimeout, DefaultQueueTimeout)
	setDefault(&cfg.MaxResponseBytes, DefaultMaxResponse)
	setDefault(&cfg.RateLimit, DefaultRateLimit)
	setDefault(&cfg.RateBurst, DefaultRateBurst)
	setDefault(&cfg.AccessLogSample, DefaultAccessLogSample)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, tbl: cfg.Table, sets: make(map[string]*setState), log: cfg.Logger, m: newMetrics()}
	s.adm = newAdmission(cfg, s.m)
	limit := rate.Limit(cfg.RateLimit)
	if cfg.RateLimit < 0 {
		limit = rate.Inf
	}
	s.rates = &keyLimits{limit: limit, burst: cfg.RateBurst, byKey: make(map[*apikeys.Principal]*rate.Limiter)}
	s.conns = &connTracker{max: int64(cfg.MaxConnections), m: s.m, idle: make(map[net.Conn]struct{})}
	s.access = newAccessLog(cfg.AccessLogSample, cfg.Logger, s.m)
	for _, fs := range cfg.Sets {
		if _, dup := s.sets[fs.Name]; dup {
			return nil, fmt.Errorf("serving: feature set %q given twice", fs.Name)
		}
		st, err := newSetState(fs, cfg.ExposeSources, fs.FreshFor(cfg.StaleAfter))
		if err != nil {
			return nil, fmt.Errorf("serving: %w", err)
		}
		s.sets[fs.Name] = st
		s.names = append(s.names, fs.Name)
	}
	if cfg.Keys != nil {
		if err := cfg.Keys.CheckFeatureSets(s.names); err != nil {
			return nil, fmt.Errorf("serving: %w", err)
		}
	}
	s.list = s.appendSetList(nil, nil)
	s.services = make(map[string]*serviceState, len(cfg.Services))
	for _, svc := range cfg.Services {
		if _, dup := s.services[svc.Name]; dup {
			return nil, fmt.Errorf("serving: feature service %q given twice", svc.Name)
		}
		ss, err := s.newServiceState(svc)
		if err != nil {
			return nil, fmt.Errorf("serving: %w", err)
		}
		s.services[svc.Name] = ss
		s.serviceNames = append(s.serviceNames, svc.Name)
	}
	s.meta = newMetaCache(cfg.Table, s.names, 5*cfg.MetaRefresh, max(cfg.MetaRefresh, cfg.RequestTimeout), s.m, s.metaFailed())
	s.routes()
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.done.Go(func() { s.meta.loop(ctx, cfg.MetaRefresh) })
	return s, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// metaFailed logs background metadata failures when they start and when
// they stop, not every second.
func (s *Server) metaFailed() func(error) {
	var mu sync.Mutex
	var last time.Time
	return func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(last) > time.Minute {
			last = time.Now()
			s.log.Warn("metadata refresh failed; serving cached metadata (requests read it themselves once it is too old)", "err", err)
		}
	}
}

// Close stops the background metadata refresh and waits for it. It does not
// close the Bigtable table's client, which the caller owns.
func (s *Server) Close() error {
	s.stop()
	s.done.Wait()
	return nil
}

// ServeHTTP serves the API. A path that is not canonical (empty, "." or
// ".." segments) is a 400 rather than net/http's redirect to the cleaned
// path, which would answer for a different resource (entity "a/../b" is
// not "b") in HTML.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := r.URL.EscapedPath(); r.Method != http.MethodConnect && (p == "" || p[0] != '/' || path.Clean(p) != p) && p != "/" {
		s.writeError(w, r, badInput(ErrBadRequest, "path %s is not canonical (it has empty, . or .. segments); percent-encode / . and .. in entity keys as %%2F %%2E %%2E%%2E", quoteInput(p)))
		return
	}
	s.mux.ServeHTTP(w, r)
}

// routes registers the endpoints. Each path also gets a method-less
// pattern that answers 405 with Allow, and "/" answers 404, both with a
// JSON body.
func (s *Server) routes() {
	s.mux = http.NewServeMux()
	s.allow = make(map[string][]string)
	s.handle("GET /v1/featuresets", true, s.listFeatureSets)
	s.handle("GET /v1/featuresets/{name}", true, s.getFeatureSet)
	s.handle("GET /v1/features/{featureset}/{entity}", true, s.getFeatures)
	s.handle("GET /v1/features/{featureset}", true, s.getFeaturesByKey)
	s.handle("POST /v1/features/{featureset}", true, s.postFeatures)
	s.handle("GET /v1/services", true, s.listServices)
	s.handle("GET /v1/services/{name}", true, s.getService)
	s.handle("POST /v1/services/{name}", true, s.postService)
	s.handle("POST /get-online-features", true, s.feastOnline)
	s.handle("GET /healthz", false, s.healthz)
	s.handle("GET /readyz", false, s.readyz)
	s.methodNotAllowed(s.mux, s.allow)
}

// methodNotAllowed registers on mux, for each path of allow, the 405 of
// the methods not registered, and "/" for the 404 of unknown paths.
func (s *Server) methodNotAllowed(mux *http.ServeMux, allow map[string][]string) {
	for path, methods := range allow {
		allowed := strings.Join(methods, ", ")
		mux.Handle(path, s.observe(path, s.recoverPanic(errorHandler(s, func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Allow", allowed)
			return badInput(ErrMethodNotAllowed, "method %s is not allowed on %s (allowed: %s)", quoteInput(r.Method), path, allowed)
		}))))
	}
	mux.Handle("/", s.observe("/", errorHandler(s, func(http.ResponseWriter, *http.Request) error { return ErrNotFound })))
}

// AdminHandler serves GET /metrics (Prometheus), /healthz and /readyz, for
// an address apart from the API's: the metrics name every feature set and
// describe the process, which API keys must not reveal.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.m.instrument("GET /metrics", s.m.handler()))
	mux.Handle("GET /healthz", s.observe("GET /healthz", errorHandler(s, s.healthz)))
	mux.Handle("GET /readyz", s.observe("GET /readyz", errorHandler(s, s.readyz)))
	s.methodNotAllowed(mux, map[string][]string{"/metrics": {"GET", "HEAD"}, "/healthz": {"GET", "HEAD"}, "/readyz": {"GET", "HEAD"}})
	return mux
}

// handlerFunc is a handler that returns its error for writeError.
type handlerFunc func(http.ResponseWriter, *http.Request) error

func errorHandler(s *Server, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// handle registers h at pattern ("METHOD /path") with metrics, the access
// log and panic recovery; when auth, also the API-key check, the key's
// rate limit and the admission limits (Config.MaxConcurrent and
// MaxInFlightBytes), in that order.
func (s *Server) handle(pattern string, auth bool, h handlerFunc) {
	next := errorHandler(s, h)
	if auth {
		next = s.admit(next)
		if s.cfg.Keys != nil {
			next = s.authenticate(s.rateLimit(next))
		}
	}
	s.mux.Handle(pattern, s.observe(pattern, s.recoverPanic(next)))
	method, path, _ := strings.Cut(pattern, " ")
	s.allow[path] = append(s.allow[path], method)
	if method == http.MethodGet {
		s.allow[path] = append(s.allow[path], http.MethodHead)
	}
}

// recoverPanic turns a panic into a logged 500.
func (s *Server) recoverPanic(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				s.writeError(w, r, fmt.Errorf("panic: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, []byte("{\"status\":\"ok\"}\n"))
	return nil
}

// readyz reports whether Bigtable answers: one read of a feature set's
// metadata row, bounded by PingTimeout, and reused for ReadyCache.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	if err := s.ready.get(s.cfg.ReadyCache, s.checkReady); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, []byte("{\"status\":\"ready\"}\n"))
	return nil
}

// readyCache keeps the last readiness check's result: a burst of /readyz
// calls costs one check, made by the first caller while the others wait.
type readyCache struct {
	mu  sync.Mutex
	at  time.Time
	err error
}

func (c *readyCache) get(ttl time.Duration, check func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || time.Since(c.at) >= ttl {
		c.err = check()
		c.at = time.Now()
	}
	return c.err
}

// checkReady is one readiness check: a read of a feature set's metadata
// row, bounded by PingTimeout. It does not use the request's context, as
// its result serves other requests too.
func (s *Server) checkReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.PingTimeout)
	defer cancel()
	return bounded(ctx, "readiness check", func() error {
		start := time.Now()
		_, err := s.tbl.ReadRow(ctx, schemas.MetaRowKey(s.names[0]), bigtable.RowFilter(bigtable.StripValueFilter()))
		if err != nil {
			s.m.bigtableError(opPing)
			if status.Code(err) == codes.NotFound && s.cfg.CheckTable != nil {
				if cerr := s.cfg.CheckTable(ctx); cerr != nil {
					s.log.Error("readyz: " + cerr.Error())
					return &RequestError{Kind: ErrUnavailable, Message: "the Bigtable table is not set up (or lacks a column family); the server log names it and the scripts/setuptable command that creates it"}
				}
			}
			return bigtableError("readiness check", err)
		}
		s.m.bigtableRead(opPing, time.Since(start))
		return nil
	})
}
