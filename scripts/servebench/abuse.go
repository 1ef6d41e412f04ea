package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/bigtable"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/serving"
	"github.com/tandem-fp/tandem/serving/apikeys"
)

// The abuse run (issue 15): a second server over the same table, with an
// API key and every limit at its default, under what a hostile review did
// to the unbounded server: --abuse_conns idle keep-alive connections,
// --abuse_posts concurrent POSTs of 1000 entity keys of 1 KiB of '<' (each
// 1 MB, whose HTML-safe response is 6.5 MB), and one key sending GETs as
// fast as it can. It reports the peak RSS of this process (server and load
// generator; the emulator is another process) against the RSS before, and
// what the clients got: 503 and 429 rather than growth. Loopback only,
// bounded in count (the flags) and in time (--abuse_duration).

const abuseKey = "servebench-abuse-key-0123456789"

type abuseFlags struct {
	conns    int
	posts    int
	duration time.Duration
}

// abuse runs the abuse run against tbl twice: first with the limits off
// (the baseline: the server before issue 15), then at their defaults.
func abuse(ctx context.Context, f abuseFlags, set *schemas.FeatureSet, tbl *bigtable.Table) error {
	off, err := abuseRun(ctx, f, set, tbl, false)
	if err != nil {
		return err
	}
	on, err := abuseRun(ctx, f, set, tbl, true)
	if err != nil {
		return err
	}
	fmt.Printf("\nabuse: peak RSS growth with the limits at their defaults %d MB, with them off %d MB (%.2f×)\n", on>>10, off>>10, float64(on)/float64(off))
	return nil
}

// abuseRun runs the abuse run once and returns the growth of the peak RSS
// over the RSS before it, in kB.
func abuseRun(ctx context.Context, f abuseFlags, set *schemas.FeatureSet, tbl *bigtable.Table, limits bool) (int64, error) {
	keys, err := apikeys.Parse([]byte(`keys: [{name: abuser, key: "` + abuseKey + `", featuresets: ["*"]}]`))
	if err != nil {
		return 0, err
	}
	cfg := serving.Config{
		Sets: []*schemas.FeatureSet{set}, Table: tbl, Keys: keys,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	}
	label := "limits at their defaults"
	if !limits {
		label = "limits off (baseline)"
		limitsOff(&cfg)
	}
	api, err := serving.New(cfg)
	if err != nil {
		return 0, err
	}
	defer api.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	hs := api.HTTPServer()
	go func() { _ = hs.Serve(api.LimitListener(lis)) }()
	defer hs.Close()
	addr := lis.Addr().String()

	// The body: 1000 keys of 1 KiB, all '<'.
	var body bytes.Buffer
	body.WriteString(`{"entities":[`)
	for i := range 1000 {
		if i > 0 {
			body.WriteByte(',')
		}
		body.WriteByte('"')
		body.WriteString(fmt.Sprintf("%04d", i))
		body.WriteString(strings.Repeat("<", 1020))
		body.WriteByte('"')
	}
	body.WriteString(`]}`)
	post := body.Bytes()

	// The latency runs use --gogc (400) for the emulator's sake; the abuse
	// run measures the server as serve runs it, with Go's default GOGC.
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	runtime.GC()
	debug.FreeOSMemory()
	time.Sleep(500 * time.Millisecond)
	baseRSS, _ := procStatus("VmRSS")
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		fmt.Printf("(cannot reset the peak RSS: %v; peak is of the whole run)\n", err)
	}
	fmt.Printf("\nabuse, %s: server with an API key; the defaults are max_connections %d, max_concurrent %d, max_in_flight_bytes %d, queue_timeout %s, max_response_bytes %d, rate_limit %d/s burst %d\n",
		label, serving.DefaultMaxConnections, serving.DefaultMaxConcurrent, serving.DefaultMaxInFlight, serving.DefaultQueueTimeout, serving.DefaultMaxResponse, serving.DefaultRateLimit, serving.DefaultRateBurst)
	fmt.Printf("abuse: %d idle keep-alive connections, %d concurrent POSTs of %d bytes (1000 keys of 1 KiB of '<'), one key's GET flood, for %s\n",
		f.conns, f.posts, len(post), f.duration)

	var peakSampled atomic.Int64
	stopSample := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSample:
				return
			case <-t.C:
				if v, ok := procStatus("VmRSS"); ok && v > peakSampled.Load() {
					peakSampled.Store(v)
				}
			}
		}
	})

	// 1. Idle connections: each sends one request and stays open.
	var idleOK, idleRefused, idleFailed atomic.Int64
	var conns []net.Conn
	var connMu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for range f.conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				idleFailed.Add(1)
				return
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				idleFailed.Add(1)
				c.Close()
				return
			}
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			switch {
			case err != nil:
				idleFailed.Add(1)
				c.Close()
				return
			case res.StatusCode == http.StatusServiceUnavailable:
				idleRefused.Add(1)
			case res.StatusCode == http.StatusOK:
				idleOK.Add(1)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			_ = c.SetDeadline(time.Time{})
			connMu.Lock()
			conns = append(conns, c)
			connMu.Unlock()
		})
	}
	wg.Wait()
	openAfterIdle := metricValue(api, "tandem_http_open_connections")
	fmt.Printf("abuse: idle connections: %d answered 200, %d answered 503 (cap reached, none idle), %d failed; server holds %g open (cap %d when the limits are on: beyond it idle ones are closed for newer)\n",
		idleOK.Load(), idleRefused.Load(), idleFailed.Load(), openAfterIdle, serving.DefaultMaxConnections)

	// 2. Concurrent large POSTs and a GET flood, on fresh connections (the
	// idle ones above are still open, so these evict them).
	codes := newCodeCount()
	ctx, cancel := context.WithTimeout(ctx, f.duration)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: f.posts + 8, DisableCompression: true}, Timeout: 30 * time.Second}
	var posted, postedBytes atomic.Int64
	for range f.posts {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/features/bench", bytes.NewReader(post))
				req.Header.Set("Authorization", "Bearer "+abuseKey)
				res, err := hc.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						codes.add("error")
					}
					continue
				}
				n, _ := io.Copy(io.Discard, res.Body)
				res.Body.Close()
				codes.add(strconv.Itoa(res.StatusCode))
				posted.Add(1)
				postedBytes.Add(n)
				if res.StatusCode == http.StatusServiceUnavailable {
					time.Sleep(10 * time.Millisecond) // what a client honouring Retry-After would not even do
				}
			}
		})
	}
	wg.Wait()
	postRejected := metricValue(api, `tandem_http_rejected_total{reason="overloaded"}`)

	// 3. One key's GET flood, alone, for 3 s: beyond its rate it gets 429.
	fctx, fcancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer fcancel()
	gets := newCodeCount()
	for range 16 {
		wg.Go(func() {
			for fctx.Err() == nil {
				req, _ := http.NewRequestWithContext(fctx, http.MethodGet, "http://"+addr+"/v1/features/bench/"+entityKey(0), nil)
				req.Header.Set("Authorization", "Bearer "+abuseKey)
				res, err := hc.Do(req)
				if err != nil {
					if fctx.Err() == nil {
						gets.add("error")
					}
					continue
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				gets.add(strconv.Itoa(res.StatusCode))
			}
		})
	}
	wg.Wait()
	close(stopSample)
	sampler.Wait()
	for _, c := range conns {
		c.Close()
	}
	peakHWM, hwmOK := procStatus("VmHWM")
	fmt.Printf("abuse: POSTs: %s (%d responses, %.1f MB of bodies received)\n", codes, posted.Load(), float64(postedBytes.Load())/1e6)
	fmt.Printf("abuse: (overloaded 503s during the POSTs: %g)\n", postRejected)
	fmt.Printf("abuse: GET flood, 16 clients with the same key for 3s: %s\n", gets)
	fmt.Printf("abuse: tandem_http_rejected_total: connections %g, overloaded %g, rate_limited %g, response_too_large %g\n",
		metricValue(api, `tandem_http_rejected_total{reason="connections"}`), metricValue(api, `tandem_http_rejected_total{reason="overloaded"}`),
		metricValue(api, `tandem_http_rejected_total{reason="rate_limited"}`), metricValue(api, `tandem_http_rejected_total{reason="response_too_large"}`))
	peak := peakSampled.Load()
	if hwmOK && peakHWM > peak {
		peak = peakHWM
	}
	fmt.Printf("abuse: RSS before %d MB, peak during %d MB (+%d MB; this process: server and load generator)\n",
		baseRSS>>10, peak>>10, (peak-baseRSS)>>10)
	hc.CloseIdleConnections()
	return peak - baseRSS, nil
}

// procStatus returns a kB field of /proc/self/status.
func procStatus(field string) (int64, bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// metricValue reads one sample of the server's metrics.
func metricValue(api *serving.Server, name string) float64 {
	rec := &bodyRecorder{h: make(http.Header)}
	req, _ := http.NewRequest(http.MethodGet, "/metrics", nil)
	api.AdminHandler().ServeHTTP(rec, req)
	for l := range strings.SplitSeq(rec.b.String(), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

type bodyRecorder struct {
	h http.Header
	b bytes.Buffer
}

func (r *bodyRecorder) Header() http.Header         { return r.h }
func (r *bodyRecorder) Write(p []byte) (int, error) { return r.b.Write(p) }
func (r *bodyRecorder) WriteHeader(int)             {}

// codeCount counts responses by status.
type codeCount struct {
	mu sync.Mutex
	n  map[string]int
}

func newCodeCount() *codeCount { return &codeCount{n: make(map[string]int)} }

func (c *codeCount) add(code string) {
	c.mu.Lock()
	c.n[code]++
	c.mu.Unlock()
}

func (c *codeCount) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	for _, code := range []string{"200", "400", "413", "429", "503", "error"} {
		if c.n[code] > 0 {
			parts = append(parts, fmt.Sprintf("%s×%d", code, c.n[code]))
		}
	}
	for code, n := range c.n {
		if !strings.Contains("200 400 413 429 503 error", code) {
			parts = append(parts, fmt.Sprintf("%s×%d", code, n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// limitsOff sets cfg's limits so high that none applies: the server as it
// was before issue 15.
func limitsOff(cfg *serving.Config) {
	cfg.MaxConnections, cfg.MaxConcurrent, cfg.MaxInFlightBytes = 1<<30, 1<<30, 1<<50
	cfg.MaxResponseBytes, cfg.RateLimit = 1<<30, -1
}
