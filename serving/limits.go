package serving

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"

	"github.com/tandem-fp/tandem/serving/apikeys"
)

// Limits under load and abuse. A server is bounded by four caps, each
// configurable (Config) and each visible in the metrics:
//
//   - connections (Config.MaxConnections, with LimitListener): beyond the
//     cap an idle keep-alive connection is closed to make room, and when
//     none is idle the new connection gets a 503 and is closed;
//   - feature requests served at once (Config.MaxConcurrent) and the body
//     bytes they may hold (Config.MaxInFlightBytes, by Content-Length, or
//     MaxBodyBytes when it is unknown): a request waits up to
//     Config.QueueTimeout for room, then gets 503 overloaded with
//     Retry-After;
//   - the requests per second of one API key (Config.RateLimit,
//     Config.RateBurst): 429 rate_limited with Retry-After;
//   - one response's size (Config.MaxResponseBytes): 400
//     response_too_large, asking for a smaller request.
//
// So the memory the requests hold is bounded by the limits rather than by
// the clients: about MaxInFlightBytes times a small factor for decoding, plus
// MaxConcurrent responses.

// Reasons of tandem_http_rejected_total.
const (
	rejectConnections = "connections"
	rejectOverloaded  = "overloaded"
	rejectRateLimited = "rate_limited"
	rejectResponse    = "response_too_large"
)

// admission bounds the feature requests in flight: their number and the
// body bytes they may hold.
type admission struct {
	count   *semaphore.Weighted
	bytes   *semaphore.Weighted
	maxBody int64
	wait    time.Duration
	m       *metrics
}

func newAdmission(cfg Config, m *metrics) *admission {
	return &admission{
		count:   semaphore.NewWeighted(int64(cfg.MaxConcurrent)),
		bytes:   semaphore.NewWeighted(max(cfg.MaxInFlightBytes, cfg.MaxBodyBytes)),
		maxBody: cfg.MaxBodyBytes,
		wait:    cfg.QueueTimeout,
		m:       m,
	}
}

// cost is the body bytes a request is admitted for: its Content-Length, or
// the most it may send when that is not known.
func (a *admission) cost(r *http.Request) int64 {
	if r.ContentLength >= 0 && r.ContentLength <= a.maxBody {
		return r.ContentLength
	}
	if r.Body == nil || r.Body == http.NoBody {
		return 0
	}
	return a.maxBody
}

// admit runs next when there is room for r within the queue timeout, and
// answers 503 overloaded otherwise.
func (s *Server) admit(next http.Handler) http.Handler {
	a := s.adm
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := a.cost(r)
		if !a.count.TryAcquire(1) || !a.tryBytes(n) {
			if err := a.acquire(r.Context(), n); err != nil {
				s.m.reject(rejectOverloaded)
				s.writeError(w, r, badInput(ErrOverloaded, "the server is busy: more than %d requests in flight or %d body bytes; retry after %s s", s.cfg.MaxConcurrent, max(s.cfg.MaxInFlightBytes, s.cfg.MaxBodyBytes), retryAfterSeconds))
				return
			}
		}
		s.m.inFlight.Inc()
		defer func() {
			s.m.inFlight.Dec()
			if n > 0 {
				a.bytes.Release(n)
			}
			a.count.Release(1)
		}()
		next.ServeHTTP(w, r)
	})
}

// tryBytes takes n bytes if free, releasing the count slot taken before
// when not, so that acquire can wait for both in order. A request without
// a body takes none and never waits behind those with one.
func (a *admission) tryBytes(n int64) bool {
	if n == 0 || a.bytes.TryAcquire(n) {
		return true
	}
	a.count.Release(1)
	return false
}

// acquire waits up to the queue timeout for a count slot and n bytes.
func (a *admission) acquire(ctx context.Context, n int64) error {
	ctx, cancel := context.WithTimeout(ctx, a.wait)
	defer cancel()
	if err := a.count.Acquire(ctx, 1); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	if err := a.bytes.Acquire(ctx, n); err != nil {
		a.count.Release(1)
		return err
	}
	return nil
}

// keyLimits are the per-key rate limiters, made on first use.
type keyLimits struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	byKey map[*apikeys.Principal]*rate.Limiter
}

func (k *keyLimits) limiter(p *apikeys.Principal) *rate.Limiter {
	k.mu.Lock()
	defer k.mu.Unlock()
	l, ok := k.byKey[p]
	if !ok {
		l = rate.NewLimiter(k.limit, k.burst)
		k.byKey[p] = l
	}
	return l
}

// rateLimit answers 429 when the request's API key is over its rate.
func (s *Server) rateLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := r.Context().Value(principalKey{}).(*apikeys.Principal)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		l := s.rates.limiter(p)
		now := time.Now()
		res := l.ReserveN(now, 1)
		if d := res.DelayFrom(now); d > 0 {
			res.CancelAt(now)
			s.m.reject(rejectRateLimited)
			secs := int(math.Ceil(d.Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
			s.writeError(w, r, badInput(ErrRateLimited, "API key %s is over its rate of %g requests per second (burst %d); retry after %d s", p.Name, float64(s.rates.limit), s.rates.burst, max(secs, 1)))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// LimitListener wraps l so that at most Config.MaxConnections connections
// accepted from it are open at once. At the cap it closes an idle
// keep-alive connection (one waiting for its next request) to make room;
// when every connection is busy, it answers the new one with a 503 JSON
// error and closes it. Serve the listener with an http.Server whose
// ConnState is the one HTTPServer sets, which tells it which connections
// are idle.
func (s *Server) LimitListener(l net.Listener) net.Listener {
	return &limitListener{Listener: l, s: s}
}

// HTTPServer returns an http.Server for s: request header, read, write and
// idle timeouts (the write timeout 5 s above Config.RequestTimeout, so that
// a 503 for a slow Bigtable reaches the client), MaxHeaderBytes of 64 KiB,
// net/http's own errors in the log, and the ConnState hook of
// LimitListener. Serve it on s.LimitListener(lis).
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      s.cfg.RequestTimeout + 5*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ConnState:         s.conns.track,
	}
}

// MaxHeaderBytes is the http.Server.MaxHeaderBytes of HTTPServer. Headers
// beyond it get net/http's own 431, in plain text (see openapi.yaml).
const MaxHeaderBytes = 64 << 10

// connTracker counts the open connections of LimitListener and knows which
// are idle.
type connTracker struct {
	max  int64
	open atomic.Int64
	m    *metrics
	mu   sync.Mutex
	idle map[net.Conn]struct{}
}

func (t *connTracker) track(c net.Conn, st http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st == http.StateIdle {
		t.idle[c] = struct{}{}
	} else {
		delete(t.idle, c)
	}
}

// evictIdle closes one idle connection, reporting whether there was one.
func (t *connTracker) evictIdle() bool {
	t.mu.Lock()
	var victim net.Conn
	for c := range t.idle {
		victim = c
		delete(t.idle, c)
		break
	}
	t.mu.Unlock()
	if victim == nil {
		return false
	}
	_ = victim.Close() // the server's read of its next request fails and it lets go
	return true
}

type limitListener struct {
	net.Listener
	s *Server
}

// overloadedResponse is what a connection beyond the cap receives.
var overloadedResponse = func() []byte {
	body := `{"error":{"code":"overloaded","message":"too many open connections; retry later"}}` + "\n"
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: " + retryAfterSeconds +
		"\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

func (l *limitListener) Accept() (net.Conn, error) {
	t := l.s.conns
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if t.open.Add(1) <= t.max || (t.evictIdle() && t.open.Load() <= t.max) {
			t.m.connections.Inc()
			return &limitedConn{Conn: c, t: t}, nil
		}
		t.open.Add(-1)
		t.m.reject(rejectConnections)
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = c.Write(overloadedResponse) // a fresh socket's buffer takes it at once
		_ = c.Close()
	}
}

// limitedConn gives its slot back when closed, once.
type limitedConn struct {
	net.Conn
	t    *connTracker
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.t.open.Add(-1)
		c.t.m.connections.Dec()
		c.t.track(c, http.StateClosed)
	})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
