package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
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
	}
	for _, tc := range tests {
		o, err := parseFlags(tc.args)
		if tc.want == "" {
			if err != nil || o.addr != ":8080" || o.bt.Table != "features" || o.maxEntities != 1000 {
				t.Errorf("parseFlags(%q) = %+v, %v", tc.args, o, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFlags(%q) error = %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestRun starts the server with the in-process emulator and an API key
// file, checks it answers, and stops it as SIGTERM would.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	set := filepath.Join(dir, "cards.yaml")
	keys := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(set, []byte(setYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keys, []byte("keys: [{name: t, key: test-key-0123456789, featuresets: ['*']}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := parseFlags([]string{"--featureset", dir, "--addr", "127.0.0.1:0", "--emulator", "--api_keys", keys})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, done := start(t, ctx, o, slog.New(slog.NewTextHandler(io.Discard, nil)))
	get := func(path, key string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := get("/readyz", ""); got != http.StatusOK {
		t.Errorf("readyz = %d", got)
	}
	if got := get("/v1/features/cards/c1", ""); got != http.StatusUnauthorized {
		t.Errorf("without key = %d, want 401", got)
	}
	if got := get("/v1/features/cards/c1", "test-key-0123456789"); got != http.StatusOK {
		t.Errorf("with key = %d, want 200", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after shutdown: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("server did not shut down")
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
	o, err := parseFlags([]string{"--featureset", dir, "--addr", "127.0.0.1:0"})
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
	var logs syncBuffer
	addr, done := start(t, ctx, o, slog.New(slog.NewTextHandler(&logs, nil)))
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
	code, body := readyz()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "table is not set up") || !strings.Contains(body, "scripts/setuptable") {
		t.Errorf("readyz without the table = %d %s; want 503 saying the table is not set up", code, body)
	}
	if !strings.Contains(logs.String(), strings.TrimPrefix(want, "bigtablestore: ")) {
		t.Errorf("log lacks the line naming the table and the command:\n%s", logs.String())
	}
	cancel()
	<-done
}

// syncBuffer is a bytes.Buffer safe for the server's concurrent logging.
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

// start runs the server in the background until ctx ends and returns its
// address and the channel run's result arrives on.
func start(t *testing.T, ctx context.Context, o options, log *slog.Logger) (string, <-chan error) {
	t.Helper()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, log, ready) }()
	select {
	case addr := <-ready:
		return addr, done
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("server did not start")
	}
	return "", nil
}
