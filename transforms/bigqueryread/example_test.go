package bigqueryread_test

import (
	"fmt"
	"time"

	"github.com/tandem-fp/tandem/transforms/bigqueryread"
)

// The time range Read pushes down to BigQuery for a table source whose
// event-time column is ts.
func ExampleRowRestriction() {
	from := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC) // fixed date: formatting only
	to := time.Date(2026, 3, 8, 0, 0, 0, 500, time.UTC) // fixed date: formatting only; rounded up to the microsecond
	fmt.Println(bigqueryread.RowRestriction("ts", from, to))
	// Output:
	// `ts` >= TIMESTAMP("2026-03-01 00:00:00+00") AND `ts` < TIMESTAMP("2026-03-08 00:00:00.000001+00")
}
