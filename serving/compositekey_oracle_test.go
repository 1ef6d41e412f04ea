package serving

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/schemastest"
	"github.com/tandem-fp/tandem/schemas/schemastest/brute"
)

// pairsYAML is a feature set with a composite key of three parts (user,
// merchant, terminal): two strings, so that a naive join of the parts
// would be ambiguous, and an int64.
const pairsYAML = `
name: pairs
entity: {name: user_merchant, key: [user, merchant, terminal]}
event_time: ts
fields:
  user: string
  merchant: string
  terminal: int64
  amount: float64
  approved: bool
  ts: timestamp
sources: {stream: {pubsub: {subscription: projects/tandem-local/subscriptions/pairs}}}
retention: 30d
features:
  - {name: txn_count_1h, op: count, window: 1h}
  - {name: amount_sum_24h, op: sum, field: amount, window: 24h}
  - {name: amount_max_1h, op: max, field: amount, window: 1h}
  - {name: declined_count_7d, op: count, window: 7d, where: not approved}
  - {name: last_amount_7d, op: last, field: amount, window: 7d, tile: 1h}
`

// pairTuple is one (user, merchant, terminal) entity of pairs.
type pairTuple struct {
	user, merchant string
	terminal       int64
}

// pairTuples are the entities of the composite-key oracle: parts that hold
// the encoding's separator and escape, tuples whose parts joined naively
// would be equal ("7#a" "b" and "7" "a#b"), or equal if the escape byte
// were not escaped itself, so that any ambiguity of the row keys would mix
// two entities' events.
var pairTuples = []pairTuple{
	{"7", "a#b", 1}, {"7#a", "b", 1}, {"7", "a", 1}, {`7\`, "#a", 1}, {`7\#`, "a", 1},
	{"#", "#", -5}, {`\`, `\`, 0}, {"7", "a", 12},
}

// pairEvent decodes an event of pairs from JSON, the way both pipelines
// do, so its entity key comes from the real decode path.
func pairEvent(t *testing.T, set *schemas.FeatureSet, p pairTuple, at time.Time, amount float64, approved bool) schemas.Event {
	t.Helper()
	b, err := json.Marshal(map[string]any{"user": p.user, "merchant": p.merchant, "terminal": p.terminal, "amount": amount, "approved": approved, "ts": rfc(at)})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := set.DecodeJSON(b)
	if err != nil {
		t.Fatalf("DecodeJSON(%s): %v", b, err)
	}
	return ev
}

// pairKeep is a filter written out in Go (sharing no code with schemas'
// expressions): nil for features without one.
func pairKeep(set *schemas.FeatureSet, feature string) func(schemas.Event) bool {
	if feature != "declined_count_7d" { // not approved
		return nil
	}
	i, _ := set.FieldIndex("approved")
	return func(ev schemas.Event) bool { return ev.Values[i].Type == schemas.Bool && ev.Values[i].Int == 0 }
}

// TestCompositeKeyPointInTime is the serving oracle for a composite entity
// key: random events of several (user, merchant, terminal) tuples, written the
// way the pipelines write them (batch before T_b, stream from hours before
// it), read at instants on and off tile boundaries through every way the
// API takes key parts (GET with query parameters, POST with key objects,
// a feature service keyed by two columns, Feast's entity columns), each
// value checked against the tuple's own raw events, picked by comparing
// the events' user_id and merchant fields (not their encoded keys).
func TestCompositeKeyPointInTime(t *testing.T) {
	pairs := schemastest.MustParse(t, pairsYAML)
	svc, err := schemas.ParseService("svc.yaml", []byte(`name: pair_model
features:
  - featureset: pairs
    key: [uid, shop, term]
    features: [txn_count_1h, amount_sum_24h, declined_count_7d]
`), []*schemas.FeatureSet{pairs})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) {
		c.Sets = append(c.Sets, pairs)
		c.Services = append(c.Services, svc)
	})
	r := rand.New(rand.NewPCG(3, 4))
	tb := e.tb
	streamFrom := tb.Add(-6 * time.Hour)
	var all, batch, stream []schemas.Event
	for i, p := range pairTuples {
		n := []int{300, 40, 40, 5}[i%4]
		for range n {
			at := tb.Add(time.Duration(r.Int64N(int64(48*time.Hour))) - 40*time.Hour).Truncate(time.Millisecond)
			if !at.Before(e.now) {
				continue
			}
			ev := pairEvent(t, pairs, p, at, float64(r.IntN(20000))/100, r.IntN(4) > 0)
			all = append(all, ev)
			if at.Before(tb) {
				batch = append(batch, ev)
			}
			if !at.Before(streamFrom) {
				stream = append(stream, ev)
			}
		}
	}
	e.write(pairs, schemas.FamilyBatch, batch...)
	e.write(pairs, schemas.FamilyStream, stream...)
	e.freshness("pairs", tb, e.now.Truncate(time.Minute))

	ui, _ := pairs.FieldIndex("user")
	mi, _ := pairs.FieldIndex("merchant")
	ti, _ := pairs.FieldIndex("terminal")
	eventsOf := func(p pairTuple) []schemas.Event {
		var out []schemas.Event
		for _, ev := range all {
			if ev.Values[ui].Str == p.user && ev.Values[mi].Str == p.merchant && ev.Values[ti].Int == p.terminal {
				out = append(out, ev)
			}
		}
		return out
	}
	// check compares one tuple's features object with brute force.
	checked, nonZero := 0, 0
	check := func(where string, p pairTuple, at time.Time, feats map[string]any, names []string) {
		t.Helper()
		evs := eventsOf(p)
		for _, name := range names {
			f, _ := pairs.Feature(name)
			o, ok := feats[name].(map[string]any)
			if !ok {
				t.Errorf("%s: %v %s missing in %v", where, p, name, feats)
				continue
			}
			exact := at
			if s, ok := o["as_of"].(string); ok {
				asOf, err := time.Parse(time.RFC3339Nano, s)
				if err != nil || !asOf.Before(at) || asOf.UnixMicro() != floorTo(at.UnixMicro(), f.Tile) {
					t.Errorf("%s: %v %s at %s: as_of %q, want the head tile start before at", where, p, name, rfc(at), s)
				}
				exact = asOf
			}
			checked++
			want, ok := bruteForce(f, evs, exact, pairKeep(pairs, name))
			if !ok {
				if o["value"] != nil || o["status"] != "NOT_FOUND" {
					t.Errorf("%s: %v %s at %s = %v, want null NOT_FOUND", where, p, name, rfc(at), o)
				}
				continue
			}
			got, err := brute.Canon(f, o["value"])
			if err != nil {
				t.Fatalf("%s: %v %s at %s: %v", where, p, name, rfc(at), err)
			}
			if msg := brute.Agrees(f, got, want); msg != "" {
				t.Errorf("%s: %v %s at %s (exact at %s): %s", where, p, name, rfc(at), rfc(exact), msg)
			} else if fmt.Sprint(got) != "0" {
				nonZero++
			}
		}
	}
	allNames := make([]string, len(pairs.Features))
	for i, f := range pairs.Features {
		allNames[i] = f.Name
	}
	// Read instants: random ones around the seam, tile boundaries of every
	// tile size (1m, 15m, 3h, 1h), events and 1 µs after them, now.
	var reads []time.Time
	for range 10 {
		reads = append(reads, tb.Add(time.Duration(r.Int64N(int64(12*time.Hour)))-4*time.Hour).Truncate(time.Microsecond))
	}
	for _, d := range []time.Duration{time.Minute, 15 * time.Minute, time.Hour, 3 * time.Hour} {
		reads = append(reads, tb.Add(-d), tb, e.now.Truncate(d))
	}
	for range 4 {
		ev := all[r.IntN(len(all))]
		reads = append(reads, ev.EventTime(), ev.EventTime().Add(time.Microsecond))
	}
	reads = append(reads, e.now)
	for _, at := range reads {
		if at.After(e.now) {
			continue
		}
		atQ := url.QueryEscape(rfc(at))
		// GET, the key parts as query parameters named like the key fields.
		for _, p := range pairTuples {
			q := url.Values{"user": {p.user}, "merchant": {p.merchant}, "terminal": {strconv.FormatInt(p.terminal, 10)}}
			res := e.get("/v1/features/pairs?" + q.Encode() + "&at=" + atQ)
			if res.status != 200 {
				t.Fatalf("GET %v at %s: %d %s", p, rfc(at), res.status, res.raw)
			}
			ent, _ := res.body["entity"].(map[string]any)
			if ent["user"] != p.user || ent["merchant"] != p.merchant || fmt.Sprint(ent["terminal"]) != strconv.FormatInt(p.terminal, 10) {
				t.Errorf("GET %v: entity = %v, want its parts", p, res.body["entity"])
			}
			check("GET", p, at, res.body["features"].(map[string]any), allNames)
		}
		// POST, every tuple as a key object (terminal as a number and as
		// a string holding one), in one request.
		var objs []string
		for i, p := range pairTuples {
			u, _ := json.Marshal(p.user)
			m, _ := json.Marshal(p.merchant)
			if i%2 == 0 {
				objs = append(objs, fmt.Sprintf(`{"user": %s, "merchant": %s, "terminal": %d}`, u, m, p.terminal))
			} else {
				objs = append(objs, fmt.Sprintf(`{"terminal": "%d", "merchant": %s, "user": %s}`, p.terminal, m, u))
			}
		}
		res := e.do("POST", "/v1/features/pairs", fmt.Sprintf(`{"entities": [%s], "at": %q}`, strings.Join(objs, ","), rfc(at)))
		if res.status != 200 {
			t.Fatalf("POST at %s: %d %s", rfc(at), res.status, res.raw)
		}
		for i, item := range res.body["results"].([]any) {
			check("POST", pairTuples[i], at, item.(map[string]any)["features"].(map[string]any), allNames)
		}
		// The feature service, keyed by the columns uid and shop.
		var rows []string
		for _, p := range pairTuples {
			u, _ := json.Marshal(p.user)
			m, _ := json.Marshal(p.merchant)
			rows = append(rows, fmt.Sprintf(`{"uid": %s, "shop": %s, "term": %d}`, u, m, p.terminal))
		}
		res = e.do("POST", "/v1/services/pair_model", fmt.Sprintf(`{"rows": [%s], "at": %q}`, strings.Join(rows, ","), rfc(at)))
		if res.status != 200 {
			t.Fatalf("POST service at %s: %d %s", rfc(at), res.status, res.raw)
		}
		for i, item := range res.body["results"].([]any) {
			feats := item.(map[string]any)["features"].(map[string]any)["pairs"].(map[string]any)
			check("service", pairTuples[i], at, feats, []string{"txn_count_1h", "amount_sum_24h", "declined_count_7d"})
		}
	}
	// Feast's shape: the key parts as entity columns; now.
	var users, merchants, terminals []string
	for _, p := range pairTuples {
		u, _ := json.Marshal(p.user)
		m, _ := json.Marshal(p.merchant)
		users = append(users, string(u))
		merchants = append(merchants, string(m))
		terminals = append(terminals, strconv.FormatInt(p.terminal, 10))
	}
	res := e.do("POST", "/get-online-features", fmt.Sprintf(`{"features": ["pairs:txn_count_1h", "pairs:amount_sum_24h"], "entities": {"user": [%s], "merchant": [%s], "terminal": [%s]}}`,
		strings.Join(users, ","), strings.Join(merchants, ","), strings.Join(terminals, ",")))
	if res.status != 200 {
		t.Fatalf("Feast: %d %s", res.status, res.raw)
	}
	names := res.body["metadata"].(map[string]any)["feature_names"].([]any)
	cols := res.body["results"].([]any)
	for c, name := range names {
		f, stored := pairs.Feature(fmt.Sprint(name))
		if !stored {
			continue // an entity column
		}
		vals := cols[c].(map[string]any)["values"].([]any)
		for i, p := range pairTuples {
			want, ok := bruteForce(f, eventsOf(p), e.now, nil)
			got, err := brute.Canon(f, vals[i])
			switch {
			case !ok && vals[i] != nil:
				t.Errorf("Feast: %v %s = %v, want null", p, name, vals[i])
			case ok && err != nil:
				t.Errorf("Feast: %v %s = %v: %v", p, name, vals[i], err)
			case ok:
				if msg := brute.Agrees(f, got, want); msg != "" {
					t.Errorf("Feast: %v %s: %s", p, name, msg)
				}
			}
			checked++
		}
	}
	if checked < 1000 || nonZero < checked/4 {
		t.Errorf("checked %d values, %d non-zero: the test does not reach the data", checked, nonZero)
	}
}

// TestCompositeKeyBadRequests checks that a request that does not give a
// composite key's parts as the API documents is a 400 saying what is
// wrong.
func TestCompositeKeyBadRequests(t *testing.T) {
	pairs := schemastest.MustParse(t, pairsYAML)
	e := newEnv(t, func(c *Config) { c.Sets = append(c.Sets, pairs) })
	long := strings.Repeat("m", 1023)
	tests := []struct {
		name, method, path, body string
		want                     string
	}{
		{"missing part", "GET", "/v1/features/pairs?user=7&terminal=1", "",
			"missing key merchant: give ?user=...&merchant=...&terminal=... (part 2 of 3 of the entity key (user, merchant, terminal) of feature set pairs, a string)"},
		{"int64 part not a number", "GET", "/v1/features/pairs?user=7&merchant=a&terminal=x", "", `terminal: want an int64 key, got "x"`},
		{"part twice", "GET", "/v1/features/pairs?user=7&user=8&merchant=a&terminal=1", "", "give user once, not 2 times"},
		{"empty part", "GET", "/v1/features/pairs?user=7&merchant=&terminal=1", "", "merchant: empty entity key"},
		{"unknown parameter", "GET", "/v1/features/pairs?user=7&merchant=a&terminal=1&shop=b", "", `unknown query parameter "shop"`},
		{"path form", "GET", "/v1/features/pairs/7", "",
			"feature set pairs has a composite key (user, merchant, terminal): give its parts as query parameters, GET /v1/features/pairs?user=...&merchant=...&terminal=..."},
		{"parts too long together", "GET", "/v1/features/pairs?user=7&terminal=1&merchant=" + long, "",
			"entity: the parts of entity key (user, merchant, terminal) are 1027 bytes together"},
		{"POST a string", "POST", "/v1/features/pairs", `{"entities": ["7#a#1"]}`,
			`field "entities": want a list of objects {"user": ..., "merchant": ..., "terminal": ...}, got a string in it`},
		{"POST missing part", "POST", "/v1/features/pairs", `{"entities": [{"user": "7", "merchant": "a", "terminal": 1}, {"user": "7", "terminal": 1}]}`,
			"entities[1]: missing key field merchant (part 2 of 3"},
		{"POST wrong type", "POST", "/v1/features/pairs", `{"entities": [{"user": "7", "merchant": 3, "terminal": 1}]}`,
			"entities[0].merchant: want a string key, got a number"},
		{"POST null part", "POST", "/v1/features/pairs", `{"entities": [{"user": "7", "merchant": "a", "terminal": null}]}`,
			"entities[0].terminal: want an int64 key (a JSON integer or a string holding one), got null"},
		{"POST unknown field", "POST", "/v1/features/pairs", `{"entities": [{"user": "7", "merchant": "a", "terminal": 1, "card": "c"}]}`,
			`entities[0]: unknown key field "card" (feature set pairs is keyed by (user, merchant, terminal))`},
		{"Feast missing column", "POST", "/get-online-features", `{"features": ["pairs:txn_count_1h"], "entities": {"user": ["7"], "terminal": [1]}}`,
			"entities: missing entity column merchant (a string part of the entity key of feature set pairs)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do(tc.method, tc.path, tc.body)
			errBody, _ := res.body["error"].(map[string]any)
			msg := fmt.Sprint(errBody["message"])
			if res.status != 400 || !strings.Contains(msg, tc.want) {
				t.Errorf("%s %s = %d %q, want 400 containing %q", tc.method, tc.path, res.status, msg, tc.want)
			}
		})
	}
	// A single-key set takes its key as a query parameter too, and as a
	// key object in a POST.
	e.write(e.cards, schemas.FamilyStream, e.card("c#1", e.now.Add(-time.Minute), "a", 5))
	e.freshness("cards", e.tb, e.now.Truncate(time.Minute))
	for _, res := range []response{
		e.get("/v1/features/cards?card_id=c%231&features=txn_count_1h"),
		e.do("POST", "/v1/features/cards", `{"entities": [{"card_id": "c#1"}], "features": ["txn_count_1h"]}`),
	} {
		if res.status != 200 || !strings.Contains(res.raw, `"entity":"c#1"`) || !strings.Contains(res.raw, `"txn_count_1h":{"value":1,`) {
			t.Errorf("single key by parameter or object = %d %s, want entity c#1 with one transaction", res.status, res.raw)
		}
	}
}
