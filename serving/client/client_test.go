package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/schemastest"
	"github.com/tandem-fp/tandem/serving"
	"github.com/tandem-fp/tandem/serving/apikeys"
	"github.com/tandem-fp/tandem/serving/client"
	"github.com/tandem-fp/tandem/serving/servingtest"
)

func TestClient(t *testing.T) {
	ctx := context.Background()
	set := schemastest.MustParse(t, cardsYAML)
	emu, err := servingtest.StartEmulator(ctx, []*schemas.FeatureSet{set})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	at := time.Now().UTC().Truncate(time.Minute).Add(-time.Minute)
	ev := servingtest.Event(set, "a/b", at.Add(-time.Second), map[string]schemas.Value{"amount": schemas.Float64Value(2.5)}) // before at: a value at at never counts an event at at
	if err := servingtest.WriteEvents(ctx, emu.Table, set, schemas.FamilyStream, ev); err != nil {
		t.Fatal(err)
	}
	if err := servingtest.WriteFreshness(ctx, emu.Table, set.Name, time.Time{}, at); err != nil {
		t.Fatal(err)
	}
	keys, err := apikeys.Parse([]byte(`{"keys": [{"name": "t", "key": "0123456789abcdef", "featuresets": ["cards"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	api, err := serving.New(serving.Config{Sets: []*schemas.FeatureSet{set}, Table: emu.Table, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	hs := httptest.NewServer(api)
	defer hs.Close()

	c, err := client.New(hs.URL+"/", client.WithAPIKey("0123456789abcdef"), client.WithHTTPClient(hs.Client()))
	if err != nil {
		t.Fatal(err)
	}
	sets, err := c.FeatureSets(ctx)
	if err != nil {
		t.Fatalf("FeatureSets: %v", err)
	}
	if len(sets) != 1 || sets[0].Name != "cards" || len(sets[0].Features) != 3 || sets[0].Features[2].Tile != time.Hour {
		t.Errorf("FeatureSets = %+v, want the cards definition", sets)
	}

	got, err := c.Get(ctx, "cards", "a/b", nil, at)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if n, ok := got.Features["txn_count_1h"].Int64(); !ok || n != 1 {
		t.Errorf("txn_count_1h = %v, want 1", got.Features["txn_count_1h"])
	}
	if f, ok := got.Features["amount_mean_24h"].Float64(); !ok || f != 2.5 {
		t.Errorf("amount_mean_24h = %v, want 2.5", got.Features["amount_mean_24h"])
	}
	if got.Entity != "a/b" || !got.At.Equal(at) || !got.Freshness.StreamLatestTile.Equal(at) || !got.Freshness.BatchWatermark.IsZero() {
		t.Errorf("Get = %+v", got)
	}

	many, err := c.GetMany(ctx, "cards", []string{"x", "a/b"}, []string{"txn_count_1h"}, at)
	if err != nil {
		t.Fatalf("GetMany: %v", err)
	}
	var entities []string
	for _, r := range many.Results {
		entities = append(entities, r.Entity)
	}
	if diff := cmp.Diff([]string{"x", "a/b"}, entities); diff != "" {
		t.Errorf("GetMany entities (-want +got):\n%s", diff)
	}

	bad, _ := client.New(hs.URL, client.WithAPIKey("wrong-key-0123456789"))
	_, err = bad.Get(ctx, "cards", "x", nil, time.Time{})
	if e, ok := client.AsError(err); !ok || e.StatusCode != http.StatusUnauthorized || e.Code != "unauthenticated" {
		t.Errorf("Get with a wrong key: %v, want a 401 *Error", err)
	}

	emu.Stop()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		_, err = c.Get(tctx, "cards", "x", nil, time.Time{})
		if e, ok := client.AsError(err); ok && e.Temporary() && e.RetryAfter == time.Second {
			break
		}
		if tctx.Err() != nil {
			t.Fatalf("Get with Bigtable down: %v, want a temporary *Error with RetryAfter 1s", err)
		}
	}
}
