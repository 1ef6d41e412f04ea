package client_test

import (
	"context"
	"fmt"
	"log"
	"net/http/httptest"
	"time"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/serving"
	"github.com/tandem-fp/tandem/serving/client"
	"github.com/tandem-fp/tandem/serving/servingtest"
)

const cardsYAML = `
name: cards
entity: {name: card, key: card_id}
event_time: ts
fields: {card_id: string, merchant: string, amount: float64, ts: timestamp}
features:
  - {name: txn_count_1h, op: count, window: 1h}
  - {name: amount_mean_24h, op: mean, field: amount, window: 24h}
  - {name: last_merchant, op: last, field: merchant, window: 7d, tile: 1h}
`

// demo starts a Tandem server over an in-process Bigtable emulator holding
// three transactions of card c_1001: one written by the batch pipeline
// (before the batch watermark) and two by the streaming pipeline; and the
// page views of user 7 (demoViews), with the service serviceYAML.
func demo() (url string, at time.Time, stop func()) {
	ctx := context.Background()
	set, err := schemas.Parse("", []byte(cardsYAML))
	if err != nil {
		log.Fatal(err)
	}
	users, err := schemas.Parse("", []byte(usersYAML))
	if err != nil {
		log.Fatal(err)
	}
	sets := []*schemas.FeatureSet{set, users}
	emu, err := servingtest.StartEmulator(ctx, sets)
	if err != nil {
		log.Fatal(err)
	}
	tb := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour) // batch watermark
	txn := func(t time.Time, merchant string, amount float64) schemas.Event {
		return servingtest.Event(set, "c_1001", t, map[string]schemas.Value{
			"merchant": schemas.StringValue(merchant), "amount": schemas.Float64Value(amount)})
	}
	check := func(err error) {
		if err != nil {
			log.Fatal(err)
		}
	}
	check(servingtest.WriteEvents(ctx, emu.Table, set, schemas.FamilyBatch, txn(tb.Add(-10*time.Minute), "acme", 20)))
	check(servingtest.WriteEvents(ctx, emu.Table, set, schemas.FamilyStream,
		txn(tb.Add(5*time.Minute), "bobs", 30), txn(tb.Add(20*time.Minute), "acme", 70)))
	check(servingtest.WriteFreshness(ctx, emu.Table, set.Name, tb, tb.Add(29*time.Minute)))
	check(demoViews(ctx, emu.Table, users, tb))
	svc, err := schemas.ParseService("", []byte(serviceYAML), sets)
	check(err)
	api, err := serving.New(serving.Config{Sets: sets, Services: []*schemas.Service{svc}, Table: emu.Table})
	check(err)
	hs := httptest.NewServer(api)
	return hs.URL, tb.Add(30 * time.Minute), func() { hs.Close(); api.Close(); emu.Close() }
}

func ExampleClient_Get() {
	url, at, stop := demo()
	defer stop()

	c, err := client.New(url)
	if err != nil {
		log.Fatal(err)
	}
	res, err := c.Get(context.Background(), "cards", "c_1001", []string{"txn_count_1h", "amount_mean_24h", "last_merchant"}, at)
	if err != nil {
		log.Fatal(err)
	}
	for _, name := range []string{"txn_count_1h", "amount_mean_24h", "last_merchant"} {
		v := res.Features[name]
		fmt.Printf("%s = %v (%s)\n", name, v.Value, v.Status)
	}
	other, err := c.Get(context.Background(), "cards", "c_2002", []string{"txn_count_1h", "amount_mean_24h"}, at)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("c_2002:", other.Features["txn_count_1h"], other.Features["amount_mean_24h"])
	// Output:
	// txn_count_1h = 3 (PRESENT)
	// amount_mean_24h = 40 (PRESENT)
	// last_merchant = acme (PRESENT)
	// c_2002: {0 PRESENT <nil>} {<nil> NOT_FOUND <nil>}
}

func ExampleClient_GetMany() {
	url, at, stop := demo()
	defer stop()

	c, err := client.New(url)
	if err != nil {
		log.Fatal(err)
	}
	res, err := c.GetMany(context.Background(), "cards", []string{"c_2002", "c_1001"}, []string{"txn_count_1h"}, at)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range res.Results {
		n, _ := r.Features["txn_count_1h"].Int64()
		fmt.Println(r.Entity, n)
	}
	_, err = c.GetMany(context.Background(), "cards", []string{"c_1001"}, []string{"txn_count_2h"}, at)
	if e, ok := client.AsError(err); ok {
		fmt.Println(e.StatusCode, e.Code)
	}
	// Output:
	// c_2002 0
	// c_1001 3
	// 400 unknown_feature
}
