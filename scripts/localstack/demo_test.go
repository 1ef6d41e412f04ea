package localstack

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/serving/client"
)

// TestFormatValues checks the demo's "values of" line: every output in
// definition order, derived ones included, lists and objects as
// JSON, and a status other than PRESENT beside its value.
func TestFormatValues(t *testing.T) {
	set, err := schemas.Load("../../schemas/card_activity.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var res client.EntityFeatures
	body := `{"features": {
		"txn_count_1h": {"value": 4, "status": "PRESENT"},
		"declined_count_1h": {"value": 1, "status": "PRESENT"},
		"last_5_merchants": {"value": ["Subway", "Shell"], "status": "PRESENT"},
		"top_merchants_7d": {"value": [{"value": "Subway", "count": 3}], "status": "PRESENT"},
		"amount_p90_7d": {"value": {"0.5": 12.5, "0.9": 40}, "status": "STALE"},
		"declined_share_1h": {"value": 0.25, "status": "PRESENT"}}}`
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&res); err != nil {
		t.Fatal(err)
	}
	got := formatValues(set, &res)
	want := `txn_count_1h=4 declined_count_1h=1 amount_p90_7d={"0.5":12.5,"0.9":40}(STALE) last_5_merchants=["Subway","Shell"] top_merchants_7d=[{"count":3,"value":"Subway"}] declined_share_1h=0.25`
	if got != want {
		t.Errorf("formatValues =\n%s\nwant\n%s", got, want)
	}
}
