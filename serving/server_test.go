package serving

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tandem-fp/tandem/schemas"
)

func num(s string) json.Number { return json.Number(s) }

// seedC1 writes entity c1's events: two batch events before T_b, two stream
// events after it, and metadata T_b, newest stream tile T_b+19m and stream
// watermark T_b+19m30s.
func seedC1(e *testEnv) {
	e.t.Helper()
	e.write(e.cards, schemas.FamilyBatch,
		e.card("c1", e.tb.Add(-30*time.Minute), "m1", 10),
		e.card("c1", e.tb.Add(-2*time.Hour), "m2", 200))
	e.write(e.cards, schemas.FamilyStream,
		e.card("c1", e.tb.Add(5*time.Minute), "m3", 30),
		e.card("c1", e.tb.Add(10*time.Minute), "m1", 50))
	e.streamWatermark("cards", e.tb.Add(19*time.Minute+30*time.Second))
	e.freshness("cards", e.tb, e.tb.Add(19*time.Minute))
}

func TestGetFeatures(t *testing.T) {
	e := newEnv(t)
	seedC1(e)
	at := e.tb.Add(20 * time.Minute)
	tests := []struct {
		name, entity string
		want         map[string][2]any
	}{
		{"with data", "c1", map[string][2]any{
			"txn_count_1h":     {num("3"), "PRESENT"},
			"amount_sum_24h":   {num("290"), "PRESENT"},
			"amount_mean_24h":  {num("72.5"), "PRESENT"},
			"amount_max_1h":    {num("50"), "PRESENT"},
			"items_sum_1h":     {num("6"), "PRESENT"},
			"first_ts_1h":      {rfc(e.tb.Add(-30 * time.Minute)), "PRESENT"},
			"last_merchant":    {"m1", "PRESENT"},
			"last_approved":    {true, "PRESENT"},
			"merchants_7d":     {num("3"), "PRESENT"},
			"amount_stddev_1h": {num(fmt.Sprint(math.Sqrt(800.0 / 3))), "PRESENT"},
			// where: not approved (amount ≥ 100): the 200 only.
			"declined_amount_24h": {num("200"), "PRESENT"},
			"ab_count_1h":         {num("0"), "PRESENT"},
			"declined_share_24h":  {num(fmt.Sprint(200.0 / 290)), "PRESENT"},
			"big_spender":         {true, "PRESENT"}, // mean 72.5 > 50
		}},
		{"unknown entity", "nobody", map[string][2]any{
			"txn_count_1h":        {num("0"), "PRESENT"},
			"amount_sum_24h":      {num("0"), "PRESENT"},
			"amount_mean_24h":     {nil, "NOT_FOUND"},
			"amount_max_1h":       {nil, "NOT_FOUND"},
			"items_sum_1h":        {num("0"), "PRESENT"},
			"first_ts_1h":         {nil, "NOT_FOUND"},
			"last_merchant":       {nil, "NOT_FOUND"},
			"last_approved":       {nil, "NOT_FOUND"},
			"merchants_7d":        {num("0"), "PRESENT"},
			"amount_stddev_1h":    {nil, "NOT_FOUND"},
			"declined_amount_24h": {num("0"), "PRESENT"},
			"ab_count_1h":         {num("0"), "PRESENT"},
			"declined_share_24h":  {nil, "NOT_FOUND"}, // 0 / 0
			"big_spender":         {nil, "NOT_FOUND"}, // null or false
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.get("/v1/features/cards/" + tc.entity + "?at=" + rfc(at))
			got := features(t, r)
			// stddev rounds differently by merge order; compare it loosely.
			if w, g := tc.want["amount_stddev_1h"], got["amount_stddev_1h"]; w[0] != nil && g[0] != nil {
				wf, _ := w[0].(json.Number).Float64()
				gf, _ := g[0].(json.Number).Float64()
				if math.Abs(wf-gf) > 1e-9*wf {
					t.Errorf("amount_stddev_1h = %v, want %v", gf, wf)
				}
				got["amount_stddev_1h"] = w
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("features (-want +got):\n%s", diff)
			}
			wantTop := map[string]any{
				"featureset": "cards", "entity": tc.entity, "at": rfc(at),
				"freshness": map[string]any{"batch_watermark": rfc(e.tb), "stream_latest_tile": rfc(e.tb.Add(19 * time.Minute)), "stream_watermark": rfc(e.tb.Add(19*time.Minute + 30*time.Second))},
			}
			delete(r.body, "features")
			if diff := cmp.Diff(wantTop, r.body); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("subset in request order", func(t *testing.T) {
		r := e.get("/v1/features/cards/c1?features=merchants_7d,txn_count_1h&features=merchants_7d&at=" + url.QueryEscape(rfc(at)))
		want := map[string][2]any{"merchants_7d": {num("3"), "PRESENT"}, "txn_count_1h": {num("3"), "PRESENT"}}
		if diff := cmp.Diff(want, features(t, r)); diff != "" {
			t.Errorf("features (-want +got):\n%s", diff)
		}
		if i, j := strings.Index(r.raw, "merchants_7d"), strings.Index(r.raw, "txn_count_1h"); i > j {
			t.Errorf("features out of request order: %s", r.raw)
		}
	})

	t.Run("at defaults to now", func(t *testing.T) {
		r := e.get("/v1/features/cards/c1?features=txn_count_1h")
		if got := r.body["at"]; got != rfc(e.now) {
			t.Errorf("at = %v, want %v", got, rfc(e.now))
		}
	})

	t.Run("HEAD", func(t *testing.T) {
		if r := e.do(http.MethodHead, "/v1/features/cards/c1", ""); r.status != http.StatusOK {
			t.Errorf("HEAD status = %d, want 200", r.status)
		}
	})
}

func TestPostFeatures(t *testing.T) {
	e := newEnv(t)
	seedC1(e)
	at := rfc(e.tb.Add(20 * time.Minute))
	body := fmt.Sprintf(`{"entities": ["c1", "nobody", "c1"], "features": ["amount_mean_24h", "txn_count_1h"], "at": %q}`, at)
	r := e.do(http.MethodPost, "/v1/features/cards", body)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	c1 := map[string]any{
		"amount_mean_24h": map[string]any{"value": num("72.5"), "status": "PRESENT"},
		"txn_count_1h":    map[string]any{"value": num("3"), "status": "PRESENT"},
	}
	want := map[string]any{
		"featureset": "cards",
		"at":         at,
		"results": []any{
			map[string]any{"entity": "c1", "features": c1},
			map[string]any{"entity": "nobody", "features": map[string]any{
				"amount_mean_24h": map[string]any{"value": nil, "status": "NOT_FOUND"},
				"txn_count_1h":    map[string]any{"value": num("0"), "status": "PRESENT"},
			}},
			map[string]any{"entity": "c1", "features": c1},
		},
		"freshness": map[string]any{"batch_watermark": rfc(e.tb), "stream_latest_tile": rfc(e.tb.Add(19 * time.Minute)), "stream_watermark": rfc(e.tb.Add(19*time.Minute + 30*time.Second))},
	}
	if diff := cmp.Diff(want, r.body); diff != "" {
		t.Errorf("response (-want +got):\n%s", diff)
	}

	t.Run("all features by default", func(t *testing.T) {
		r := e.do(http.MethodPost, "/v1/features/cards", fmt.Sprintf(`{"entities": ["c1"], "at": %q}`, at))
		res := r.body["results"].([]any)
		if got := len(featuresOf(t, res[0].(map[string]any)["features"])); got != e.cards.Outputs() {
			t.Errorf("got %d features, want %d", got, e.cards.Outputs())
		}
	})

	t.Run("parallel reads", func(t *testing.T) {
		keys := make([]string, 90)
		for i := range keys {
			keys[i] = fmt.Sprintf("%q", fmt.Sprintf("x%02d", i))
		}
		keys[45] = `"c1"`
		r := e.do(http.MethodPost, "/v1/features/cards", fmt.Sprintf(`{"entities": [%s], "features": ["txn_count_1h"], "at": %q}`, strings.Join(keys, ","), at))
		res := r.body["results"].([]any)
		for i, v := range res {
			m := v.(map[string]any)
			want := num("0")
			if i == 45 {
				want = num("3")
			}
			if got := featuresOf(t, m["features"])["txn_count_1h"][0]; m["entity"] != strings.Trim(keys[i], `"`) || got != want {
				t.Errorf("results[%d] = %v %v, want %s %v", i, m["entity"], got, keys[i], want)
			}
		}
	})

	t.Run("max entities", func(t *testing.T) {
		keys := make([]string, DefaultMaxEntities)
		for i := range keys {
			keys[i] = fmt.Sprintf("%q", fmt.Sprintf("c%d", i))
		}
		r := e.do(http.MethodPost, "/v1/features/cards", `{"entities": [`+strings.Join(keys, ",")+`], "features": ["txn_count_1h"]}`)
		if r.status != http.StatusOK || len(r.body["results"].([]any)) != DefaultMaxEntities {
			t.Errorf("%d entities: status %d, want 200 with %d results", DefaultMaxEntities, r.status, DefaultMaxEntities)
		}
	})
}

// TestSeam checks the merge at the batch watermark: an event at T_b − 1ms
// is in a batch tile and one at T_b in a stream tile, each counted exactly
// once; the same event written to both sides is counted once.
func TestSeam(t *testing.T) {
	e := newEnv(t)
	tb := e.tb
	before, at := tb.Add(-time.Millisecond), tb
	e.write(e.cards, schemas.FamilyBatch, e.card("seam", before, "b", 1))
	e.write(e.cards, schemas.FamilyStream, e.card("seam", at, "s", 2))
	for _, fam := range []string{schemas.FamilyBatch, schemas.FamilyStream} {
		e.write(e.cards, fam, e.card("both_before", before, "x", 1))
		e.write(e.cards, fam, e.card("both_at", at, "x", 1))
		e.write(e.cards, fam, e.card("both_sides", before, "x", 1), e.card("both_sides", at, "y", 2))
	}
	// Wrong side on purpose: a batch tile at or after T_b and a stream tile
	// before it are not read.
	e.write(e.cards, schemas.FamilyBatch, e.card("wrong_side", at, "x", 1))
	e.write(e.cards, schemas.FamilyStream, e.card("wrong_side", before, "x", 1))
	e.freshness("cards", tb, tb.Add(10*time.Minute))

	readAt := rfc(tb.Add(10 * time.Minute))
	tests := []struct {
		entity               string
		count, sum, distinct string
	}{
		{"seam", "2", "3", "2"},
		{"both_before", "1", "1", "1"},
		{"both_at", "1", "1", "1"},
		{"both_sides", "2", "3", "2"},
		{"wrong_side", "0", "0", "0"},
	}
	for _, tc := range tests {
		t.Run(tc.entity, func(t *testing.T) {
			got := features(t, e.get("/v1/features/cards/"+tc.entity+"?features=txn_count_1h,amount_sum_24h,merchants_7d&at="+readAt))
			want := map[string][2]any{
				"txn_count_1h":   {num(tc.count), "PRESENT"},
				"amount_sum_24h": {num(tc.sum), "PRESENT"},
				"merchants_7d":   {num(tc.distinct), "PRESENT"},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("features (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("no batch watermark: stream only", func(t *testing.T) {
		e := newEnv(t)
		e.write(e.cards, schemas.FamilyBatch, e.card("c", before, "b", 1))
		e.write(e.cards, schemas.FamilyStream, e.card("c", at, "s", 2), e.card("c", before, "s", 4))
		e.freshness("cards", time.Time{}, tb.Add(10*time.Minute))
		got := features(t, e.get("/v1/features/cards/c?features=txn_count_1h,amount_sum_24h&at="+readAt))
		want := map[string][2]any{"txn_count_1h": {num("2"), "PRESENT"}, "amount_sum_24h": {num("6"), "PRESENT"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("features (-want +got):\n%s", diff)
		}
	})
}

// TestDecay checks that the window is applied at read time: an event counted
// by a 1h window at at = t is gone at t + 1h + one tile.
func TestDecay(t *testing.T) {
	e := newEnv(t)
	ev := e.tb.Add(10*time.Minute + 20*time.Second)
	e.write(e.cards, schemas.FamilyStream, e.card("d", ev, "m", 5))
	e.freshness("cards", e.tb, e.tb)
	tile := ev.Truncate(time.Minute)
	tests := []struct {
		name string
		at   time.Time
		want string
		asOf time.Time // zero: exact at at
	}{
		{"at the event: not counted, and the head tile holds it", ev, "0", tile},
		{"1µs after the event", ev.Add(time.Microsecond), "1", time.Time{}},
		{"at the start of the event's tile", tile, "0", time.Time{}},
		{"at the end of the event's tile", tile.Add(time.Minute - time.Microsecond), "1", time.Time{}},
		{"one tile before the window passes it", ev.Add(time.Hour - time.Minute), "1", time.Time{}},
		{"a window after its tile start: still in", tile.Add(time.Hour), "1", time.Time{}},
		{"a window and a tile after its tile start", tile.Add(time.Hour + time.Minute), "0", time.Time{}},
		{"before the event's tile", ev.Add(-time.Minute), "0", time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := e.get("/v1/features/cards/d?features=txn_count_1h&at=" + rfc(tc.at))
			got := features(t, res)["txn_count_1h"][0]
			if got != num(tc.want) {
				t.Errorf("txn_count_1h at %s = %v, want %s", rfc(tc.at), got, tc.want)
			}
			asOf, _ := res.body["features"].(map[string]any)["txn_count_1h"].(map[string]any)["as_of"].(string)
			if want := ""; !tc.asOf.IsZero() {
				want = rfc(tc.asOf)
				if asOf != want {
					t.Errorf("txn_count_1h at %s: as_of %q, want %q", rfc(tc.at), asOf, want)
				}
			} else if asOf != want {
				t.Errorf("txn_count_1h at %s: as_of %q, want none (exact)", rfc(tc.at), asOf)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	e := newEnv(t)
	e.write(e.cards, schemas.FamilyStream, e.card("s", e.tb.Add(time.Minute), "m", 5))
	at := e.tb.Add(30 * time.Minute)
	tests := []struct {
		name   string
		tb, sl time.Time
		sw     time.Time // stream watermark; zero: not written
		want   map[string][2]any
	}{
		{"never written: stale", time.Time{}, time.Time{}, time.Time{}, map[string][2]any{
			"txn_count_1h": {num("1"), "STALE"}, "amount_max_1h": {num("5"), "STALE"}, "last_approved": {true, "STALE"}}},
		{"stream current", e.tb, at.Add(-time.Minute), time.Time{}, map[string][2]any{
			"txn_count_1h": {num("1"), "PRESENT"}, "amount_max_1h": {num("5"), "PRESENT"}, "last_approved": {true, "PRESENT"}}},
		{"stream 5m behind: not yet stale", e.tb, at.Add(-5 * time.Minute), time.Time{}, map[string][2]any{
			"txn_count_1h": {num("1"), "PRESENT"}, "amount_max_1h": {num("5"), "PRESENT"}, "last_approved": {true, "PRESENT"}}},
		{"stream 6m behind: stale", e.tb, at.Add(-6 * time.Minute), time.Time{}, map[string][2]any{
			"txn_count_1h": {num("1"), "STALE"}, "amount_max_1h": {num("5"), "STALE"}, "last_approved": {true, "STALE"}}},
		{"batch watermark current", at, e.tb, time.Time{}, map[string][2]any{
			"txn_count_1h": {num("0"), "PRESENT"}, "amount_max_1h": {nil, "NOT_FOUND"}, "last_approved": {nil, "NOT_FOUND"}}},
		{"idle stream: newest tile old, watermark current", e.tb, e.tb.Add(time.Minute), at.Add(-30 * time.Second), map[string][2]any{
			"txn_count_1h": {num("1"), "PRESENT"}, "amount_max_1h": {num("5"), "PRESENT"}, "last_approved": {true, "PRESENT"}}},
		{"stopped stream: watermark 6m behind, newest tile current", e.tb, at.Add(-time.Minute), at.Add(-6 * time.Minute), map[string][2]any{
			"txn_count_1h": {num("1"), "STALE"}, "amount_max_1h": {num("5"), "STALE"}, "last_approved": {true, "STALE"}}},
		{"batch watermark current, stream watermark old", at, e.tb, e.tb, map[string][2]any{
			"txn_count_1h": {num("0"), "PRESENT"}, "amount_max_1h": {nil, "NOT_FOUND"}, "last_approved": {nil, "NOT_FOUND"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.write(e.cards, schemas.FamilyStream, e.card("s", e.tb.Add(time.Minute), "m", 5))
			if !tc.sw.IsZero() {
				e.streamWatermark("cards", tc.sw)
			}
			e.freshness("cards", tc.tb, tc.sl)
			got := features(t, e.get("/v1/features/cards/s?features=txn_count_1h,amount_max_1h,last_approved&at="+rfc(at)))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("features (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("stale_after configurable", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.StaleAfter = time.Hour })
		e.freshness("cards", e.tb, at.Add(-50*time.Minute))
		got := features(t, e.get("/v1/features/cards/s?features=txn_count_1h&at="+rfc(at)))["txn_count_1h"][1]
		if got != "PRESENT" {
			t.Errorf("status = %v, want PRESENT with stale_after 1h", got)
		}
	})
}

func TestFeatureSets(t *testing.T) {
	e := newEnv(t)
	r := e.get("/v1/featuresets")
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	list := r.body["featuresets"].([]any)
	var names []string
	for _, s := range list {
		names = append(names, s.(map[string]any)["name"].(string))
	}
	if diff := cmp.Diff([]string{"cards", "users"}, names); diff != "" {
		t.Errorf("feature sets (-want +got):\n%s", diff)
	}

	r = e.get("/v1/featuresets/cards")
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	var got schemas.FeatureSet
	if err := json.Unmarshal([]byte(r.raw), &got); err != nil {
		t.Fatalf("decode definition: %v", err)
	}
	if len(got.Features) != len(e.cards.Features) || got.Features[6].Tile != time.Hour || got.Name != "cards" {
		t.Errorf("definition = %+v, want the cards set", got)
	}
	// cards has a stream source and no stale_after: the server's 5m default.
	if fresh := r.body["fresh_for"]; fresh != "5m" {
		t.Errorf(`definition's "fresh_for" = %v, want "5m"`, fresh)
	}
	// users is batch-only: a daily run, 26h plus its largest tile (1m).
	if fresh := e.get("/v1/featuresets/users").body["fresh_for"]; fresh != "1561m" {
		t.Errorf(`users' "fresh_for" = %v, want "1561m"`, fresh)
	}
	if strings.Contains(r.raw, `"file"`) {
		t.Errorf("definition shows the server's file path: %s", r.raw)
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	e.now = e.now.Add(time.Second) // any instant
	future := rfc(e.now.Add(2 * time.Minute))
	tooOld := rfc(e.now.Add(-30 * 24 * time.Hour))
	tests := []struct {
		name, method, path, body string
		status                   int
		code, message            string // message: a substring
	}{
		{"unknown feature set", "GET", "/v1/features/nope/c1", "", 404, "unknown_featureset", `unknown feature set "nope" (loaded: cards, users)`},
		{"unknown feature set POST", "POST", "/v1/features/nope", `{"entities":["a"]}`, 404, "unknown_featureset", `"nope"`},
		{"unknown definition", "GET", "/v1/featuresets/nope", "", 404, "unknown_featureset", `"nope"`},
		{"unknown feature", "GET", "/v1/features/cards/c1?features=txn_count_1h,bogus", "", 400, "unknown_feature", `no feature "bogus"`},
		{"unknown feature POST", "POST", "/v1/features/cards", `{"entities":["a"],"features":["bogus"]}`, 400, "unknown_feature", `"bogus"`},
		{"unknown query parameter", "GET", "/v1/features/cards/c1?feature=txn_count_1h", "", 400, "bad_request", `unknown query parameter "feature"`},
		{"bad at", "GET", "/v1/features/cards/c1?at=yesterday", "", 400, "bad_at", `"yesterday" is not an RFC 3339 time`},
		{"at twice", "GET", "/v1/features/cards/c1?at=" + future + "&at=" + future, "", 400, "bad_at", "once"},
		{"future at", "GET", "/v1/features/cards/c1?at=" + future, "", 400, "bad_at", "in the future"},
		{"future at POST", "POST", "/v1/features/cards", `{"entities":["a"],"at":"` + future + `"}`, 400, "bad_at", "in the future"},
		{"at older than retention", "GET", "/v1/features/cards/c1?at=" + tooOld, "", 400, "bad_at", "too old"},
		{"malformed JSON", "POST", "/v1/features/cards", `{"entities": [`, 400, "bad_json", "ends early"},
		{"syntax error", "POST", "/v1/features/cards", `{"entities": ["a",]}`, 400, "bad_json", "malformed JSON at byte"},
		{"not an object", "POST", "/v1/features/cards", `["a"]`, 400, "bad_json", "want a JSON object"},
		{"wrong type", "POST", "/v1/features/cards", `{"entities": "a"}`, 400, "bad_json", `field "entities": want a list of entity keys, got a string`},
		{"number entity", "POST", "/v1/features/cards", `{"entities": [1]}`, 400, "bad_json", `want a list of entity keys, got a number "1" in it`},
		{"unknown field", "POST", "/v1/features/cards", `{"entities": ["a"], "entity": "b"}`, 400, "bad_json", `unknown field "entity"`},
		{"trailing data", "POST", "/v1/features/cards", `{"entities": ["a"]} {}`, 400, "bad_json", "data after"},
		{"empty body", "POST", "/v1/features/cards", ``, 400, "bad_json", "empty body"},
		{"missing entities", "POST", "/v1/features/cards", `{"features": ["txn_count_1h"]}`, 400, "bad_request", `missing "entities"`},
		{"empty entities", "POST", "/v1/features/cards", `{"entities": []}`, 400, "bad_request", `"entities" is empty`},
		{"empty entity key", "POST", "/v1/features/cards", `{"entities": ["a", ""]}`, 400, "bad_request", "entities[1]: empty entity key"},
		{"long entity key", "GET", "/v1/features/cards/" + strings.Repeat("k", MaxEntityKeyBytes+1), "", 400, "bad_request", "longer than"},
		{"too many entities", "POST", "/v1/features/cards", `{"entities": [` + strings.Repeat(`"a",`, DefaultMaxEntities) + `"a"]}`, 400, "too_many_entities", "1001 entities, more than the 1000"},
		{"body too large", "POST", "/v1/features/cards", `{"entities": ["` + strings.Repeat("a", DefaultMaxBodyBytes) + `"]}`, 413, "body_too_large", "larger than 1048576 bytes"},
		{"wrong method on features", "DELETE", "/v1/features/cards/c1", "", 405, "method_not_allowed", `method "DELETE" is not allowed on /v1/features/{featureset}/{entity} (allowed: GET, HEAD)`},
		{"PUT on batch", "PUT", "/v1/features/cards", "", 405, "method_not_allowed", ""},
		{"GET by key without the key", "GET", "/v1/features/cards", "", 400, "bad_request", "missing key card_id: give ?card_id=..."},
		{"POST on definitions", "POST", "/v1/featuresets", "{}", 405, "method_not_allowed", ""},
		{"no such endpoint", "GET", "/v2/anything", "", 404, "not_found", "no such endpoint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.body)
			checkError(t, r, tc.status, tc.code, tc.message)
			if tc.status == 405 && r.header.Get("Allow") == "" {
				t.Errorf("%s %s: 405 without Allow", tc.method, tc.path)
			}
		})
	}
	if strings.Contains(e.logs.String(), "level=ERROR") {
		t.Errorf("bad input logged errors:\n%s", e.logs)
	}
}

func TestAuth(t *testing.T) {
	keys := writeKeys(t, `
keys:
  - {name: cards-only, key: "cards-key-0123456789", featuresets: [cards]}
  - {name: everything, key: "admin-key-0123456789", featuresets: ["*"]}
`)
	e := newEnv(t, func(c *Config) { c.Keys = keys })
	bearer := func(k string) []string { return []string{"Authorization", "Bearer " + k} }
	tests := []struct {
		name, method, path, body string
		header                   []string
		status                   int
	}{
		{"no key", "GET", "/v1/features/cards/c1", "", nil, 401},
		{"no key POST", "POST", "/v1/features/cards", `{"entities":["a"]}`, nil, 401},
		{"no key definitions", "GET", "/v1/featuresets", "", nil, 401},
		{"wrong key", "GET", "/v1/features/cards/c1", "", bearer("cards-key-012345678X"), 401},
		{"wrong scheme", "GET", "/v1/features/cards/c1", "", []string{"Authorization", "Basic Y2FyZHMta2V5"}, 401},
		{"empty bearer", "GET", "/v1/features/cards/c1", "", []string{"Authorization", "Bearer "}, 401},
		{"allowed", "GET", "/v1/features/cards/c1", "", bearer("cards-key-0123456789"), 200},
		{"scheme case-insensitive", "GET", "/v1/features/cards/c1", "", []string{"Authorization", "bearer cards-key-0123456789"}, 200},
		{"other set", "GET", "/v1/features/users/1", "", bearer("cards-key-0123456789"), 403},
		{"other set POST", "POST", "/v1/features/users", `{"entities":["1"]}`, bearer("cards-key-0123456789"), 403},
		{"other set definition", "GET", "/v1/featuresets/users", "", bearer("cards-key-0123456789"), 403},
		{"unknown set is forbidden, not revealed", "GET", "/v1/featuresets/nope", "", bearer("cards-key-0123456789"), 403},
		{"star", "GET", "/v1/features/users/1", "", bearer("admin-key-0123456789"), 200},
		{"star unknown set", "GET", "/v1/featuresets/nope", "", bearer("admin-key-0123456789"), 404},
		{"healthz open", "GET", "/healthz", "", nil, 200},
		{"readyz open", "GET", "/readyz", "", nil, 200},
		{"metrics are not on the API", "GET", "/metrics", "", nil, 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.body, tc.header...)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.raw)
			}
			if tc.status == 401 && r.header.Get("WWW-Authenticate") != `Bearer realm="tandem"` {
				t.Errorf("401 with WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
			}
		})
	}

	t.Run("list shows allowed sets only", func(t *testing.T) {
		r := e.get("/v1/featuresets", bearer("cards-key-0123456789")...)
		if list := r.body["featuresets"].([]any); len(list) != 1 || list[0].(map[string]any)["name"] != "cards" {
			t.Errorf("featuresets = %v, want only cards", list)
		}
	})
	if strings.Contains(e.logs.String(), "key-0123456789") {
		t.Errorf("a key was logged:\n%s", e.logs)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	e := newEnv(t)
	seedC1(e)
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := e.get(p); r.status != http.StatusOK {
			t.Errorf("GET %s: status %d: %s", p, r.status, r.raw)
		}
	}
	e.get("/v1/features/cards/c1")
	e.get("/v1/features/cards/c1?at=bad")
	e.do(http.MethodPost, "/v1/features/cards", `{"entities":["c1","c2"]}`)
	r := response{raw: e.metrics()}
	for _, want := range []string{
		`tandem_http_request_duration_seconds_count{code="200",route="GET /v1/features/{featureset}/{entity}"} 1`,
		`tandem_http_request_duration_seconds_count{code="400",route="GET /v1/features/{featureset}/{entity}"} 1`,
		`tandem_http_request_duration_seconds_count{code="200",route="POST /v1/features/{featureset}"} 1`,
		`tandem_bigtable_read_duration_seconds_count{op="read_row"} 1`,
		`tandem_bigtable_read_duration_seconds_count{op="read_rows"} 1`,
		`tandem_bigtable_read_errors_total{op="read_row"} 0`,
		fmt.Sprintf(`tandem_batch_watermark_seconds{featureset="cards"} %g`, float64(e.tb.Unix())),
		fmt.Sprintf(`tandem_stream_latest_tile_seconds{featureset="cards"} %g`, float64(e.tb.Add(19*time.Minute).Unix())),
		fmt.Sprintf(`tandem_stream_watermark_seconds{featureset="cards"} %g`, float64(e.tb.Add(19*time.Minute+30*time.Second).Unix())),
		`tandem_batch_watermark_seconds{featureset="users"} 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(r.raw, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
