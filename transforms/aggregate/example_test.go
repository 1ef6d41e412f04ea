package aggregate_test

import (
	"fmt"
	"log"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms/aggregate"
)

// Two tiles of the features of one card, as the pipelines write them, merged
// at read time as the server does.
func Example_merge() {
	features := []schemas.Feature{
		{Name: "spend", Op: schemas.OpSum, Field: "amount", FieldType: schemas.Float64},
		{Name: "merchants", Op: schemas.OpApproxCountDistinct, Field: "merchant", FieldType: schemas.String},
		{Name: "largest", Op: schemas.OpMax, Field: "amount", FieldType: schemas.Float64},
	}
	type event struct {
		amount   float64
		merchant string
		time     int64 // Unix microseconds
	}
	tiles := [][]event{
		{{12.5, "grocer", 1}, {7.25, "cafe", 2}},
		{{30, "grocer", 3601}},
	}

	for _, f := range features {
		var stored [][]byte // one Bigtable cell per tile
		for _, events := range tiles {
			p := aggregate.For(f)
			for _, e := range events {
				v := schemas.Float64Value(e.amount)
				if f.Field == "merchant" {
					v = schemas.StringValue(e.merchant)
				}
				p.Add(v, e.time)
			}
			b, err := aggregate.Encode(p)
			if err != nil {
				log.Fatal(err)
			}
			stored = append(stored, b)
		}

		window := aggregate.For(f)
		for _, b := range stored {
			tile, err := aggregate.Decode(b)
			if err != nil {
				log.Fatal(err)
			}
			if err := window.Merge(tile); err != nil {
				log.Fatal(err)
			}
		}
		v, ok := window.Result()
		fmt.Printf("%s = %v (%v)\n", f.Name, v, ok)
	}

	empty := aggregate.For(features[2])
	v, ok := empty.Result()
	fmt.Printf("largest of nothing = %v (%v)\n", v, ok)
	// Output:
	// spend = 49.75 (true)
	// merchants = 2 (true)
	// largest = 30 (true)
	// largest of nothing = null (false)
}
