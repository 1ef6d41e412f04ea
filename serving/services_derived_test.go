package serving

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fraudDerivedYAML is fraudYAML with derived features of the service's
// own: one over both sets, one over cards only.
const fraudDerivedYAML = fraudYAML + `derived:
  - {name: mean_per_view, expr: cards__amount_mean_24h / users__views_1h}
  - {name: card_busy, expr: cards__txn_count_1h >= 3}
`

// TestServiceDerived reads a service's own derived features through the
// native GET and POST and Feast's endpoint: each equal to the arithmetic,
// done here in Go, over the per-set endpoint's values of the same rows;
// NOT_FOUND for a division by zero or a missing input; STALE when a set it
// reads is (users has no metadata), PRESENT when none is.
func TestServiceDerived(t *testing.T) {
	e := newEnv(t, withService(t, fraudDerivedYAML))
	seedC1(e)
	at := e.tb.Add(20 * time.Minute)
	seedUsers(e, at)
	q := "at=" + rfc(at)

	r := e.get("/v1/services/fraud?card_id=c1&user_id=7&" + q)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	cards := featuresOf(t, e.get("/v1/features/cards/c1?features=amount_mean_24h,txn_count_1h&" + q).body["features"])
	users := featuresOf(t, e.get("/v1/features/users/7?features=views_1h&" + q).body["features"])
	mean, _ := cards["amount_mean_24h"][0].(interface{ Float64() (float64, error) }).Float64()
	views, _ := users["views_1h"][0].(interface{ Int64() (int64, error) }).Int64()
	count, _ := cards["txn_count_1h"][0].(interface{ Int64() (int64, error) }).Int64()
	if views == 0 || cards["amount_mean_24h"][1] != "PRESENT" {
		t.Fatalf("fixture: views %d, mean %v", views, cards["amount_mean_24h"])
	}
	want := map[string][2]any{
		"mean_per_view": {num(fmt.Sprint(mean / float64(views))), "STALE"},
		"card_busy":     {count >= 3, "PRESENT"},
	}
	if diff := cmp.Diff(want, featuresOf(t, r.body["derived"])); diff != "" {
		t.Errorf("GET derived (-want +got):\n%s", diff)
	}

	// POST: user 8 has no view in the last hour (division by zero), nobody
	// has no card data.
	p := e.do(http.MethodPost, "/v1/services/fraud", fmt.Sprintf(`{"rows": [{"card_id": "c1", "user_id": 7}, {"card_id": "c1", "user_id": 8}, {"card_id": "nobody", "user_id": 7}], "at": %q}`, rfc(at)))
	if p.status != http.StatusOK {
		t.Fatalf("POST status %d: %s", p.status, p.raw)
	}
	results := p.body["results"].([]any)
	wantRows := []map[string][2]any{
		want,
		{"mean_per_view": {nil, "NOT_FOUND"}, "card_busy": {true, "PRESENT"}},
		{"mean_per_view": {nil, "NOT_FOUND"}, "card_busy": {false, "PRESENT"}},
	}
	for i, res := range results {
		if diff := cmp.Diff(wantRows[i], featuresOf(t, res.(map[string]any)["derived"])); diff != "" {
			t.Errorf("POST results[%d] derived (-want +got):\n%s", i, diff)
		}
	}

	f := decodeFeast(t, e.do(http.MethodPost, "/get-online-features", fmt.Sprintf(`{"feature_service": "fraud", "entities": {"card_id": ["c1", "c1"], "user_id": [7, 8]}, "full_feature_names": true, "at": %q}`, rfc(at))))
	names := f.Metadata.FeatureNames
	if diff := cmp.Diff([]string{"fraud__mean_per_view", "fraud__card_busy"}, names[len(names)-2:]); diff != "" {
		t.Fatalf("Feast feature_names end (-want +got):\n%s", diff)
	}
	mpv := f.Results[len(names)-2]
	if diff := cmp.Diff(feastResult{[]any{num(fmt.Sprint(mean / float64(views))), nil}, []string{"OUTSIDE_MAX_AGE", "NOT_FOUND"}, []string{rfc(at), "1970-01-01T00:00:00Z"}}, mpv); diff != "" { // fixed date: Feast's empty timestamp, compared with no clock
		t.Errorf("Feast mean_per_view (-want +got):\n%s", diff)
	}
	if got := f.Results[len(names)-1].Values; !cmp.Equal(got, []any{true, true}) {
		t.Errorf("Feast card_busy = %v, want [true true]", got)
	}

	l := e.get("/v1/services")
	svc := l.body["services"].([]any)[0].(map[string]any)
	if d, _ := svc["derived"].([]any); len(d) != 2 {
		t.Errorf("GET /v1/services lists derived %v, want both", svc["derived"])
	}
}
