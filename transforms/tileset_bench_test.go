package transforms

import (
	"testing"
	"time"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/sample"
	"github.com/tandem-fp/tandem/schemas/schemastest"
)

// cardActivityBefore is schemas/card_activity.yaml before the list and map
// ops and the filter (commit 6b1c006): the baseline of BenchmarkFoldEncode.
const cardActivityBefore = `
name: card_activity
entity: {name: card, key: card_id}
event_time: ts
fields: {card_id: string, merchant: string, amount: float64, approved: bool, ts: timestamp}
retention: 8d
features:
  - {name: txn_count_1h, op: count, window: 1h}
  - {name: amount_mean_24h, op: mean, field: amount, window: 24h}
  - {name: amount_max_24h, op: max, field: amount, window: 24h}
  - {name: amount_sum_24h, op: sum, field: amount, window: 24h}
  - {name: merchants_7d, op: approx_count_distinct, field: merchant, window: 7d}
  - {name: last_merchant, op: last, field: merchant, window: 7d, tile: 1h}
`

// BenchmarkFoldEncode measures the batch pipeline's own work per event
// (batchpipe's tile workers): folding events into a TileSet per entity
// (filters, tile lookup, the ops' Add) and encoding the sets once
// (TileSet.MarshalBinary), without Beam or Bigtable, for card_activity
// before the new ops (old, 6 features) and as it is (new), in one run:
// 20 events per entity over 7 days, as batchbench generates them.
func BenchmarkFoldEncode(b *testing.B) {
	now, err := schemas.Load("../schemas/card_activity.yaml")
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		set  *schemas.FeatureSet
	}{{"old", schemastest.MustParse(b, cardActivityBefore)}, {"new", now}} {
		end := time.Now().Truncate(time.Hour)
		events := sample.Events(c.set, 1, 20_000, end.Add(-7*24*time.Hour), end)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			tiles := 0
			for b.Loop() {
				sets := map[string]*TileSet{}
				for _, e := range events {
					ts, ok := sets[e.Key]
					if !ok {
						ts = NewTileSet()
						sets[e.Key] = ts
					}
					ts.Add(c.set, e)
				}
				tiles = 0
				for _, ts := range sets {
					if _, err := ts.MarshalBinary(); err != nil {
						b.Fatal(err)
					}
					tiles += len(ts.Tiles)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
			b.ReportMetric(float64(tiles)/float64(len(events)), "tiles/event")
		})
	}
}
