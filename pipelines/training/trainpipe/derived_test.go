package trainpipe

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/schemastest"
)

// derivedServiceDef is a service over acct and users with derived
// features of its own: one over both sets, one over acct only.
const derivedServiceDef = `name: model
features:
  - {featureset: acct, key: account, features: [x_sum_24h, c_1h]}
  - {featureset: users, key: user, features: [views_1h]}
derived:
  - {name: x_per_view, expr: acct__x_sum_24h / users__views_1h}
  - {name: busy, expr: "acct__c_1h >= 3 or coalesce(users__views_1h, 0) > 4"}
`

// TestServiceDerivedColumns runs a service with derived features of its
// own and checks each derived column against the arithmetic, done here in
// Go, over the same row's feature columns (which the oracle tests check
// against brute force): null for a division by zero or a null input.
func TestServiceDerivedColumns(t *testing.T) {
	acct := schemastest.MustParse(t, oracleDef)
	users := schemastest.MustParse(t, usersDef)
	svc, err := schemas.ParseService("model.yaml", []byte(derivedServiceDef), []*schemas.FeatureSet{acct, users})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(31, 32))
	acctEvents := oracleEvents(acct, rng)
	userEvents := usersEvents(rng, 1500)
	dir := t.TempDir()
	acctPath := writeEvents(t, dir, acct, acctEvents)
	usersDir := filepath.Join(dir, "users")
	if err := os.Mkdir(usersDir, 0o755); err != nil {
		t.Fatal(err)
	}
	usersPath := writeEvents(t, usersDir, users, userEvents)
	var rows [][]string
	for i, q := range oracleInstants(acctEvents, rng) {
		rows = append(rows, []string{q.key, strconv.FormatInt(rng.Int64N(6)+1, 10), time.UnixMicro(q.at).UTC().Format(time.RFC3339Nano), strconv.Itoa(i)})
	}
	spinePath := filepath.Join(dir, "spine.csv")
	writeSpine(t, spinePath, []string{"account", "user", "ts", "label"}, rows)

	var reqs []Request
	for _, e := range svc.Entries {
		src := acctPath
		if e.Set == users {
			src = usersPath
		}
		reqs = append(reqs, Request{Set: e.Set, Keys: e.Keys, Features: e.FeatureNames(), Source: schemas.BatchSource{Files: src}})
	}
	cfg := &Config{Requests: reqs, Service: svc, SpineGlob: spinePath,
		Output: Output{Path: filepath.Join(dir, "out.parquet")}, DeadLetter: filepath.Join(dir, "dead")}
	out := runTraining(t, cfg)
	if len(out) != len(rows) {
		t.Fatalf("%d rows, want %d", len(out), len(rows))
	}
	cols := cfg.Columns()
	if got := cols[len(cols)-2:]; got[0].Name != "model__x_per_view" || got[0].Type != schemas.Float64 || got[1].Name != "model__busy" || got[1].Type != schemas.Bool {
		t.Fatalf("last columns %+v, want model__x_per_view float64 and model__busy bool", got)
	}
	var divByZero, values int
	for _, row := range out {
		xs, views, c := row["acct__x_sum_24h"], row["users__views_1h"], row["acct__c_1h"]
		var want any
		if xs != nil && views != nil && views.(int64) != 0 {
			want = xs.(float64) / float64(views.(int64))
			values++
		} else if views != nil && views.(int64) == 0 {
			divByZero++
		}
		if got := row["model__x_per_view"]; got != want {
			t.Errorf("row %v: x_per_view = %v, want %v", row["label"], got, want)
		}
		v := int64(0)
		if views != nil {
			v = views.(int64)
		}
		var busy any
		switch {
		case c != nil && c.(int64) >= 3, v > 4:
			busy = true
		case c == nil:
			busy = nil // null or false is null
		default:
			busy = false
		}
		if got := row["model__busy"]; got != busy {
			t.Errorf("row %v: busy = %v, want %v (c_1h %v, views %v)", row["label"], got, busy, c, views)
		}
	}
	if values == 0 || divByZero == 0 {
		t.Errorf("fixture: %d rows with a ratio, %d with no views; want both", values, divByZero)
	}

	// A service of one set: no join, the derived features follow the sweep.
	one, err := schemas.ParseService("one.yaml", []byte(`name: one
features:
  - {featureset: acct, key: account, features: [x_sum_24h, c_1h]}
derived:
  - {name: x_per_txn, expr: acct__x_sum_24h / acct__c_1h}
`), []*schemas.FeatureSet{acct})
	if err != nil {
		t.Fatal(err)
	}
	cfg = &Config{Requests: []Request{{Set: acct, Keys: []string{"account"}, Features: one.Entries[0].FeatureNames(), Source: schemas.BatchSource{Files: acctPath}}},
		Service: one, SpineGlob: spinePath, Output: Output{Path: filepath.Join(dir, "one.jsonl")}, DeadLetter: filepath.Join(dir, "dead1")}
	values = 0
	for _, row := range runTraining(t, cfg) {
		xs, c := row["acct__x_sum_24h"], row["acct__c_1h"].(int64)
		var want any
		if xs != nil && c != 0 {
			want = xs.(float64) / float64(c)
			values++
		}
		if got := row["one__x_per_txn"]; got != want {
			t.Errorf("one set, row %v: x_per_txn = %v, want %v", row["label"], got, want)
		}
	}
	if values == 0 {
		t.Error("one set: no row with a ratio")
	}
}

// usersEvents are n events of usersDef over users 1 to 5 in the 72 hours
// from oracleT0.
func usersEvents(rng *rand.Rand, n int) []schemas.Event {
	var out []schemas.Event
	t0 := oracleT0.UnixMicro()
	for range n {
		uid := rng.Int64N(5) + 1
		at := t0 + rng.Int64N(int64(72*time.Hour/time.Microsecond))
		out = append(out, schemas.Event{Key: strconv.FormatInt(uid, 10), Time: at,
			Values: []schemas.Value{schemas.Int64Value(uid), schemas.Int64Value(rng.Int64N(20)), {Type: schemas.Timestamp, Int: at}}})
	}
	return out
}
