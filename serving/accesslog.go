package serving

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"time"

	"golang.org/x/time/rate"
)

// The access log: one INFO line "access" per logged request with its
// method, route pattern, status, latency, response bytes, client address
// and the API key's name (never the key). A fraction
// Config.AccessLogSample of the requests is logged, chosen at random;
// refused requests (401, 403, 429) are always logged, up to
// refusedLogPerSecond lines a second (bursts of refusedLogBurst), and
// counted in tandem_access_log_suppressed_total beyond it, so that a flood
// of bad keys is visible without flooding the log.
const (
	refusedLogPerSecond = 10
	refusedLogBurst     = 50
)

// reqInfo is what the access log learns from the handlers inside it.
type reqInfo struct {
	key string // the API key's name, once authenticated
}

type reqInfoKey struct{}

// setKeyName records the request's API key name for the access log.
func setKeyName(r *http.Request, name string) {
	if info, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
		info.key = name
	}
}

type accessLog struct {
	sample  float64
	refused *rate.Limiter
	log     *slog.Logger
	m       *metrics
}

func newAccessLog(sample float64, log *slog.Logger, m *metrics) *accessLog {
	return &accessLog{sample: sample, refused: rate.NewLimiter(refusedLogPerSecond, refusedLogBurst), log: log, m: m}
}

// observe records route's requests in the metrics and the access log.
func (s *Server) observe(route string, next http.Handler) http.Handler {
	a := s.access
	return s.m.instrument(route, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &reqInfo{}
		sw := w.(*statusWriter) // instrument's
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), reqInfoKey{}, info)))
		switch sw.status {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests:
			if !a.refused.Allow() {
				a.m.logSuppressed.Inc()
				return
			}
		default:
			if a.sample <= 0 || rand.Float64() >= a.sample {
				return
			}
		}
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		attrs := []slog.Attr{
			slog.String("method", r.Method), slog.String("route", route), slog.Int("status", sw.status),
			slog.Duration("latency", time.Since(start)), slog.Int64("bytes", sw.bytes), slog.String("remote", host),
		}
		if info.key != "" {
			attrs = append(attrs, slog.String("key", info.key))
		}
		a.log.LogAttrs(r.Context(), slog.LevelInfo, "access", attrs...)
	}))
}
