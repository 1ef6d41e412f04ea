package serving

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Bigtable operations, the op label of the Bigtable metrics.
const (
	opReadRow  = "read_row"
	opReadRows = "read_rows"
	opReadMeta = "read_meta"
	opPing     = "ping"
)

// metrics are the server's Prometheus metrics, in a registry of its own so
// that several servers can live in one process (tests, benchmarks).
type metrics struct {
	reg             *prometheus.Registry
	requests        *prometheus.HistogramVec
	bigtableReads   *prometheus.HistogramVec
	bigtableErrors  *prometheus.CounterVec
	batchWatermark  *prometheus.GaugeVec
	streamLatest    *prometheus.GaugeVec
	streamWatermark *prometheus.GaugeVec
	inFlight        prometheus.Gauge
	connections     prometheus.Gauge
	rejected        *prometheus.CounterVec
	logSuppressed   prometheus.Counter
}

// latencyBuckets span 100µs to 10s.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tandem_http_request_duration_seconds",
			Help:    "Latency of HTTP requests by route pattern and status code.",
			Buckets: latencyBuckets,
		}, []string{"route", "code"}),
		bigtableReads: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tandem_bigtable_read_duration_seconds",
			Help:    "Latency of successful Bigtable reads by operation (read_row, read_rows, read_meta, ping).",
			Buckets: latencyBuckets,
		}, []string{"op"}),
		bigtableErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_bigtable_read_errors_total",
			Help: "Failed Bigtable reads by operation.",
		}, []string{"op"}),
		batchWatermark: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_batch_watermark_seconds",
			Help: "Batch watermark of each feature set, Unix seconds (0: never written), as last read.",
		}, []string{"featureset"}),
		streamLatest: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_stream_latest_tile_seconds",
			Help: "Start of the newest stream tile of each feature set, Unix seconds (0: never written), as last read.",
		}, []string{"featureset"}),
		streamWatermark: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_stream_watermark_seconds",
			Help: "Stream watermark of each feature set, Unix seconds (0: never written), as last read.",
		}, []string{"featureset"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_http_in_flight_requests",
			Help: "Feature requests being served (admitted within Config.MaxConcurrent and MaxInFlightBytes).",
		}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_http_open_connections",
			Help: "Open connections of the listener limited by Config.MaxConnections.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_http_rejected_total",
			Help: "Requests or connections refused by a limit: connections (503, closed), overloaded (503), rate_limited (429), response_too_large (400).",
		}, []string{"reason"}),
		logSuppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_access_log_suppressed_total",
			Help: "Refused requests (401, 403, 429, 503) not written to the access log because more than its bounded rate came.",
		}),
	}
	m.reg.MustRegister(m.requests, m.bigtableReads, m.bigtableErrors, m.batchWatermark, m.streamLatest, m.streamWatermark,
		m.inFlight, m.connections, m.rejected, m.logSuppressed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, op := range []string{opReadRow, opReadRows, opReadMeta, opPing} {
		m.bigtableErrors.WithLabelValues(op)
	}
	for _, r := range []string{rejectConnections, rejectOverloaded, rejectRateLimited, rejectResponse} {
		m.rejected.WithLabelValues(r)
	}
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) bigtableRead(op string, d time.Duration) {
	m.bigtableReads.WithLabelValues(op).Observe(d.Seconds())
}

func (m *metrics) bigtableError(op string) { m.bigtableErrors.WithLabelValues(op).Inc() }

func (m *metrics) reject(reason string) { m.rejected.WithLabelValues(reason).Inc() }

func (m *metrics) setFreshness(set string, f Freshness) {
	m.batchWatermark.WithLabelValues(set).Set(unixSeconds(f.BatchWatermark))
	m.streamLatest.WithLabelValues(set).Set(unixSeconds(f.StreamLatestTile))
	m.streamWatermark.WithLabelValues(set).Set(unixSeconds(f.StreamWatermark))
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixMicro()) / 1e6
}

// instrument records the latency of each request to route by status code.
func (m *metrics) instrument(route string, next http.Handler) http.Handler {
	obs := m.requests.MustCurryWith(prometheus.Labels{"route": route})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			obs.WithLabelValues(statusText(sw.status)).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(sw, r)
	})
}

// statusWriter remembers the status code and the bytes written.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var statusTexts = func() map[int]string {
	m := make(map[int]string)
	for c := 100; c < 600; c++ {
		m[c] = strconv.Itoa(c)
	}
	return m
}()

func statusText(code int) string {
	if s, ok := statusTexts[code]; ok {
		return s
	}
	return strconv.Itoa(code)
}
