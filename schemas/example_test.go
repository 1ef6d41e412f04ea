package schemas_test

import (
	"errors"
	"fmt"

	"github.com/tandem-fp/tandem/schemas"
)

func ExampleParse() {
	fs, err := schemas.Parse("card_activity.yaml", []byte(`
name: card_activity
entity: {name: card, key: card_id}
event_time: ts
fields:
  card_id: string
  merchant: string
  amount: float64
  ts: timestamp
features:
  - {name: txn_count_1h, op: count, window: 1h}
  - {name: amount_sum_24h, op: sum, field: amount, window: 24h}
  - {name: merchants_7d, op: approx_count_distinct, field: merchant, window: 7d}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, f := range fs.Features {
		fmt.Printf("%s: %d tiles of %s, cells %s\n", f.Name, f.Tiles(), schemas.FormatDuration(f.Tile), f.Qualifier())
	}
	fmt.Println("retention:", schemas.FormatDuration(fs.Retention))

	e, err := fs.DecodeJSON([]byte(`{"card_id":"c_1001","merchant":"Starbucks","amount":4.75,"ts":"2026-03-01T08:01:12Z"}`)) // fixed date: decoding only
	fmt.Println(schemas.RowKey(fs.Name, e.Key), e.EventTime(), err)

	_, err = fs.DecodeJSON([]byte(`{"card_id":"c_1001","amount":"4.75","ts":"2026-03-01T08:01:12Z"}`)) // fixed date: decoding only
	fmt.Println(errors.Is(err, schemas.ErrBadEvent), err)

	_, err = schemas.Parse("typo.yaml", []byte(`
name: card_activity
entity: {name: card, key: card_id}
event_time: ts
fields: {card_id: string, amount: float64, ts: timestamp}
features:
  - {name: amount_avg_1h, op: avg, field: amount, window: 1hr}
`))
	fmt.Println(errors.Is(err, schemas.ErrInvalid))
	fmt.Println(err)
	// Output:
	// txn_count_1h: 60 tiles of 1m, cells txn_count_1h@1m
	// amount_sum_24h: 96 tiles of 15m, cells amount_sum_24h@15m
	// merchants_7d: 56 tiles of 3h, cells merchants_7d@3h
	// retention: 8d
	// card_activity#c_1001 2026-03-01 08:01:12 +0000 UTC <nil>
	// true schemas: bad event: field "amount": want float64, got string "4.75"
	// true
	// typo.yaml:7: features[0].op: unknown op "avg" (want one of count, sum, min, max, mean, last, approx_count_distinct, stddev, first, last_k, first_k, top_k, approx_percentile, histogram)
	// typo.yaml:7: features[0].window: bad duration "1hr" (want a whole number followed by s, m, h or d)
}
