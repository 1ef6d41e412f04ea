package serving

import (
	"testing"
	"time"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/serving/servingtest"
)

// TestBatchOnlyFreshness: a batch-only feature set (users: no stream
// source) refreshed by a daily batch run is PRESENT at "now" while its
// batch watermark is within its freshness expectation (26h plus its
// largest tile, 1m, when the definition sets no stale_after), and STALE
// past it; the server's --stale_after (5m) is for sets with a stream
// source (cards, TestStatus).
func TestBatchOnlyFreshness(t *testing.T) {
	e := newEnv(t)
	if got, want := e.users.FreshFor(DefaultStaleAfter), 26*time.Hour+time.Minute; got != want {
		t.Fatalf("users.FreshFor = %s, want %s", got, want)
	}
	tests := []struct {
		name string
		tb   time.Time // batch watermark; `at` is the server's now
		want string
	}{
		{"run an hour ago", e.now.Add(-time.Hour).Truncate(time.Minute), "PRESENT"},
		{"a day and a tile old, the next run due", e.now.Add(-24*time.Hour - time.Minute), "PRESENT"},
		{"26h old: the next run is finishing", e.now.Add(-26 * time.Hour), "PRESENT"},
		{"just past the expectation", e.now.Add(-26*time.Hour - time.Minute - time.Second), "STALE"},
		{"a run missed", e.now.Add(-49 * time.Hour), "STALE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.write(e.users, schemas.FamilyBatch, servingtest.Event(e.users, "42", tc.tb.Add(-10*time.Minute), map[string]schemas.Value{"page": schemas.StringValue("/")}))
			e.freshness("users", tc.tb, time.Time{})
			// No `at`: the server's now.
			got := features(t, e.get("/v1/features/users/42?features=views_1h"))["views_1h"]
			if got[1] != tc.want {
				t.Errorf("views_1h with the batch watermark %s behind now = %v, want %s", e.now.Sub(tc.tb), got, tc.want)
			}
		})
	}
}
