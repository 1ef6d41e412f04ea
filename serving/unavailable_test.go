package serving

import (
	"context"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigtable/bttest"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
)

// TestUnavailable stops the emulator under a running server: feature reads
// answer 503 with Retry-After within the request deadline, /readyz fails,
// /healthz does not; once an emulator is back on the same address the
// server recovers by itself.
func TestUnavailable(t *testing.T) {
	const timeout = 500 * time.Millisecond
	e := newEnv(t, func(c *Config) { c.RequestTimeout = timeout; c.PingTimeout = timeout })
	seedC1(e)
	if r := e.get("/v1/features/cards/c1"); r.status != http.StatusOK {
		t.Fatalf("before: status %d: %s", r.status, r.raw)
	}
	addr := e.emu.Server.Addr
	e.emu.Stop()
	time.Sleep(5 * e.srv.cfg.MetaRefresh * 2) // let the cached metadata expire

	tests := []struct {
		name, method, path, body string
		status                   int
	}{
		{"one entity", "GET", "/v1/features/cards/c1", "", 503},
		{"many entities", "POST", "/v1/features/cards", `{"entities": ["c1", "c2"]}`, 503},
		{"readyz", "GET", "/readyz", "", 503},
		{"healthz", "GET", "/healthz", "", 200},
		{"definitions", "GET", "/v1/featuresets/cards", "", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			r := e.do(tc.method, tc.path, tc.body)
			took := time.Since(start)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.raw)
			}
			if tc.status != 503 {
				return
			}
			if took > timeout+time.Second {
				t.Errorf("503 after %v, want it within the request deadline %v", took, timeout)
			}
			if got := r.header.Get("Retry-After"); got == "" {
				t.Error("503 without Retry-After")
			}
			if code := r.body["error"].(map[string]any)["code"]; code != "unavailable" {
				t.Errorf("code %v, want unavailable", code)
			}
			if strings.Contains(r.raw, "rpc error") || strings.Contains(r.raw, "127.0.0.1") {
				t.Errorf("503 body leaks internals: %s", r.raw)
			}
		})
	}

	// Bring an emulator back on the same address; the server must recover
	// without a restart (gRPC reconnects with backoff).
	srv, err := bttest.NewServer(addr)
	if err != nil {
		t.Fatalf("restart emulator on %s: %v", addr, err)
	}
	t.Cleanup(srv.Close)
	ctx := context.Background()
	ac, err := e.emu.Config.NewAdminClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	if _, err := bigtablestore.EnsureTable(ctx, ac, e.emu.Config.Table, []*schemas.FeatureSet{e.cards, e.users}); err != nil {
		t.Fatal(err)
	}
	// The client's connections reconnect one by one; wait until reads pass
	// on all of them.
	deadline := time.Now().Add(45 * time.Second)
	for ok := 0; ok < 10; {
		r := e.get("/v1/features/cards/c1?features=txn_count_1h")
		ready := e.get("/readyz")
		if r.status == http.StatusOK && ready.status == http.StatusOK {
			ok++
			continue
		}
		ok = 0
		if time.Now().After(deadline) {
			t.Fatalf("not recovered 45s after Bigtable came back: %d %s; readyz %d", r.status, r.raw, ready.status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(e.metrics(), `tandem_bigtable_read_errors_total{op="read_row"}`) {
		t.Error("no Bigtable error metric")
	}
}

// TestNoGoroutineLeak runs servers through successful, bad and failing
// requests and checks that closing them leaves no goroutine behind.
func TestNoGoroutineLeak(t *testing.T) {
	work := func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.RequestTimeout = 200 * time.Millisecond })
		seedC1(e)
		for range 20 {
			e.get("/v1/features/cards/c1")
			e.do(http.MethodPost, "/v1/features/cards", `{"entities": ["c1", "c2"]}`)
			e.get("/v1/features/cards/c1?at=nonsense")
		}
		e.emu.Stop()
		e.get("/v1/features/cards/c1") // 503 path
		e.get("/readyz")
	}
	t.Run("warm up", work) // process-wide goroutines started once by libraries
	before := runtime.NumGoroutine()
	for i := range 3 {
		t.Run("run", work)
		_ = i
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		after := runtime.NumGoroutine()
		if after <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines: %d before, %d after closing:\n%s", before, after, buf[:n])
		}
		time.Sleep(50 * time.Millisecond)
	}
}
