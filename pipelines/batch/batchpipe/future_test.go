package batchpipe

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-fp/tandem/schemas"
)

// TestFutureEvents runs the pipeline with a processing time two hours
// before as_of: the events stamped more than max_future (1m) after it are
// dead-lettered with stage future and counted, and only the others are
// tiled.
func TestFutureEvents(t *testing.T) {
	set := testSet(t)
	asOf := testAsOf(set)
	_, inRange := testEvents(set, asOf, 2000)
	now := asOf.Add(-2 * time.Hour)
	var kept []schemas.Event
	future := 0
	for _, e := range inRange {
		if e.EventTime().After(now.Add(set.MaxFuture)) {
			future++
			continue
		}
		kept = append(kept, e)
	}
	if future == 0 || len(kept) == 0 {
		t.Fatalf("%d future and %d kept events: the test needs both", future, len(kept))
	}
	dir := t.TempDir()
	cfg := Config{
		Set: set, Source: schemas.BatchSource{Files: writeJSONL(t, dir, set, inRange)}, AsOf: asOf, Now: now,
		Bigtable: emulator(t, set), DeadLetter: filepath.Join(dir, "dead"),
	}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	if got := res.Counters[set.Name+"_dead_letter_future"]; got != int64(future) {
		t.Errorf("counter %s_dead_letter_future = %d, want %d", set.Name, got, future)
	}
	diffTiles(t, directTiles(set, kept), readTiles(t, cfg.Bigtable, set))
	dead := readDeadLetters(t, cfg.DeadLetter+".jsonl")
	if len(dead) != future {
		t.Fatalf("%d dead letters, want %d", len(dead), future)
	}
	for _, d := range dead {
		if d.Stage != "future" || !strings.Contains(d.Reason, "more than max_future 1m after the pipeline's clock") || d.Raw == "" {
			t.Errorf("dead letter %+v, want stage future, the reason and the record", d)
			break
		}
	}
}
