package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"cloud.google.com/go/bigtable"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/serving/client"
	"github.com/tandem-fp/tandem/serving/servingtest"
)

const usersYAML = `
name: users
entity: {name: user, key: user_id}
event_time: viewed_at
fields: {user_id: int64, page: string, viewed_at: timestamp}
features:
  - {name: views_1h, op: count, window: 1h}
  - {name: last_page, op: last, field: page, window: 1d}
`

// serviceYAML is the feature service of the examples: card features keyed
// by card_id, user features keyed by user_id.
const serviceYAML = `
name: fraud
features:
  - {featureset: cards, key: card_id, features: [txn_count_1h, amount_mean_24h]}
  - {featureset: users, key: user_id, features: [views_1h, last_page]}
`

// demoViews writes two page views of user 7 after the batch watermark tb,
// and the users set's freshness.
func demoViews(ctx context.Context, tbl *bigtable.Table, users *schemas.FeatureSet, tb time.Time) error {
	view := func(t time.Time, page string) schemas.Event {
		return servingtest.Event(users, "7", t, map[string]schemas.Value{"page": schemas.StringValue(page)})
	}
	if err := servingtest.WriteEvents(ctx, tbl, users, schemas.FamilyStream, view(tb.Add(10*time.Minute), "/home"), view(tb.Add(25*time.Minute), "/checkout")); err != nil {
		return err
	}
	return servingtest.WriteFreshness(ctx, tbl, users.Name, tb, tb.Add(29*time.Minute))
}

func ExampleClient_GetService() {
	url, at, stop := demo()
	defer stop()

	c, err := client.New(url)
	if err != nil {
		log.Fatal(err)
	}
	res, err := c.GetService(context.Background(), "fraud", client.Row{"card_id": "c_1001", "user_id": 7}, at)
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range [][2]string{{"cards", "txn_count_1h"}, {"cards", "amount_mean_24h"}, {"users", "views_1h"}, {"users", "last_page"}} {
		v, _ := res.Value(f[0], f[1])
		fmt.Printf("%s.%s = %v (%s)\n", f[0], f[1], v.Value, v.Status)
	}
	fmt.Println("users batch watermark before at:", res.Freshness["users"].BatchWatermark.Before(at))

	many, err := c.GetServiceMany(context.Background(), "fraud", []client.Row{
		{"card_id": "c_1001", "user_id": 8},
		{"card_id": "c_2002", "user_id": "7"},
	}, at)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range many.Results {
		txns, _ := r.Value("cards", "txn_count_1h")
		views, _ := r.Value("users", "views_1h")
		fmt.Println(r.Row["card_id"], r.Row["user_id"], txns.Value, views.Value)
	}
	_, err = c.GetService(context.Background(), "fraud", client.Row{"card_id": "c_1001"}, at)
	if e, ok := client.AsError(err); ok {
		fmt.Println(e.StatusCode, e.Code)
	}
	// Output:
	// cards.txn_count_1h = 3 (PRESENT)
	// cards.amount_mean_24h = 40 (PRESENT)
	// users.views_1h = 2 (PRESENT)
	// users.last_page = /checkout (PRESENT)
	// users batch watermark before at: true
	// c_1001 8 3 0
	// c_2002 7 0 2
	// 400 bad_request
}

// A client written for Feast's feature server switches by pointing at
// Tandem: the same request, the same columnar response.
func ExampleClient_GetOnlineFeatures() {
	url, at, stop := demo()
	defer stop()

	c, err := client.New(url)
	if err != nil {
		log.Fatal(err)
	}
	res, err := c.GetOnlineFeatures(context.Background(), client.OnlineFeaturesRequest{
		Features: []string{"cards:txn_count_1h", "cards:last_merchant"},
		Entities: map[string][]any{"card_id": {"c_1001", "c_2002"}},
		At:       at,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Metadata.FeatureNames)
	for i, name := range res.Metadata.FeatureNames {
		fmt.Println(name, res.Results[i].Values, res.Results[i].Statuses)
	}
	svc, err := c.GetOnlineFeatures(context.Background(), client.OnlineFeaturesRequest{
		FeatureService:   "fraud",
		Entities:         map[string][]any{"card_id": {"c_1001"}, "user_id": {7}},
		FullFeatureNames: true,
		At:               at,
	})
	if err != nil {
		log.Fatal(err)
	}
	views, _ := svc.Column("users__views_1h")
	fmt.Println(svc.Metadata.FeatureNames[2:], views.Values, views.EventTimestamps[0].Equal(at))
	// Output:
	// [card_id txn_count_1h last_merchant]
	// card_id [c_1001 c_2002] [PRESENT PRESENT]
	// txn_count_1h [3 0] [PRESENT PRESENT]
	// last_merchant [acme <nil>] [PRESENT NOT_FOUND]
	// [cards__txn_count_1h cards__amount_mean_24h users__views_1h users__last_page] [2] true
}
