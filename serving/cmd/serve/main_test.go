package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
)

const setYAML = `
name: cards
entity: {name: card, key: card_id}
event_time: ts
fields: {card_id: string, ts: timestamp}
features:
  - {name: txn_count_1h, op: count, window: 1h}
`

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string // error substring, "" for success
	}{
		{[]string{"--featureset", "x.yaml"}, ""},
		{[]string{}, "at least one --featureset"},
		{[]string{"--featureset", "x", "extra"}, "unexpected arguments"},
		{[]string{"--featureset", "x", "--max_entities", "0"}, "must be positive"},
		{[]string{"--featureset", "x", "--stale_after", "0s"}, "must be positive"},
		{[]string{"--featureset", "x", "--log_level", "loud"}, "log_level"},
		{[]string{"--featureset", "x", "--max_concurrent", "0"}, "must be positive"},
		{[]string{"--featureset", "x", "--rate_limit", "-1"}, "must not be negative"},
		{[]string{"--featureset", "x", "--access_log_sample", "2"}, "between 0 and 1"},
		{[]string{"--featureset", "x", "--tls_cert", "c.pem"}, "both --tls_cert and --tls_key"},
	}
	for _, tc := range tests {
		o, err := parseFlags(tc.args)
		if tc.want == "" {
			// Safe defaults: loopback for the API and for the metrics.
			if err != nil || o.addr != "127.0.0.1:8080" || o.metricsAddr != "127.0.0.1:9090" || o.insecureNoAuth || o.exposeSources ||
				o.bt.Table != "features" || o.maxEntities != 1000 || o.maxConns != 1024 || o.rateLimit != 1000 {
				t.Errorf("parseFlags(%q) = %+v, %v", tc.args, o, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFlags(%q) error = %v, want %q", tc.args, err, tc.want)
		}
	}
}

// server is a running `serve`.
type server struct {
	addrs listening
	logs  *syncBuffer
	stop  func() error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs serve with args and the in-process emulator, returning when
// it listens, or the error run returned.
func start(t *testing.T, args ...string) (*server, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cards.yaml"), []byte(setYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "services"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "services", "m.yaml"), []byte("name: m\nfeatures: [{featureset: cards, features: [txn_count_1h]}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := parseFlags(append([]string{"--featureset", dir, "--emulator"}, args...))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	ready := make(chan listening, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, slog.New(slog.NewTextHandler(logs, nil)), ready) }()
	select {
	case addrs := <-ready:
		var once sync.Once
		var stopErr error
		s := &server{addrs: addrs, logs: logs, stop: func() error {
			once.Do(func() {
				cancel()
				select {
				case stopErr = <-done:
				case <-time.After(15 * time.Second):
					t.Error("server did not shut down")
				}
			})
			return stopErr
		}}
		t.Cleanup(func() { _ = s.stop() })
		return s, nil
	case err := <-done:
		cancel()
		return nil, err
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("server did not start")
		return nil, nil
	}
}

func get(t *testing.T, hc *http.Client, url, key string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	res.Body.Close()
	return res.StatusCode
}

// TestRun starts the server with the in-process emulator and an API key
// file, checks it answers, keeps /metrics off the API's address, and stops
// it as SIGTERM would.
func TestRun(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(keys, []byte("keys: [{name: t, key: test-key-0123456789, featuresets: ['*']}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := start(t, "--addr", "127.0.0.1:0", "--metrics_addr", "127.0.0.1:0", "--api_keys", keys)
	if err != nil {
		t.Fatal(err)
	}
	api, admin := "http://"+s.addrs.api, "http://"+s.addrs.metrics
	hc := http.DefaultClient
	for _, tc := range []struct {
		url, key string
		want     int
	}{
		{api + "/readyz", "", 200},
		{api + "/v1/features/cards/c1", "", 401},
		{api + "/v1/features/cards/c1", "test-key-0123456789", 200},
		{api + "/v1/services/m?card_id=c1", "test-key-0123456789", 200},
		{api + "/v1/services/m?card_id=c1", "", 401},
		{api + "/metrics", "", 404},
		{api + "/metrics", "test-key-0123456789", 404},
		{admin + "/metrics", "", 200},
		{admin + "/readyz", "", 200},
		{admin + "/v1/features/cards/c1", "test-key-0123456789", 404},
		{api + "/ui/", "", 200}, // the page is open; it asks for a key and reads the API with it
		{api + "/ui/entity.js", "", 200},
		{admin + "/ui/", "", 404},
	} {
		if got := get(t, hc, tc.url, tc.key); got != tc.want {
			t.Errorf("GET %s = %d, want %d", tc.url, got, tc.want)
		}
	}
	if err := s.stop(); err != nil {
		t.Errorf("run after shutdown: %v", err)
	}
	if strings.Contains(s.logs.String(), "level=WARN") {
		t.Errorf("warnings on loopback with keys:\n%s", s.logs)
	}
}

// TestNoUI: --ui=false serves no page.
func TestNoUI(t *testing.T) {
	s, err := start(t, "--addr", "127.0.0.1:0", "--metrics_addr", "", "--ui=false")
	if err != nil {
		t.Fatal(err)
	}
	if got := get(t, http.DefaultClient, "http://"+s.addrs.api+"/ui/index.html", ""); got != http.StatusNotFound {
		t.Errorf("GET /ui/index.html with --ui=false = %d, want 404", got)
	}
}

// TestOpenOnlyOnLoopback: without keys, a non-loopback address needs
// --insecure_no_auth (issue 15 point 6).
func TestOpenOnlyOnLoopback(t *testing.T) {
	if _, err := start(t, "--addr", "0.0.0.0:0", "--metrics_addr", ""); err == nil || !strings.Contains(err.Error(), "which is not a loopback address") {
		t.Fatalf("open on every interface: %v, want a refusal", err)
	}
	s, err := start(t, "--addr", "0.0.0.0:0", "--metrics_addr", "", "--insecure_no_auth")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(s.addrs.api)
	if got := get(t, http.DefaultClient, "http://127.0.0.1:"+port+"/v1/features/cards/c1", ""); got != 200 {
		t.Errorf("with --insecure_no_auth: %d", got)
	}
	if !strings.Contains(s.logs.String(), "level=WARN") || !strings.Contains(s.logs.String(), "--insecure_no_auth") {
		t.Errorf("no warning:\n%s", s.logs)
	}
	if s, err := start(t, "--addr", "127.0.0.1:0", "--metrics_addr", ""); err != nil {
		t.Errorf("open on loopback: %v", err)
	} else if get(t, http.DefaultClient, "http://"+s.addrs.api+"/v1/features/cards/c1", "") != 200 {
		t.Error("open on loopback does not answer")
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool := selfSigned(t, certFile, keyFile)
	s, err := start(t, "--addr", "127.0.0.1:0", "--metrics_addr", "", "--tls_cert", certFile, "--tls_key", keyFile)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if got := get(t, hc, "https://"+s.addrs.api+"/v1/features/cards/c1", ""); got != 200 {
		t.Errorf("HTTPS GET = %d", got)
	}
	if got := get(t, http.DefaultClient, "http://"+s.addrs.api+"/healthz", ""); got != http.StatusBadRequest {
		t.Errorf("plain HTTP to the TLS port = %d, want 400", got)
	}
	if _, err := start(t, "--addr", "127.0.0.1:0", "--tls_cert", keyFile, "--tls_key", certFile); err == nil || !strings.Contains(err.Error(), "--tls_cert") {
		t.Errorf("swapped cert and key: %v", err)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key, returning a
// pool that trusts it.
func selfSigned(t *testing.T, certFile, keyFile string) *x509.CertPool {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tandem test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// TestKeygen generates a key with `serve keygen` and uses it.
func TestKeygen(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.yaml")
	var out bytes.Buffer
	if err := keygen([]string{"--api_keys", file, "--name", "scorer", "--featuresets", "cards"}, &out); err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(out.String())
	if !strings.HasPrefix(key, "tdk_") {
		t.Fatalf("keygen printed %q", out.String())
	}
	if err := keygen([]string{"--api_keys", file, "--name", "scorer"}, &out); err == nil {
		t.Error("keygen without --featuresets succeeded")
	}
	s, err := start(t, "--addr", "127.0.0.1:0", "--metrics_addr", "", "--api_keys", file)
	if err != nil {
		t.Fatal(err)
	}
	if got := get(t, http.DefaultClient, "http://"+s.addrs.api+"/v1/features/cards/c1", key); got != 200 {
		t.Errorf("with the generated key: %d", got)
	}
	if strings.Contains(s.logs.String(), key) {
		t.Error("the key was logged")
	}
}

// TestNoTable starts the server against an emulator without the table, as
// a new user who skipped scripts/setuptable would: it must refuse to start,
// in one line naming the table, the instance and the command that creates
// it. And when the table disappears under a running server, /readyz answers
// 503 saying the table is not set up, and the log holds that line.
func TestNoTable(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cards.yaml"), []byte(setYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, cfg, err := bigtablestore.StartEmulator()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	o, err := parseFlags([]string{"--featureset", dir, "--addr", "127.0.0.1:0", "--metrics_addr", ""})
	if err != nil {
		t.Fatal(err)
	}
	o.bt = cfg
	want := "bigtablestore: table not set up: table features not found in instance tandem of project tandem-local (emulator at " + cfg.Endpoint + "); " +
		"create it with: BIGTABLE_EMULATOR_HOST=" + cfg.Endpoint + " go run ./scripts/setuptable --featureset " + filepath.Join(dir, "cards.yaml") + " --bigtable_project tandem-local --bigtable_instance tandem --bigtable_table features"
	err = run(context.Background(), o, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if !errors.Is(err, bigtablestore.ErrNoTable) || err.Error() != want {
		t.Fatalf("run without the table = %v\nwant %s", err, want)
	}

	// Set the table up, start, then delete the table.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sets, err := schemas.LoadAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := cfg.NewAdminClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	if _, err := bigtablestore.EnsureTable(ctx, ac, cfg.Table, sets); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	ready := make(chan listening, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, slog.New(slog.NewTextHandler(logs, nil)), ready) }()
	var addr string
	select {
	case l := <-ready:
		addr = l.api
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("server did not start")
	}
	readyz := func() (int, string) {
		res, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := readyz(); code != http.StatusOK {
		t.Fatalf("readyz with the table = %d %s", code, body)
	}
	if err := ac.DeleteTable(ctx, cfg.Table); err != nil {
		t.Fatal(err)
	}
	// /readyz answers are cached briefly (serving.Config.ReadyCache).
	code, body := readyz()
	for deadline := time.Now().Add(10 * time.Second); code == http.StatusOK && time.Now().Before(deadline); code, body = readyz() {
		time.Sleep(100 * time.Millisecond)
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "table is not set up") || !strings.Contains(body, "scripts/setuptable") {
		t.Errorf("readyz without the table = %d %s; want 503 saying the table is not set up", code, body)
	}
	if !strings.Contains(logs.String(), strings.TrimPrefix(want, "bigtablestore: ")) {
		t.Errorf("log lacks the line naming the table and the command:\n%s", logs.String())
	}
	cancel()
	<-done
}
