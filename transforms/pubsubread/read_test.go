package pubsubread

import (
	"context"
	"math"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/google/go-cmp/cmp"
)

func TestSubscriptionParse(t *testing.T) {
	tests := []struct {
		in          Subscription
		project, id string
		ok          bool
	}{
		{"projects/p/subscriptions/s", "p", "s", true},
		{"projects/p/topics/s", "", "", false},
		{"s", "", "", false},
		{"projects//subscriptions/s", "", "", false},
	}
	for _, tc := range tests {
		t.Run(string(tc.in), func(t *testing.T) {
			p, id, err := tc.in.Parse()
			if (err == nil) != tc.ok || p != tc.project || id != tc.id {
				t.Errorf("Parse(%q) = %q, %q, %v; want %q, %q, ok %v", tc.in, p, id, err, tc.project, tc.id, tc.ok)
			}
		})
	}
}

// TestTrackerCheckpointsOnly: the tracker refuses dynamic splits (so one
// bundle at a time reads) and checkpoints after the last claimed position.
func TestTrackerCheckpointsOnly(t *testing.T) {
	tr := &tracker{rest: Restriction{Start: 10, End: math.MaxInt64}, claimed: 9}
	for p := int64(10); p < 15; p++ {
		if !tr.TryClaim(p) {
			t.Fatalf("TryClaim(%d) = false", p)
		}
	}
	if p, r, err := tr.TrySplit(0.5); err != nil || r != nil || p != (Restriction{Start: 10, End: math.MaxInt64}) {
		t.Errorf("TrySplit(0.5) = %v, %v, %v; want no split", p, r, err)
	}
	p, r, err := tr.TrySplit(0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]any{Restriction{10, 15}, Restriction{15, math.MaxInt64}}, []any{p, r}); diff != "" {
		t.Errorf("TrySplit(0) (-want +got):\n%s", diff)
	}
	if !tr.IsDone() {
		t.Errorf("IsDone() = false after a checkpoint")
	}

	bounded := &tracker{rest: Restriction{Start: 0, End: 2}, claimed: -1}
	if !bounded.TryClaim(int64(0)) || !bounded.TryClaim(int64(1)) || bounded.TryClaim(int64(2)) {
		t.Errorf("claims in [0, 2) did not stop at 2")
	}
	if !bounded.IsDone() {
		t.Errorf("IsDone() = false at the end of the range")
	}
}

// fixed dates: the clock is injected (now); the estimator never reads the wall clock here.
func TestWatermarkEstimator(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	ev := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC) // historical event times
	w := &watermarkEstimator{idleAdvance: 2 * time.Second}
	if got := w.CurrentWatermark(); got.After(ev) {
		t.Fatalf("initial watermark %s is not the minimum", got)
	}
	w.observe(ev.Add(time.Minute).UnixMicro(), now)
	w.observe(ev.UnixMicro(), now) // out of order: does not move it back
	if got, want := w.CurrentWatermark(), ev.Add(time.Minute); !got.Equal(want) {
		t.Errorf("watermark = %s, want the newest event time %s", got, want)
	}
	w.idle(now.Add(time.Second)) // not idle long enough
	if got, want := w.CurrentWatermark(), ev.Add(time.Minute); !got.Equal(want) {
		t.Errorf("after 1s idle, watermark = %s, want %s", got, want)
	}
	w.idle(now.Add(7 * time.Second)) // 5s past the idle threshold
	if got, want := w.CurrentWatermark(), ev.Add(time.Minute+5*time.Second); !got.Equal(want) {
		t.Errorf("after 7s idle, watermark = %s, want %s", got, want)
	}
}

// TestAcker checks acknowledgement and nack against the Pub/Sub fake.
func TestAcker(t *testing.T) {
	ctx := context.Background()
	srv := pstest.NewServer()
	defer srv.Close()
	ep := Endpoint{Emulator: srv.Addr}
	sub := Subscription("projects/p/subscriptions/s")
	a, err := AckerFor(ctx, ep, sub, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	if _, err := srv.GServer.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/p/topics/t"}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.GServer.CreateSubscription(ctx, &pubsubpb.Subscription{Name: string(sub), Topic: "projects/p/topics/t", AckDeadlineSeconds: 10}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		srv.Publish("projects/p/topics/t", []byte("x"), nil)
	}
	resp, err := a.Client().Pull(ctx, &pubsubpb.PullRequest{Subscription: string(sub), MaxMessages: 10})
	if err != nil || len(resp.ReceivedMessages) != 3 {
		t.Fatalf("Pull = %d messages, %v; want 3", len(resp.GetReceivedMessages()), err)
	}
	var ids []string
	for _, m := range resp.ReceivedMessages {
		ids = append(ids, m.AckId)
	}
	a.Track(ids)
	if got := a.InFlight(); got != 3 {
		t.Errorf("InFlight() = %d, want 3", got)
	}
	if err := a.Ack(ctx, ids[:2]); err != nil {
		t.Fatal(err)
	}
	if err := a.Nack(ctx, ids[2:]); err != nil {
		t.Fatal(err)
	}
	if got := a.InFlight(); got != 0 {
		t.Errorf("InFlight() = %d after ack and nack, want 0", got)
	}
	acked := 0
	for _, m := range srv.Messages() {
		acked += m.Acks
	}
	if acked != 2 {
		t.Errorf("%d messages acknowledged, want 2", acked)
	}
	// The nacked one is delivered again.
	resp, err = a.Client().Pull(ctx, &pubsubpb.PullRequest{Subscription: string(sub), MaxMessages: 10})
	if err != nil || len(resp.ReceivedMessages) != 1 {
		t.Errorf("Pull after nack = %d messages, %v; want 1", len(resp.GetReceivedMessages()), err)
	}
}
