package trainpipe

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/schemastest"
)

// pairsDef has a composite key of three parts: two strings (so that a
// naive join of the parts would be ambiguous) and an int64.
const pairsDef = `
name: pairs
entity: {name: user_merchant, key: [user, merchant, terminal]}
event_time: ts
fields:
  user: string
  merchant: string
  terminal: int64
  n: int64
  x: float64
  ts: timestamp
features:
  - {name: pc_1h, op: count, window: 1h}
  - {name: px_sum_24h, op: sum, field: x, window: 24h}
  - {name: pn_min_1h, op: min, field: n, window: 1h, tile: 15m}
  - {name: pn_last_24h, op: last, field: n, window: 24h, tile: 3h}
  - {name: px_mean_24h, op: mean, field: x, window: 24h}
`

// pairKey is one entity of pairs: its parts as a spine gives them.
type pairKey struct{ user, merchant, terminal string }

// pairKeys hold the encoding's separator and escape, and tuples whose
// parts joined naively would be equal ("7#a" "b" and "7" "a#b"), so that
// an ambiguous join would mix their events.
var pairKeys = []pairKey{
	{"7", "a#b", "1"}, {"7#a", "b", "1"}, {"7", "a", "1"}, {`7\`, "#a", "1"}, {`7\#`, "a", "1"},
	{"#", "#", "-5"}, {`\`, `\`, "0"}, {"7", "a", "12"},
}

// pairEvents is a random history over [oracleT0, +3d) of pairKeys, with
// events on tile boundaries.
func pairEvents(set *schemas.FeatureSet, rng *rand.Rand) []schemas.Event {
	span := int64(72 * time.Hour / time.Microsecond)
	t0 := oracleT0.UnixMicro()
	ev := func(k pairKey, t int64) schemas.Event {
		term, _ := strconv.ParseInt(k.terminal, 10, 64)
		vals := []schemas.Value{schemas.StringValue(k.user), schemas.StringValue(k.merchant), schemas.Int64Value(term),
			schemas.Int64Value(rng.Int64N(2000) - 500), schemas.Float64Value(rng.NormFloat64()*1e3 + 1e4), {Type: schemas.Timestamp, Int: t}}
		if rng.IntN(30) == 0 {
			vals[3+rng.IntN(2)] = schemas.Value{}
		}
		return schemas.Event{Time: t, Values: vals} // the pipeline decodes the key from the file
	}
	var out []schemas.Event
	for range 2000 {
		k := pairKeys[rng.IntN(len(pairKeys))]
		if rng.IntN(2) == 0 {
			k = pairKeys[0]
		}
		out = append(out, ev(k, t0+rng.Int64N(span)))
	}
	for range 30 {
		b := t0 + rng.Int64N(span/int64(15*time.Minute/time.Microsecond))*int64(15*time.Minute/time.Microsecond)
		out = append(out, ev(pairKeys[rng.IntN(len(pairKeys))], b))
	}
	return out
}

// TestCompositeKeyOracle is the training oracle for a composite entity
// key: spine rows join a set's events on all three key parts (columns
// named like the key fields, as --featureset does, or named otherwise, as
// a service names them), at instants on and off tile boundaries, and every
// value is checked against brute force over the raw events of the tuple,
// picked by comparing the events' key fields (not their encoded keys).
// Spine rows missing a part, or with a part of the wrong type, are
// dead-lettered with the part named.
//
// fixed dates: the training pipeline compares no spine instant with the
// clock (the dead-lettered rows' times; the events follow oracleT0, 30 days ago).
func TestCompositeKeyOracle(t *testing.T) {
	set := schemastest.MustParse(t, pairsDef)
	rng := rand.New(rand.NewPCG(21, 22))
	events := pairEvents(set, rng)
	dir := t.TempDir()
	evPath := writeEvents(t, dir, set, events)

	type query struct {
		k  pairKey
		at int64
	}
	t0 := oracleT0.UnixMicro()
	keys := append(slices.Clone(pairKeys), pairKey{"7", "a#", "1"}) // the last one has no events
	var queries []query
	for range 120 {
		queries = append(queries, query{keys[rng.IntN(len(keys))], t0 - 3600e6 + rng.Int64N(80*3600e6)})
	}
	for range 30 {
		tile := []int64{60e6, 900e6, 3600e6, 3 * 3600e6}[rng.IntN(4)]
		queries = append(queries, query{keys[rng.IntN(len(keys))], t0 + rng.Int64N(80*3600e6/tile)*tile})
	}
	for range 40 {
		e := events[rng.IntN(len(events))]
		k := pairKey{e.Values[0].Str, e.Values[1].Str, strconv.FormatInt(e.Values[2].Int, 10)}
		queries = append(queries, query{k, e.Time + []int64{0, 1, -1}[rng.IntN(3)]})
	}
	// eventsOf are the events of k, by their fields, under one sentinel
	// key for bruteForce.
	eventsOf := func(k pairKey) []schemas.Event {
		var out []schemas.Event
		for _, e := range events {
			if e.Values[0].Str == k.user && e.Values[1].Str == k.merchant && strconv.FormatInt(e.Values[2].Int, 10) == k.terminal {
				e.Key = "tuple"
				out = append(out, e)
			}
		}
		return out
	}
	rows := make([][]string, len(queries))
	for i, q := range queries {
		rows[i] = []string{q.k.user, q.k.merchant, q.k.terminal, time.UnixMicro(q.at).UTC().Format(time.RFC3339Nano), strconv.Itoa(i)}
	}
	bad := [][]string{
		{"7", "", "1", "2026-03-02T00:00:00Z", "-1"},   // an empty part
		{"7", "a", "", "2026-03-02T00:00:00Z", "-2"},   // an empty int64 part
		{"7", "a", "x1", "2026-03-02T00:00:00Z", "-3"}, // not an int64
	}
	for _, tc := range []struct {
		name, spine, output string
		cols                []string // the spine's key columns; nil: the key field names
	}{
		{"key field names", "spine.jsonl", "out.parquet", nil},
		{"columns a service names", "spine.csv", "out.jsonl", []string{"u", "shop", "term"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			names := tc.cols
			if names == nil {
				names = set.Entity.Keys
			}
			spinePath := filepath.Join(dir, tc.spine)
			writeSpine(t, spinePath, append(slices.Clone(names), "when", "label"), append(slices.Clone(rows), bad...))
			if tc.spine == "spine.jsonl" { // and a row without the terminal (null)
				f, err := os.OpenFile(spinePath, os.O_APPEND|os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteString(`{"` + names[0] + `": "7", "` + names[1] + `": "a", "when": "2026-03-02T00:00:00Z", "label": -4}` + "\n"); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
			}
			cfg := &Config{
				Requests:   []Request{{Set: set, Keys: tc.cols, Source: schemas.BatchSource{Files: evPath}}},
				SpineGlob:  spinePath,
				SpineTime:  "when",
				Output:     Output{Path: filepath.Join(dir, tc.name+"-"+tc.output)},
				DeadLetter: filepath.Join(dir, tc.name+"-dead"),
			}
			out := runTraining(t, cfg)
			if len(out) != len(queries) {
				t.Fatalf("%d output rows, want %d", len(out), len(queries))
			}
			checked, nonZero := 0, 0
			for _, row := range out {
				i := labelOf(t, row["label"])
				q := queries[i]
				if row[names[0]] != q.k.user || row[names[1]] != q.k.merchant {
					t.Fatalf("row %d: key %v %v, want %v", i, row[names[0]], row[names[1]], q.k)
				}
				evs := eventsOf(q.k)
				for _, f := range set.Features {
					got := row[schemas.FeatureColumn(set.Name, f.Name)]
					want, ok := bruteForce(f, evs, "tuple", q.at)
					if !ok {
						want = nil
					}
					if !agrees(f, got, want) {
						t.Errorf("%s of %v at %s (row %d): %v, want %v", f.Name, q.k, time.UnixMicro(q.at).UTC().Format(time.RFC3339Nano), i, got, want)
					}
					if want != nil && want != int64(0) {
						nonZero++
					}
					checked++
				}
			}
			if nonZero < checked/3 {
				t.Errorf("%d of %d values non-zero: the spine misses the data", nonZero, checked)
			}
			data, err := os.ReadFile(cfg.DeadLetter + ".jsonl")
			if err != nil {
				t.Fatal(err)
			}
			var reasons []string
			for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
				var d struct{ Reason string }
				if err := json.Unmarshal(line, &d); err != nil {
					t.Fatal(err)
				}
				reasons = append(reasons, d.Reason[strings.Index(d.Reason, ": ")+2:])
			}
			slices.Sort(reasons)
			part := func(col, reason string, i int) string {
				return `column "` + col + `": ` + reason + ` (part ` + strconv.Itoa(i) + ` of 3 of the entity key (user, merchant, terminal) of feature set pairs)`
			}
			want := []string{
				part(names[1], "empty entity key", 2),
				part(names[2], "empty entity key", 3),
				part(names[2], `entity key "x1" is not an int64`, 3),
			}
			if tc.spine == "spine.jsonl" {
				want = append(want, part(names[2], "missing entity key", 3))
			}
			slices.Sort(want)
			if diff := cmp.Diff(want, reasons); diff != "" {
				t.Errorf("dead letters (-want +got):\n%s", diff)
			}
		})
	}
	// A request whose key columns do not match the key is a config error.
	cfg := &Config{Requests: []Request{{Set: set, Keys: []string{"u"}}}, SpineGlob: "x.csv", Output: Output{Path: "o.csv"}, DeadLetter: "d"}
	if err := Prepare(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "feature set pairs is keyed by (user, merchant, terminal): give 3 spine key columns, not 1") {
		t.Errorf("Prepare with one key column = %v", err)
	}
}
