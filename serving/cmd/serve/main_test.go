package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	if err := os.Mkdir(filepath.Join(dir, "services"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "services", "m.yaml"), []byte("name: m\nfeatures: [{featureset: cards, features: [txn_count_1h]}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := parseFlags([]string{"--featureset", dir, "--addr", "127.0.0.1:0", "--emulator", "--api_keys", keys})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, slog.New(slog.NewTextHandler(io.Discard, nil)), ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("server did not start")
	}
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
	if got := get("/v1/services/m?card_id=c1", "test-key-0123456789"); got != http.StatusOK {
		t.Errorf("service from services/ = %d, want 200", got)
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
