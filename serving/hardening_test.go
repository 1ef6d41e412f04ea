package serving

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tandem-fp/tandem/schemas"
)

// Tests of issue 15's points 5, 7–10 and 12: errors of the HTTP layer are
// JSON, metrics and sources stay off the API, and the limits answer 503,
// 429 or 400 rather than letting clients grow the process.

func TestHTTPLayerErrorsAreJSON(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, method, path string
		status             int
		code, message      string
	}{
		{"empty segment", "GET", "/v1//featuresets", 400, "bad_request", `path "/v1//featuresets" is not canonical`},
		{"dot-dot in entity", "GET", "/v1/features/cards/a/../b", 400, "bad_request", "not canonical"},
		{"dot segment", "GET", "/v1/./featuresets", 400, "bad_request", "not canonical"},
		{"trailing dot-dot", "GET", "/v1/features/cards/..", 400, "bad_request", "not canonical"},
		{"unknown path", "GET", "/nope", 404, "not_found", "no such endpoint"},
		{"wrong method", "PUT", "/v1/featuresets", 405, "method_not_allowed", `method "PUT" is not allowed on /v1/featuresets (allowed: GET, HEAD)`},
		{"wrong method on readyz", "POST", "/readyz", 405, "method_not_allowed", "allowed: GET, HEAD"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, "")
			if r.status != tc.status || r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("%s %s: %d %s, want %d JSON: %s", tc.method, tc.path, r.status, r.header.Get("Content-Type"), tc.status, r.raw)
			}
			errObj, _ := r.body["error"].(map[string]any)
			if msg, _ := errObj["message"].(string); errObj["code"] != tc.code || !strings.Contains(msg, tc.message) {
				t.Errorf("error %v, want code %s and a message with %q", errObj, tc.code, tc.message)
			}
			if r.header.Get("Location") != "" {
				t.Errorf("redirected to %s", r.header.Get("Location"))
			}
		})
	}
	// Percent-encoded dots are an entity key, not a path segment.
	if r := e.get("/v1/features/cards/%2E%2E"); r.status != http.StatusOK || r.body["entity"] != ".." {
		t.Errorf("GET .../%%2E%%2E = %d %s, want 200 for entity ..", r.status, r.raw)
	}

	// The documented exception: net/http answers headers above
	// MaxHeaderBytes itself, in plain text, before any handler runs.
	addr := serveLimited(t, e.srv)
	status, header, _ := rawRequest(t, addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 2*MaxHeaderBytes)+"\r\n\r\n")
	if status != http.StatusRequestHeaderFieldsTooLarge || !strings.HasPrefix(header.Get("Content-Type"), "text/plain") {
		t.Errorf("oversized header: %d %s, want net/http's 431 in text/plain as openapi.yaml says", status, header.Get("Content-Type"))
	}
}

// serveLimited serves srv like serve does: HTTPServer on LimitListener.
func serveLimited(t *testing.T, srv *Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := srv.HTTPServer()
	go func() { _ = hs.Serve(srv.LimitListener(lis)) }()
	t.Cleanup(func() { _ = hs.Close() })
	return lis.Addr().String()
}

// rawRequest writes req on a new connection and reads one response.
func rawRequest(t *testing.T, addr, req string) (int, http.Header, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return readResponse(t, bufio.NewReader(c))
}

func readResponse(t *testing.T, br *bufio.Reader) (int, http.Header, string) {
	t.Helper()
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

func TestMetricsOnlyOnAdmin(t *testing.T) {
	e := newEnv(t)
	e.syncMeta() // the gauges exist once the metadata was read
	if r := e.get("/metrics"); r.status != http.StatusNotFound || !strings.Contains(r.raw, "not_found") {
		t.Errorf("GET /metrics on the API = %d %s, want a JSON 404", r.status, r.raw)
	}
	if m := e.metrics(); !strings.Contains(m, `tandem_batch_watermark_seconds{featureset="cards"}`) {
		t.Errorf("admin /metrics lacks the feature-set gauges:\n%.500s", m)
	}
	res, err := e.admin.Client().Get(e.admin.URL + "/v1/featuresets")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("the admin handler serves the API: %d", res.StatusCode)
	}
}

func TestDefinitionHidesSources(t *testing.T) {
	withSources := func(c *Config) {
		fs := *c.Sets[0]
		fs.Sources = schemas.Sources{
			Batch:  schemas.BatchSource{Files: "/srv/secret/cards-*.jsonl", BigQueryQuery: "SELECT * FROM `prod.payments.cards`"},
			Stream: schemas.StreamSource{Subscription: "projects/prod/subscriptions/cards"},
		}
		fs.File = "/srv/defs/cards.yaml"
		c.Sets = []*schemas.FeatureSet{&fs, c.Sets[1]}
	}
	secrets := []string{"/srv/secret", "prod.payments", "projects/prod", "/srv/defs"}
	for _, expose := range []bool{false, true} {
		e := newEnv(t, withSources, func(c *Config) { c.ExposeSources = expose })
		for _, path := range []string{"/v1/featuresets/cards", "/v1/featuresets"} {
			r := e.get(path)
			if r.status != http.StatusOK {
				t.Fatalf("GET %s: %d %s", path, r.status, r.raw)
			}
			for _, s := range secrets[:3] {
				if strings.Contains(r.raw, s) != expose {
					t.Errorf("ExposeSources %v: GET %s shows %q: %v, want %v", expose, path, s, !expose, expose)
				}
			}
			if strings.Contains(r.raw, secrets[3]) {
				t.Errorf("GET %s shows the definition's file path", path)
			}
		}
	}
}

// holdAdmission starts a POST whose chunked body never ends, so that it
// holds one request slot and MaxBodyBytes of the in-flight budget until
// the returned function is called.
func holdAdmission(t *testing.T, e *testEnv) func() {
	t.Helper()
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/v1/features/cards", pr)
		if res, err := e.http.Client().Do(req); err == nil {
			res.Body.Close()
		}
	}()
	_, _ = pw.Write([]byte(`{"entities":[`))
	waitMetric(t, e, "tandem_http_in_flight_requests 1")
	return func() { _ = pw.CloseWithError(io.ErrUnexpectedEOF); <-done }
}

func TestOverloaded(t *testing.T) {
	t.Run("requests", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.MaxConcurrent = 1; c.QueueTimeout = 20 * time.Millisecond })
		release := holdAdmission(t, e)
		r := e.get("/v1/features/cards/c1")
		release()
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "1" || !strings.Contains(r.raw, `"code":"overloaded"`) ||
			!strings.Contains(r.raw, "more than 1 requests in flight") {
			t.Errorf("GET while at MaxConcurrent = %d %v %s, want 503 overloaded with Retry-After", r.status, r.header, r.raw)
		}
		if r := e.get("/healthz"); r.status != http.StatusOK {
			t.Errorf("healthz is limited: %d", r.status)
		}
		if r := e.get("/v1/features/cards/c1"); r.status != http.StatusOK {
			t.Errorf("after the held request: %d %s", r.status, r.raw)
		}
		if !strings.Contains(e.metrics(), `tandem_http_rejected_total{reason="overloaded"} 1`) {
			t.Error("overloaded not counted")
		}
	})
	t.Run("body bytes", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.MaxInFlightBytes = 1; c.QueueTimeout = 20 * time.Millisecond })
		release := holdAdmission(t, e) // holds MaxBodyBytes, the whole budget
		post := e.do(http.MethodPost, "/v1/features/cards", `{"entities":["c1"]}`)
		get := e.get("/v1/features/cards/c1")
		release()
		if post.status != http.StatusServiceUnavailable || !strings.Contains(post.raw, `"code":"overloaded"`) {
			t.Errorf("POST while the body budget is held = %d %s, want 503 overloaded", post.status, post.raw)
		}
		if get.status != http.StatusOK {
			t.Errorf("a GET, which has no body, = %d %s, want 200", get.status, get.raw)
		}
	})
}

func TestRateLimit(t *testing.T) {
	keys := writeKeys(t, `
keys:
  - {name: scorer, key: "scorer-key-0123456789", featuresets: ["*"]}
  - {name: other, key: "other-key-01234567890", featuresets: ["*"]}
`)
	e := newEnv(t, func(c *Config) { c.Keys = keys; c.RateLimit = 0.5; c.RateBurst = 2 })
	bearer := func(k string) []string { return []string{"Authorization", "Bearer " + k} }
	for i, want := range []int{200, 200, 429, 429} {
		r := e.get("/v1/features/cards/c1", bearer("scorer-key-0123456789")...)
		if r.status != want {
			t.Fatalf("request %d: %d %s, want %d", i, r.status, r.raw, want)
		}
		if want == 429 && (r.header.Get("Retry-After") != "2" || !strings.Contains(r.raw, `"code":"rate_limited"`) ||
			!strings.Contains(r.raw, "API key scorer is over its rate of 0.5 requests per second (burst 2)")) {
			t.Errorf("429: Retry-After %q, body %s", r.header.Get("Retry-After"), r.raw)
		}
	}
	if r := e.get("/v1/features/cards/c1", bearer("other-key-01234567890")...); r.status != http.StatusOK {
		t.Errorf("another key is limited too: %d", r.status)
	}
	if !strings.Contains(e.metrics(), `tandem_http_rejected_total{reason="rate_limited"} 2`) {
		t.Error("rate_limited not counted")
	}
}

func TestResponseTooLarge(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxResponseBytes = 4000 })
	var ents []string
	for i := range 40 {
		ents = append(ents, fmt.Sprintf(`"card-%03d"`, i))
	}
	r := e.do(http.MethodPost, "/v1/features/cards", `{"entities":[`+strings.Join(ents, ",")+`]}`)
	if r.status != http.StatusBadRequest || !strings.Contains(r.raw, `"code":"response_too_large"`) ||
		!strings.Contains(r.raw, "the response for 40 entities would be larger than 4000 bytes") {
		t.Errorf("POST of 40 entities = %d %s, want 400 response_too_large", r.status, r.raw)
	}
	if r := e.do(http.MethodPost, "/v1/features/cards", `{"entities":["c1"]}`); r.status != http.StatusOK {
		t.Errorf("a small POST = %d %s", r.status, r.raw)
	}
}

func TestConnectionLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxConnections = 2 })
	addr := serveLimited(t, e.srv)
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return c, bufio.NewReader(c)
	}
	const get = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
	// Two keep-alive connections, idle after one request each.
	type conn struct {
		c  net.Conn
		br *bufio.Reader
	}
	var idle []conn
	for range 2 {
		c, br := dial()
		_, _ = io.WriteString(c, get)
		if status, _, _ := readResponse(t, br); status != 200 {
			t.Fatalf("status %d", status)
		}
		idle = append(idle, conn{c, br})
	}
	// A third connection evicts an idle one instead of waiting.
	c3, br3 := dial()
	_, _ = io.WriteString(c3, get)
	if status, _, _ := readResponse(t, br3); status != 200 {
		t.Fatalf("third connection: status %d, want 200 after evicting an idle one", status)
	}
	evicted := 0
	for _, ic := range idle {
		_ = ic.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		var ne net.Error
		if _, err := ic.br.ReadByte(); !errors.As(err, &ne) || !ne.Timeout() { // closed by the server
			evicted++
		}
	}
	if evicted != 1 {
		t.Errorf("%d idle connections closed, want 1", evicted)
	}
	for _, ic := range idle {
		ic.c.Close()
	}
	waitMetric(t, e, "tandem_http_open_connections 1")
	// Both open connections busy, in a handler (a POST whose chunked body
	// has not ended): a new connection gets 503.
	c4, _ := dial()
	const post = "POST /v1/features/cards HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"ent\r\n"
	_, _ = io.WriteString(c4, post)
	_, _ = io.WriteString(c3, post)
	waitMetric(t, e, "tandem_http_in_flight_requests 2")
	_, br5 := dial()
	status, header, body := readResponse(t, br5)
	if status != http.StatusServiceUnavailable || header.Get("Retry-After") != "1" || !strings.Contains(body, `"code":"overloaded"`) {
		t.Errorf("connection beyond the cap = %d %v %s, want 503 overloaded", status, header, body)
	}
	if m := e.metrics(); !strings.Contains(m, `tandem_http_rejected_total{reason="connections"} 1`) || !strings.Contains(m, "tandem_http_open_connections 2") {
		t.Errorf("connection metrics:\n%s", grepLines(m, "tandem_http_"))
	}
}

// waitMetric waits until the metrics hold the line want.
func waitMetric(t *testing.T, e *testEnv, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(e.metrics(), want+"\n") {
		if time.Now().After(deadline) {
			t.Fatalf("the metrics never showed %s:\n%s", want, grepLines(e.metrics(), "tandem_http_"))
		}
		time.Sleep(time.Millisecond)
	}
}

// metricValue returns the value of the sample named name (with labels, if
// any) in Prometheus text.
func metricValue(t *testing.T, text, name string) float64 {
	t.Helper()
	for l := range strings.SplitSeq(text, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestReadyzCached(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ReadyCache = 200 * time.Millisecond })
	pings := func() string {
		return grepLines(e.metrics(), `tandem_bigtable_read_duration_seconds_count{op="ping"}`)
	}
	for range 20 {
		if r := e.get("/readyz"); r.status != http.StatusOK {
			t.Fatalf("readyz: %d %s", r.status, r.raw)
		}
	}
	if got := pings(); got != `tandem_bigtable_read_duration_seconds_count{op="ping"} 1` {
		t.Errorf("20 calls within the cache time: %s, want 1 ping", got)
	}
	time.Sleep(250 * time.Millisecond)
	e.get("/readyz")
	if got := pings(); got != `tandem_bigtable_read_duration_seconds_count{op="ping"} 2` {
		t.Errorf("after the cache time: %s, want 2 pings", got)
	}
}

func TestAccessLog(t *testing.T) {
	keys := writeKeys(t, `
keys:
  - {name: cards-only, key: "cards-key-0123456789", featuresets: [cards]}
`)
	e := newEnv(t, func(c *Config) { c.Keys = keys; c.AccessLogSample = 1; c.RateLimit = -1 })
	bearer := []string{"Authorization", "Bearer cards-key-0123456789"}
	e.get("/v1/features/cards/c1", bearer...)
	logs := e.logs.String()
	for _, want := range []string{`msg=access method=GET route="GET /v1/features/{featureset}/{entity}" status=200 latency=`, "key=cards-only", "remote=127.0.0.1"} {
		if !strings.Contains(logs, want) {
			t.Errorf("access log lacks %q:\n%s", want, logs)
		}
	}

	// Refused requests are logged without sampling, at a bounded rate.
	e2 := newEnv(t, func(c *Config) { c.Keys = keys; c.AccessLogSample = -1; c.RateLimit = -1 })
	e2.get("/v1/features/cards/c1", bearer...)
	if strings.Contains(e2.logs.String(), "msg=access") {
		t.Errorf("a sample of -1 logged a 200:\n%s", e2.logs)
	}
	const n = 200
	for range n {
		e2.get("/v1/features/users/u1", bearer...) // 403
	}
	e2.get("/v1/features/cards/c1", "Authorization", "Bearer wrong-key-0123456789") // 401
	lines := strings.Count(e2.logs.String(), "msg=access")
	suppressed := metricValue(t, e2.metrics(), "tandem_access_log_suppressed_total")
	if lines < refusedLogBurst || lines > n/2 || float64(lines)+suppressed != n+1 {
		t.Errorf("%d refused requests: %d logged, %g suppressed; want at least the burst %d logged, the rest counted", n+1, lines, suppressed, refusedLogBurst)
	}
	if !strings.Contains(e2.logs.String(), "status=403") || !strings.Contains(e2.logs.String(), "key=cards-only") {
		t.Errorf("forbidden requests not logged with the key's name:\n%.400s", e2.logs)
	}
	if strings.Contains(e.logs.String()+e2.logs.String(), "key-0123456789") {
		t.Error("a key was logged")
	}
}
