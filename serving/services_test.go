package serving

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/schemastest"
	"github.com/tandem-fp/tandem/serving/servingtest"
)

// fraudYAML is a service over the test sets cards (string key) and users
// (int64 key).
const fraudYAML = `name: fraud
features:
  - {featureset: cards, key: card_id, features: [amount_mean_24h, txn_count_1h, last_merchant, merchants_7d]}
  - {featureset: users, key: user_id, features: [views_1h]}
`

// cardsTooYAML is a third set with a feature named like one of cards'.
const cardsTooYAML = `
name: cards_too
entity: {name: card, key: card_id}
event_time: ts
fields: {card_id: string, ts: timestamp}
retention: 30d # read at instants up to 30 hours old, as users is
features:
  - {name: txn_count_1h, op: count, window: 1h}
`

// withServices serves fraudYAML, and cards_too beside the test sets.
func withServices(t *testing.T) envOption { return withService(t, fraudYAML) }

// withService serves the service defined by y, and cards_too beside the
// test sets.
func withService(t *testing.T, y string) envOption {
	return func(c *Config) {
		c.Sets = append(c.Sets, schemastest.MustParse(t, cardsTooYAML))
		svc, err := schemas.ParseService("fraud.yaml", []byte(y), c.Sets)
		if err != nil {
			t.Fatal(err)
		}
		c.Services = []*schemas.Service{svc}
	}
}

// seedUsers writes views of user 7 into the stream family, 5 and 50
// minutes before at, and one of user 8 two hours before.
func seedUsers(e *testEnv, at time.Time) {
	e.t.Helper()
	view := func(user string, t time.Time) schemas.Event {
		return servingtest.Event(e.users, user, t, map[string]schemas.Value{"page": schemas.StringValue("/home")})
	}
	e.write(e.users, schemas.FamilyStream, view("7", at.Add(-5*time.Minute)), view("7", at.Add(-50*time.Minute)), view("8", at.Add(-2*time.Hour)))
}

// object returns the JSON object at path in v.
func object(t *testing.T, v any, path ...string) map[string]any {
	t.Helper()
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%v: not an object at %s", v, k)
		}
		v = m[k]
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%v at %v: not an object", v, path)
	}
	return m
}

// readCounts returns the number of successful Bigtable reads by op so far.
func (e *testEnv) readCounts() map[string]uint64 {
	e.t.Helper()
	fams, err := e.srv.m.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	out := make(map[string]uint64)
	for _, f := range fams {
		if f.GetName() != "tandem_bigtable_read_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" {
					out[l.GetValue()] = m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return out
}

// readsDuring returns the ReadRow and ReadRows calls that f makes.
func (e *testEnv) readsDuring(f func()) (readRow, readRows uint64) {
	before := e.readCounts()
	f()
	after := e.readCounts()
	return after[opReadRow] - before[opReadRow], after[opReadRows] - before[opReadRows]
}

func TestServiceGet(t *testing.T) {
	e := newEnv(t, withServices(t))
	seedC1(e)
	at := e.tb.Add(20 * time.Minute)
	seedUsers(e, at)
	q := "at=" + rfc(at)
	var r response
	row, rows := e.readsDuring(func() { r = e.get("/v1/services/fraud?card_id=c1&user_id=7&" + q) })
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	if row != 2 || rows != 0 {
		t.Errorf("one row: %d ReadRow and %d ReadRows calls, want 2 and 0 (each set once)", row, rows)
	}
	if r.body["service"] != "fraud" || r.body["at"] != rfc(at) {
		t.Errorf("service, at = %v, %v", r.body["service"], r.body["at"])
	}
	if diff := cmp.Diff(map[string]any{"card_id": "c1", "user_id": num("7")}, object(t, r.body, "row")); diff != "" {
		t.Errorf("row (-want +got):\n%s", diff)
	}
	// Equal to the per-set endpoint for the same entity and instant,
	// freshness included.
	for set, path := range map[string]string{
		"cards": "/v1/features/cards/c1?features=amount_mean_24h,txn_count_1h,last_merchant,merchants_7d&" + q,
		"users": "/v1/features/users/7?features=views_1h&" + q,
	} {
		one := e.get(path)
		if diff := cmp.Diff(one.body["features"], object(t, r.body, "features")[set]); diff != "" {
			t.Errorf("%s features differ from %s (-per-set +service):\n%s", set, path, diff)
		}
		if diff := cmp.Diff(one.body["freshness"], object(t, r.body, "freshness")[set]); diff != "" {
			t.Errorf("%s freshness differs (-per-set +service):\n%s", set, diff)
		}
	}
	want := map[string][2]any{
		"amount_mean_24h": {num("72.5"), "PRESENT"},
		"txn_count_1h":    {num("3"), "PRESENT"},
		"last_merchant":   {"m1", "PRESENT"},
		"merchants_7d":    {num("3"), "PRESENT"},
	}
	if diff := cmp.Diff(want, featuresOf(t, object(t, r.body, "features")["cards"])); diff != "" {
		t.Errorf("cards features (-want +got):\n%s", diff)
	}
	// users has no metadata: its values are STALE.
	if diff := cmp.Diff(map[string][2]any{"views_1h": {num("2"), "STALE"}}, featuresOf(t, object(t, r.body, "features")["users"])); diff != "" {
		t.Errorf("users features (-want +got):\n%s", diff)
	}
	if i, j := strings.Index(r.raw, `"amount_mean_24h"`), strings.Index(r.raw, `"txn_count_1h"`); i < 0 || i > j {
		t.Errorf("features not in the service's order: %s", r.raw)
	}

	t.Run("int64 key in another spelling", func(t *testing.T) {
		r2 := e.get("/v1/services/fraud?card_id=c1&user_id=%2B007&" + q)
		if diff := cmp.Diff(r.body, r2.body); diff != "" {
			t.Errorf("user_id=+007 differs from user_id=7 (-7 +007):\n%s", diff)
		}
	})
	t.Run("at defaults to now", func(t *testing.T) {
		r := e.get("/v1/services/fraud?card_id=c1&user_id=7")
		if r.status != http.StatusOK || r.body["at"] != rfc(e.now) {
			t.Errorf("status %d, at %v; want 200 at %s", r.status, r.body["at"], rfc(e.now))
		}
	})
	t.Run("HEAD", func(t *testing.T) {
		if r := e.do(http.MethodHead, "/v1/services/fraud?card_id=c1&user_id=7", ""); r.status != http.StatusOK {
			t.Errorf("HEAD status %d", r.status)
		}
	})
}

func TestServicePost(t *testing.T) {
	e := newEnv(t, withServices(t))
	seedC1(e)
	at := e.tb.Add(20 * time.Minute)
	seedUsers(e, at)
	body := fmt.Sprintf(`{"rows": [{"card_id": "c1", "user_id": 7}, {"user_id": "8", "card_id": "nobody"}, {"card_id": "c1", "user_id": 8}], "at": %q}`, rfc(at))
	var r response
	row, rows := e.readsDuring(func() { r = e.do(http.MethodPost, "/v1/services/fraud", body) })
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	if row != 0 || rows != 2 {
		t.Errorf("three rows: %d ReadRow and %d ReadRows calls, want 0 and 2 (each set once)", row, rows)
	}
	cards := e.do(http.MethodPost, "/v1/features/cards",
		fmt.Sprintf(`{"entities": ["c1", "nobody", "c1"], "features": ["amount_mean_24h", "txn_count_1h", "last_merchant", "merchants_7d"], "at": %q}`, rfc(at)))
	users := e.do(http.MethodPost, "/v1/features/users", fmt.Sprintf(`{"entities": ["7", "8", "8"], "features": ["views_1h"], "at": %q}`, rfc(at)))
	results := r.body["results"].([]any)
	wantRows := []map[string]any{
		{"card_id": "c1", "user_id": num("7")}, {"card_id": "nobody", "user_id": num("8")}, {"card_id": "c1", "user_id": num("8")},
	}
	if len(results) != 3 {
		t.Fatalf("%d results, want 3", len(results))
	}
	for i, res := range results {
		if diff := cmp.Diff(wantRows[i], object(t, res, "row")); diff != "" {
			t.Errorf("results[%d].row (-want +got):\n%s", i, diff)
		}
		for set, per := range map[string]response{"cards": cards, "users": users} {
			want := per.body["results"].([]any)[i].(map[string]any)["features"]
			if diff := cmp.Diff(want, object(t, res, "features")[set]); diff != "" {
				t.Errorf("results[%d] %s differ from the per-set POST (-per-set +service):\n%s", i, set, diff)
			}
		}
	}
	if got := featuresOf(t, object(t, results[1], "features")["cards"])["amount_mean_24h"]; got != [2]any{nil, "NOT_FOUND"} {
		t.Errorf("nobody's mean = %v, want NOT_FOUND", got)
	}
	if got := featuresOf(t, object(t, results[1], "features")["users"])["views_1h"]; got != [2]any{num("0"), "STALE"} {
		t.Errorf("user 8's views_1h = %v, want 0 (its view is 2h old), STALE", got)
	}
	if diff := cmp.Diff(cards.body["freshness"], object(t, r.body, "freshness")["cards"]); diff != "" {
		t.Errorf("cards freshness (-per-set +service):\n%s", diff)
	}

	t.Run("many rows, parallel reads", func(t *testing.T) {
		rs := make([]string, 120)
		for i := range rs {
			rs[i] = fmt.Sprintf(`{"card_id": "x%03d", "user_id": %d}`, i, i%3+6)
		}
		rs[77] = `{"card_id": "c1", "user_id": 7}`
		r := e.do(http.MethodPost, "/v1/services/fraud", fmt.Sprintf(`{"rows": [%s], "at": %q}`, strings.Join(rs, ","), rfc(at)))
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.raw)
		}
		for i, res := range r.body["results"].([]any) {
			want, wantViews := num("0"), [2]any{num("0"), "STALE"}
			if i == 77 {
				want = num("3")
			}
			if i%3 == 1 || i == 77 {
				wantViews = [2]any{num("2"), "STALE"}
			}
			f := object(t, res, "features")
			if got := featuresOf(t, f["cards"])["txn_count_1h"][0]; got != want {
				t.Errorf("results[%d] txn_count_1h = %v, want %v", i, got, want)
			}
			if got := featuresOf(t, f["users"])["views_1h"]; got != wantViews {
				t.Errorf("results[%d] views_1h = %v, want %v", i, got, wantViews)
			}
		}
	})
}

func TestServiceList(t *testing.T) {
	e := newEnv(t, withServices(t))
	r := e.get("/v1/services")
	want := map[string]any{"services": []any{map[string]any{
		"name": "fraud",
		"keys": []any{map[string]any{"name": "card_id", "type": "string"}, map[string]any{"name": "user_id", "type": "int64"}},
		"features": []any{
			map[string]any{"featureset": "cards", "key": "card_id", "key_type": "string", "keys": []any{map[string]any{"name": "card_id", "type": "string"}}, "features": []any{"amount_mean_24h", "txn_count_1h", "last_merchant", "merchants_7d"}},
			map[string]any{"featureset": "users", "key": "user_id", "key_type": "int64", "keys": []any{map[string]any{"name": "user_id", "type": "int64"}}, "features": []any{"views_1h"}},
		},
	}}}
	if diff := cmp.Diff(want, r.body); diff != "" {
		t.Errorf("GET /v1/services (-want +got):\n%s", diff)
	}
}

// feastResult is one column of a Feast response.
type feastResult struct {
	Values     []any    `json:"values"`
	Statuses   []string `json:"statuses"`
	Timestamps []string `json:"event_timestamps"`
}

type feastResponse struct {
	Metadata struct {
		FeatureNames []string `json:"feature_names"`
	} `json:"metadata"`
	Results []feastResult `json:"results"`
}

func decodeFeast(t *testing.T, r response) feastResponse {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	var f feastResponse
	dec := json.NewDecoder(strings.NewReader(r.raw))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("not Feast's response shape: %v\n%s", err, r.raw)
	}
	return f
}

func TestFeastOnline(t *testing.T) {
	e := newEnv(t, withServices(t))
	seedC1(e)
	at := e.tb.Add(20 * time.Minute)
	seedUsers(e, at)
	const epoch = "1970-01-01T00:00:00Z" // fixed date: the event timestamp Feast reports for keys and missing values; compared with no clock

	t.Run("feature service", func(t *testing.T) {
		body := fmt.Sprintf(`{"feature_service": "fraud", "entities": {"card_id": ["c1", "nobody"], "user_id": [7, "8"]}, "at": %q}`, rfc(at))
		var r response
		row, rows := e.readsDuring(func() { r = e.do(http.MethodPost, "/get-online-features", body) })
		if row != 0 || rows != 2 {
			t.Errorf("%d ReadRow and %d ReadRows calls, want 0 and 2 (each set once)", row, rows)
		}
		f := decodeFeast(t, r)
		wantNames := []string{"card_id", "user_id", "amount_mean_24h", "txn_count_1h", "last_merchant", "merchants_7d", "views_1h"}
		if diff := cmp.Diff(wantNames, f.Metadata.FeatureNames); diff != "" {
			t.Errorf("feature_names (-want +got):\n%s", diff)
		}
		a := rfc(at)
		want := []feastResult{
			{[]any{"c1", "nobody"}, []string{"PRESENT", "PRESENT"}, []string{epoch, epoch}},
			{[]any{num("7"), num("8")}, []string{"PRESENT", "PRESENT"}, []string{epoch, epoch}},
			{[]any{num("72.5"), nil}, []string{"PRESENT", "NOT_FOUND"}, []string{a, epoch}},
			{[]any{num("3"), num("0")}, []string{"PRESENT", "PRESENT"}, []string{a, a}},
			{[]any{"m1", nil}, []string{"PRESENT", "NOT_FOUND"}, []string{a, epoch}},
			{[]any{num("3"), num("0")}, []string{"PRESENT", "PRESENT"}, []string{a, a}},
			{[]any{num("2"), num("0")}, []string{"OUTSIDE_MAX_AGE", "OUTSIDE_MAX_AGE"}, []string{a, a}},
		}
		if diff := cmp.Diff(want, f.Results); diff != "" {
			t.Errorf("results (-want +got):\n%s", diff)
		}
		// The values are those of the native service endpoint.
		native := e.do(http.MethodPost, "/v1/services/fraud", fmt.Sprintf(`{"rows": [{"card_id": "c1", "user_id": 7}, {"card_id": "nobody", "user_id": 8}], "at": %q}`, rfc(at)))
		for i, res := range native.body["results"].([]any) {
			fs := object(t, res, "features")
			for c, name := range wantNames[2:] {
				set := "cards"
				if name == "views_1h" {
					set = "users"
				}
				if got, want := f.Results[c+2].Values[i], featuresOf(t, fs[set])[name][0]; !cmp.Equal(got, want) {
					t.Errorf("row %d %s: Feast %v, native %v", i, name, got, want)
				}
			}
		}
	})

	t.Run("feature references in request order, full names", func(t *testing.T) {
		body := fmt.Sprintf(`{"features": ["users:views_1h", "cards:txn_count_1h", "cards_too:txn_count_1h", "cards:amount_mean_24h"],
			"entities": {"user_id": ["7"], "card_id": ["c1"]}, "full_feature_names": true, "at": %q}`, rfc(at))
		f := decodeFeast(t, e.do(http.MethodPost, "/get-online-features", body))
		wantNames := []string{"user_id", "card_id", "users__views_1h", "cards__txn_count_1h", "cards_too__txn_count_1h", "cards__amount_mean_24h"}
		if diff := cmp.Diff(wantNames, f.Metadata.FeatureNames); diff != "" {
			t.Errorf("feature_names (-want +got):\n%s", diff)
		}
		var values []any
		for _, res := range f.Results {
			values = append(values, res.Values[0])
		}
		// cards_too has no data and no metadata: 0, OUTSIDE_MAX_AGE.
		if diff := cmp.Diff([]any{num("7"), "c1", num("2"), num("3"), num("0"), num("72.5")}, values); diff != "" {
			t.Errorf("values (-want +got):\n%s", diff)
		}
		if got := f.Results[4].Statuses[0]; got != "OUTSIDE_MAX_AGE" {
			t.Errorf("cards_too status %s, want OUTSIDE_MAX_AGE", got)
		}
	})

	t.Run("short names", func(t *testing.T) {
		f := decodeFeast(t, e.do(http.MethodPost, "/get-online-features", `{"features": ["cards:txn_count_1h"], "entities": {"card_id": ["c1"]}, "full_feature_names": false}`))
		if diff := cmp.Diff([]string{"card_id", "txn_count_1h"}, f.Metadata.FeatureNames); diff != "" {
			t.Errorf("feature_names (-want +got):\n%s", diff)
		}
	})
}

func TestServiceBadInput(t *testing.T) {
	e := newEnv(t, withServices(t), func(c *Config) { c.MaxEntities = 3; c.MaxResponseBytes = 800 })
	future := rfc(e.now.Add(2 * time.Minute))
	const feast = "/get-online-features"
	tests := []struct {
		name, method, path, body string
		status                   int
		code, message            string // message: a substring
	}{
		{"unknown service", "GET", "/v1/services/nope?card_id=c1", "", 404, "unknown_service", `unknown feature service "nope" (loaded: fraud)`},
		{"unknown service POST", "POST", "/v1/services/nope", `{"rows": []}`, 404, "unknown_service", `"nope"`},
		{"unknown service Feast", "POST", feast, `{"feature_service": "nope", "entities": {}}`, 404, "unknown_service", `"nope"`},
		{"missing key column", "GET", "/v1/services/fraud?card_id=c1", "", 400, "bad_request", "missing key column user_id: give ?user_id=... (the int64 entity key of feature set users)"},
		{"key column twice", "GET", "/v1/services/fraud?card_id=c1&user_id=1&user_id=2", "", 400, "bad_request", "give user_id once"},
		{"bad int64 key", "GET", "/v1/services/fraud?card_id=c1&user_id=seven", "", 400, "bad_request", `user_id: want an int64 key, got "seven"`},
		{"int64 key out of range", "GET", "/v1/services/fraud?card_id=c1&user_id=9223372036854775808", "", 400, "bad_request", "want an int64 key"},
		{"empty string key", "GET", "/v1/services/fraud?card_id=&user_id=7", "", 400, "bad_request", "card_id: empty entity key"},
		{"unknown parameter", "GET", "/v1/services/fraud?card_id=c1&user_id=7&cardid=c2", "", 400, "bad_request", `unknown query parameter "cardid"`},
		{"bad at", "GET", "/v1/services/fraud?card_id=c1&user_id=7&at=noon", "", 400, "bad_at", "not an RFC 3339 time"},
		{"future at", "POST", "/v1/services/fraud", `{"rows": [{"card_id": "c1", "user_id": 7}], "at": "` + future + `"}`, 400, "bad_at", "in the future"},
		{"missing rows", "POST", "/v1/services/fraud", `{"at": "` + future + `"}`, 400, "bad_request", `missing "rows"`},
		{"empty rows", "POST", "/v1/services/fraud", `{"rows": []}`, 400, "bad_request", `"rows" is empty`},
		{"rows not a list", "POST", "/v1/services/fraud", `{"rows": {"card_id": "c1"}}`, 400, "bad_json", `field "rows": want a list of objects, got an object`},
		{"row not an object", "POST", "/v1/services/fraud", `{"rows": ["c1"]}`, 400, "bad_json", "want a JSON object rows[0]"},
		{"too many rows", "POST", "/v1/services/fraud", `{"rows": [{}, {}, {}, {}]}`, 400, "too_many_entities", "4 rows, more than the 3"},
		{"row missing a key", "POST", "/v1/services/fraud", `{"rows": [{"card_id": "c1", "user_id": 7}, {"card_id": "c2"}]}`, 400, "bad_request", "rows[1]: missing key column user_id"},
		{"row with another column", "POST", "/v1/services/fraud", `{"rows": [{"card_id": "c1", "user_id": 7, "label": 1}]}`, 400, "bad_request", `rows[0]: unknown key column "label" (service fraud uses card_id, user_id)`},
		{"number for a string key", "POST", "/v1/services/fraud", `{"rows": [{"card_id": 1001, "user_id": 7}]}`, 400, "bad_request", `rows[0].card_id: want a string key, got a number "1001"`},
		{"fraction for an int64 key", "POST", "/v1/services/fraud", `{"rows": [{"card_id": "c1", "user_id": 7.5}]}`, 400, "bad_request", `rows[0].user_id: want an int64 key, got "7.5"`},
		{"null key", "POST", "/v1/services/fraud", `{"rows": [{"card_id": null, "user_id": 7}]}`, 400, "bad_request", "rows[0].card_id: want a string key, got null"},
		{"bool for an int64 key", "POST", "/v1/services/fraud", `{"rows": [{"card_id": "c1", "user_id": true}]}`, 400, "bad_request", "want an int64 key (a JSON integer or a string holding one), got a bool"},
		{"unknown field", "POST", "/v1/services/fraud", `{"row": []}`, 400, "bad_json", `unknown field "row"`},
		{"malformed JSON", "POST", "/v1/services/fraud", `{"rows": [`, 400, "bad_json", "ends early"},
		{"response too large", "POST", "/v1/services/fraud", `{"rows": [{"card_id": "a", "user_id": 1}, {"card_id": "b", "user_id": 2}, {"card_id": "c", "user_id": 3}]}`, 400, "response_too_large", "the response for 3 entities"},
		{"response too large Feast", "POST", feast, `{"feature_service": "fraud", "entities": {"card_id": ["a", "b", "c"], "user_id": [1, 2, 3]}, "full_feature_names": true}`, 400, "response_too_large", "the response for 3 entities"},
		{"wrong method", "DELETE", "/v1/services/fraud", "", 405, "method_not_allowed", "allowed: GET, HEAD, POST"},
		{"GET on Feast", "GET", feast, "", 405, "method_not_allowed", "allowed: POST"},
		{"Feast: both features and service", "POST", feast, `{"features": ["cards:txn_count_1h"], "feature_service": "fraud", "entities": {"card_id": ["c1"]}}`, 400, "bad_request", "not both"},
		{"Feast: neither", "POST", feast, `{"entities": {"card_id": ["c1"]}}`, 400, "bad_request", `missing "features" or "feature_service"`},
		{"Feast: empty features", "POST", feast, `{"features": [], "entities": {"card_id": ["c1"]}}`, 400, "bad_request", `"features" is empty`},
		{"Feast: bad reference", "POST", feast, `{"features": ["txn_count_1h"], "entities": {"card_id": ["c1"]}}`, 400, "unknown_feature", `features[0]: want "featureset:feature", got "txn_count_1h"`},
		{"Feast: unknown set", "POST", feast, `{"features": ["nope:x"], "entities": {"card_id": ["c1"]}}`, 404, "unknown_featureset", `"nope"`},
		{"Feast: unknown feature", "POST", feast, `{"features": ["cards:nope"], "entities": {"card_id": ["c1"]}}`, 400, "unknown_feature", `no feature "nope"`},
		{"Feast: reference twice", "POST", feast, `{"features": ["cards:txn_count_1h", "cards:txn_count_1h"], "entities": {"card_id": ["c1"]}}`, 400, "bad_request", "requested twice"},
		{"Feast: name collision", "POST", feast, `{"features": ["cards:txn_count_1h", "cards_too:txn_count_1h"], "entities": {"card_id": ["c1"]}}`, 400, "bad_request", "feature name txn_count_1h is that of a feature of cards and of cards_too; set full_feature_names to true"},
		{"Feast: missing entities", "POST", feast, `{"features": ["cards:txn_count_1h"]}`, 400, "bad_request", `missing "entities": give {"card_id": [...]}`},
		{"Feast: missing entity column", "POST", feast, `{"feature_service": "fraud", "entities": {"card_id": ["c1"]}}`, 400, "bad_request", "entities: missing entity column user_id"},
		{"Feast: extra entity column", "POST", feast, `{"features": ["cards:txn_count_1h"], "entities": {"card_id": ["c1"], "user_id": [1]}}`, 400, "bad_request", `unknown entity column "user_id"`},
		{"Feast: ragged columns", "POST", feast, `{"feature_service": "fraud", "entities": {"card_id": ["c1", "c2"], "user_id": [1]}}`, 400, "bad_request", "column user_id has 1 keys, card_id has 2"},
		{"Feast: empty columns", "POST", feast, `{"features": ["cards:txn_count_1h"], "entities": {"card_id": []}}`, 400, "bad_request", "the columns are empty"},
		{"Feast: column not a list", "POST", feast, `{"features": ["cards:txn_count_1h"], "entities": {"card_id": "c1"}}`, 400, "bad_json", "entities.card_id: want a list of keys, got a string"},
		{"Feast: bad key type", "POST", feast, `{"feature_service": "fraud", "entities": {"card_id": ["c1"], "user_id": ["x"]}}`, 400, "bad_request", `entities.user_id[0]: want an int64 key, got "x"`},
		{"Feast: too many rows", "POST", feast, `{"features": ["cards:txn_count_1h"], "entities": {"card_id": ["a", "b", "c", "d"]}}`, 400, "too_many_entities", "4 entity rows"},
		{"Feast: bad full_feature_names", "POST", feast, `{"features": ["cards:txn_count_1h"], "entities": {"card_id": ["a"]}, "full_feature_names": "yes"}`, 400, "bad_json", "want true or false, got a string"},
		{"Feast: unsupported field", "POST", feast, `{"features": ["cards:txn_count_1h"], "entities": {"card_id": ["a"]}, "request_context": {}}`, 400, "bad_json", `unknown field "request_context"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkError(t, e.do(tc.method, tc.path, tc.body), tc.status, tc.code, tc.message)
		})
	}
	if strings.Contains(e.logs.String(), "level=ERROR") {
		t.Errorf("bad input logged errors:\n%s", e.logs)
	}
}

func TestServiceAuth(t *testing.T) {
	keys := writeKeys(t, `
keys:
  - {name: cards-only, key: "cards-key-0123456789", featuresets: [cards]}
  - {name: fraud-model, key: "fraud-key-0123456789", featuresets: [cards, users]}
`)
	e := newEnv(t, withServices(t), func(c *Config) { c.Keys = keys })
	bearer := func(k string) []string { return []string{"Authorization", "Bearer " + k} }
	cardsKey, fraudKey := bearer("cards-key-0123456789"), bearer("fraud-key-0123456789")
	const feast = "/get-online-features"
	tests := []struct {
		name, method, path, body string
		header                   []string
		status                   int
	}{
		{"no key", "GET", "/v1/services/fraud?card_id=c1&user_id=7", "", nil, 401},
		{"no key POST", "POST", "/v1/services/fraud", `{"rows": [{"card_id": "c1", "user_id": 7}]}`, nil, 401},
		{"no key list", "GET", "/v1/services", "", nil, 401},
		{"no key Feast", "POST", feast, `{"feature_service": "fraud", "entities": {"card_id": ["c1"], "user_id": [7]}}`, nil, 401},
		{"wrong key", "GET", "/v1/services/fraud?card_id=c1&user_id=7", "", bearer("fraud-key-012345678X"), 401},
		{"one set not allowed", "GET", "/v1/services/fraud?card_id=c1&user_id=7", "", cardsKey, 403},
		{"one set not allowed POST", "POST", "/v1/services/fraud", `{"rows": [{"card_id": "c1", "user_id": 7}]}`, cardsKey, 403},
		{"one set not allowed Feast service", "POST", feast, `{"feature_service": "fraud", "entities": {"card_id": ["c1"], "user_id": [7]}}`, cardsKey, 403},
		{"one set not allowed Feast features", "POST", feast, `{"features": ["cards:txn_count_1h", "users:views_1h"], "entities": {"card_id": ["c1"], "user_id": [7]}}`, cardsKey, 403},
		{"unknown set not revealed", "POST", feast, `{"features": ["nope:x"], "entities": {"card_id": ["c1"]}}`, cardsKey, 403},
		{"allowed set Feast features", "POST", feast, `{"features": ["cards:txn_count_1h"], "entities": {"card_id": ["c1"]}}`, cardsKey, 200},
		{"every set allowed", "GET", "/v1/services/fraud?card_id=c1&user_id=7", "", fraudKey, 200},
		{"every set allowed POST", "POST", "/v1/services/fraud", `{"rows": [{"card_id": "c1", "user_id": 7}]}`, fraudKey, 200},
		{"every set allowed Feast", "POST", feast, `{"feature_service": "fraud", "entities": {"card_id": ["c1"], "user_id": [7]}}`, fraudKey, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.body, tc.header...)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.raw)
			}
			if tc.status == 403 && !strings.Contains(r.raw, `"forbidden"`) {
				t.Errorf("403 body %s", r.raw)
			}
		})
	}
	t.Run("list shows usable services only", func(t *testing.T) {
		if got := e.get("/v1/services", cardsKey...).body["services"].([]any); len(got) != 0 {
			t.Errorf("cards-only key lists %v, want none", got)
		}
		if got := e.get("/v1/services", fraudKey...).body["services"].([]any); len(got) != 1 {
			t.Errorf("fraud key lists %v, want fraud", got)
		}
	})
	t.Run("unknown service lists usable ones", func(t *testing.T) {
		r := e.get("/v1/services/nope?card_id=c1", cardsKey...)
		if r.status != 404 || !strings.Contains(r.raw, `(loaded: )`) {
			t.Errorf("status %d %s, want 404 listing no service", r.status, r.raw)
		}
	})
}

func TestNewServices(t *testing.T) {
	cards := schemastest.MustParse(t, cardsYAML)
	users := schemastest.MustParse(t, usersYAML)
	svc, err := schemas.ParseService("", []byte(fraudYAML), []*schemas.FeatureSet{cards, users})
	if err != nil {
		t.Fatal(err)
	}
	emu, err := servingtest.StartEmulator(t.Context(), []*schemas.FeatureSet{cards, users})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	fewer := strings.Replace(usersYAML, "views_1h", "visits_1h", 1)
	for name, cfg := range map[string]Config{
		"set not served":   {Sets: []*schemas.FeatureSet{cards}, Services: []*schemas.Service{svc}},
		"feature missing":  {Sets: []*schemas.FeatureSet{cards, schemastest.MustParse(t, fewer)}, Services: []*schemas.Service{svc}},
		"service twice":    {Sets: []*schemas.FeatureSet{cards, users}, Services: []*schemas.Service{svc, svc}},
		"key type changed": {Sets: []*schemas.FeatureSet{cards, schemastest.MustParse(t, strings.Replace(usersYAML, "user_id: int64", "user_id: string", 1))}, Services: []*schemas.Service{svc}},
	} {
		cfg.Table = emu.Table
		if s, err := New(cfg); err == nil {
			_ = s.Close()
			t.Errorf("%s: New succeeded, want an error", name)
		}
	}
}
