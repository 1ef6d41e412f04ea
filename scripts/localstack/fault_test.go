package localstack

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandem-fp/tandem/pipelines/batch/batchpipe"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/serving"
)

// TestFaults stops the streaming pipeline mid-run (the server keeps
// answering with what was written, marked STALE), restarts it (it catches
// up from the subscription, nothing lost), and fails a batch run (the
// watermark stays, the stream side keeps serving).
func TestFaults(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	set, b := startOracleBackends(ctx, t)
	defer b.Close()
	dir := t.TempDir()

	now := time.Now().UTC()
	asOf := batchpipe.AlignAsOf(set, now.Add(-10*time.Minute))
	tl := makeTimeline(set, 7, asOf.Add(-90*time.Minute))
	if _, err := b.RunBatch(ctx, set, tl.history, asOf, dir); err != nil {
		t.Fatalf("batch: %v", err)
	}
	const staleAfter = 15 * time.Second
	srv, err := b.NewServer(serving.Config{StaleAfter: staleAfter, MetaRefresh: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()

	// count of f_1's events in the last hour, as served. f_1 has only live
	// events (the history's entities a_* slide out of the window as the
	// test runs); the history stays served throughout, checked below.
	count := func(step string) (int64, string) {
		t.Helper()
		res := postFeatures(t, hs.URL, set.Name, []string{"f_1", "a_1"}, time.Now())
		if h := res[1].Features["cnt_1h"]; string(h.Value) == "0" {
			t.Fatalf("%s: history entity a_1 has cnt_1h 0", step)
		}
		f := res[0].Features["cnt_1h"]
		var n int64
		if _, err := fmtSscan(string(f.Value), &n); err != nil {
			t.Fatalf("%s: cnt_1h = %s: %v", step, f.Value, err)
		}
		return n, f.Status
	}
	publish := func(n int) {
		t.Helper()
		var msgs [][]byte
		for range n {
			msgs = append(msgs, []byte(`{"account":"f_1","n":1,"x":1.5,"s":"fig","ok":true,"ts":"`+time.Now().UTC().Format(time.RFC3339Nano)+`"}`))
		}
		if err := b.Publish(ctx, set.Name, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	base, _ := count("batch only")

	st := b.StartStream(ctx, set, StreamOptions{DeadLetter: filepath.Join(dir, "dead1")})
	publish(5)
	if err := b.WaitAcked(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "stream side visible", func() bool { n, s := count("running"); return n == base+5 && s == "PRESENT" })

	// Stop the streaming side; events keep arriving in the subscription.
	if r, err := st.Stop(ctx); err != nil {
		t.Fatalf("stop stream: %v", err)
	} else {
		t.Logf("first run: %v", r.Counters)
	}
	publish(7)
	waitFor(t, ctx, "values marked STALE while the stream is down", func() bool {
		n, s := count("stopped")
		if n != base+5 {
			t.Fatalf("while stopped cnt_1h = %d, want %d (what was written)", n, base+5)
		}
		return s == "STALE"
	})

	// Restart: it catches up with what queued, nothing lost.
	st = b.StartStream(ctx, set, StreamOptions{DeadLetter: filepath.Join(dir, "dead2")})
	if err := b.WaitAcked(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "caught up", func() bool { n, _ := count("restarted"); return n == base+12 })
	// Staleness follows the stream watermark: after the catch-up it trails the
	// clock by the queued events' age until a new event moves it to now.
	publish(1)
	waitFor(t, ctx, "fresh again", func() bool { n, s := count("restarted"); return n == base+13 && s == "PRESENT" })

	// The batch side fails: its watermark stays and the stream keeps serving.
	before, err := bigtablestore.ReadMeta(ctx, b.Table, set.Name)
	if err != nil {
		t.Fatal(err)
	}
	_, err = batchpipe.Run(ctx, batchpipe.Config{
		Set: set, Source: schemas.BatchSource{Files: filepath.Join(dir, "missing-*.jsonl")},
		AsOf: batchpipe.AlignAsOf(set, time.Now()), Bigtable: b.Bigtable, DeadLetter: filepath.Join(dir, "dead3"),
	})
	if err == nil {
		t.Fatalf("batch run over no files succeeded, want a failure")
	}
	after, err := bigtablestore.ReadMeta(ctx, b.Table, set.Name)
	if err != nil {
		t.Fatal(err)
	}
	if !after.BatchWatermark.Equal(before.BatchWatermark) {
		t.Errorf("failed batch moved the watermark from %s to %s", before.BatchWatermark, after.BatchWatermark)
	}
	publish(3)
	waitFor(t, ctx, "stream serving after a failed batch", func() bool { n, s := count("batch failed"); return n == base+16 && s == "PRESENT" })
	if _, err := st.Stop(ctx); err != nil {
		t.Fatalf("stop stream: %v", err)
	}
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("ok: %s", what)
}

func fmtSscan(s string, n *int64) (int, error) { return fmt.Sscan(s, n) }
