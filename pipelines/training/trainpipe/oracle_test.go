package trainpipe

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/apache/arrow/go/v15/parquet/file"
	"github.com/apache/arrow/go/v15/parquet/pqarrow"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/google/go-cmp/cmp"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/sample"
	"github.com/tandem-fp/tandem/schemas/schemastest"
	"github.com/tandem-fp/tandem/schemas/schemastest/brute"
)

func TestMain(m *testing.M) { ptest.Main(m) }

// oracleDef covers every op, over tiles of 1m, 15m, 1h and 3h.
const oracleDef = `
name: acct
entity: {name: account, key: account}
event_time: ts
fields:
  account: string
  n: int64
  x: float64
  s: string
  ok: bool
  ts: timestamp
features:
  - {name: c_1h, op: count, window: 1h}
  - {name: n_sum_1h, op: sum, field: n, window: 1h}
  - {name: x_sum_24h, op: sum, field: x, window: 24h}
  - {name: n_min_1h, op: min, field: n, window: 1h, tile: 15m}
  - {name: x_max_24h, op: max, field: x, window: 24h}
  - {name: s_min_24h, op: min, field: s, window: 24h}
  - {name: x_mean_1h, op: mean, field: x, window: 1h}
  - {name: n_mean_24h, op: mean, field: n, window: 24h}
  - {name: x_stddev_24h, op: stddev, field: x, window: 24h}
  - {name: n_stddev_1h, op: stddev, field: n, window: 1h}
  - {name: s_last_1h, op: last, field: s, window: 1h}
  - {name: ok_last_24h, op: last, field: ok, window: 24h, tile: 3h}
  - {name: s_distinct_7d, op: approx_count_distinct, field: s, window: 7d}
  - {name: n_distinct_1h, op: approx_count_distinct, field: n, window: 1h}
  - {name: notok_count_1h, op: count, window: 1h, where: not ok}
  - {name: x_sum_big_24h, op: sum, field: x, window: 24h, where: 'x > 10000 and s in ("apple", "kiwi")'}
  - {name: n_max_1h, op: max, field: n, window: 1h, tile: 15m, where: n < 0 or ok is null}
  - {name: s_first_24h, op: first, field: s, window: 24h}
  - {name: s_last3_1h, op: last_k, field: s, k: 3, window: 1h}
  - {name: n_first2_24h, op: first_k, field: n, k: 2, window: 24h, tile: 3h}
  - {name: s_top3_7d, op: top_k, field: s, k: 3, window: 7d}
  - {name: x_pct_24h, op: approx_percentile, field: x, percentiles: [0.1, 0.5, 0.9, 0.99], window: 24h}
  - {name: n_pct_1h, op: approx_percentile, field: n, percentiles: [0.5], window: 1h, tile: 15m}
  - {name: s_hist_24h, op: histogram, field: s, buckets: 4, window: 24h}
derived:
  - {name: big_x_per_c, expr: x_sum_big_24h / c_1h}
  - {name: notok_or_low, expr: 'notok_count_1h > 3 or coalesce(n_max_1h, 0) < -400'}
`

// oracleT0 is midnight 30 days ago: the oracle's history (3 days) and
// instants (80 hours) stay in the past whatever the date.
var oracleT0 = schemastest.DaysAgo(30)

// oracleEvents is a random history over [t0, t0+3d) for a few entities,
// with events on tile boundaries and several at the same instant.
func oracleEvents(set *schemas.FeatureSet, rng *rand.Rand) []schemas.Event {
	entities := []string{"a_1", "a_2", "a_3", "a_4", "a_5"}
	words := []string{"apple", "kiwi", "lime", "pear", "plum", "fig", "date", "yuzu", "lemon", "quince"}
	span := int64(72 * time.Hour / time.Microsecond)
	ev := func(key string, t int64) schemas.Event {
		vals := make([]schemas.Value, len(set.Fields))
		for i, fd := range set.Fields {
			switch fd.Name {
			case "account":
				vals[i] = schemas.StringValue(key)
			case "n":
				vals[i] = schemas.Int64Value(rng.Int64N(2000) - 500)
			case "x":
				vals[i] = schemas.Float64Value(rng.NormFloat64()*1e3 + 1e4)
			case "s":
				vals[i] = schemas.StringValue(words[rng.IntN(len(words))])
			case "ok":
				vals[i] = schemas.BoolValue(rng.IntN(3) > 0)
			case "ts":
				vals[i] = schemas.Value{Type: schemas.Timestamp, Int: t}
			}
			if fd.Name != "account" && fd.Name != "ts" && rng.IntN(30) == 0 {
				vals[i] = schemas.Value{}
			}
		}
		return schemas.Event{Key: key, Time: t, Values: vals}
	}
	t0 := oracleT0.UnixMicro()
	var out []schemas.Event
	for range 3000 {
		// Entity a_1 is hot: half the events.
		key := entities[rng.IntN(len(entities))]
		if rng.IntN(2) == 0 {
			key = "a_1"
		}
		out = append(out, ev(key, t0+rng.Int64N(span)))
	}
	for range 40 {
		// On boundaries of 15m and 3h tiles, and twice at one instant.
		b := t0 + rng.Int64N(span/int64(15*time.Minute/time.Microsecond))*int64(15*time.Minute/time.Microsecond)
		key := entities[rng.IntN(len(entities))]
		out = append(out, ev(key, b), ev(key, b))
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// oracleInstants are spine instants: random ones (off boundaries), tile
// boundaries, at an event, 1µs after and 1µs before one, before all events.
func oracleInstants(events []schemas.Event, rng *rand.Rand) []struct {
	key string
	at  int64
} {
	type q = struct {
		key string
		at  int64
	}
	t0 := oracleT0.UnixMicro()
	span := int64(80 * time.Hour / time.Microsecond)
	var out []q
	keys := []string{"a_1", "a_2", "a_3", "a_4", "a_5", "nobody"}
	for range 150 {
		out = append(out, q{keys[rng.IntN(len(keys))], t0 - int64(time.Hour/time.Microsecond) + rng.Int64N(span)})
	}
	for range 40 {
		tile := []int64{60e6, 900e6, 3600e6, 3 * 3600e6}[rng.IntN(4)]
		out = append(out, q{keys[rng.IntN(len(keys))], t0 + rng.Int64N(span/tile)*tile})
	}
	for range 60 {
		e := events[rng.IntN(len(events))]
		out = append(out, q{e.Key, e.Time + []int64{0, 1, -1}[rng.IntN(3)]})
	}
	return out
}

// bruteForce computes feature f at `at` from the raw events, by its
// definition (package brute: the events of the entity with time in
// [floor((at−W)/T)·T, at) that the feature's filter, written out in Go by
// oracleKeep, keeps), sharing no code with the tiles, the algebra or the
// expression evaluator. ok is false where the server says NOT_FOUND.
func bruteForce(f schemas.Feature, events []schemas.Event, key string, at int64) (v any, ok bool) {
	return brute.At(f, events, key, at, oracleKeep(f.Name))
}

// plain is a value as the output files give it back: string, int64,
// float64 or bool (timestamps as Unix µs).
func plain(v schemas.Value) any { return brute.Plain(v) }

// writeEvents writes events as JSON lines to dir/events.jsonl.
func writeEvents(t *testing.T, dir string, set *schemas.FeatureSet, events []schemas.Event) string {
	t.Helper()
	var b bytes.Buffer
	if err := sample.WriteJSONL(&b, set, events); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "events.jsonl")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// runTraining runs the pipeline on prism and returns the output rows as
// maps of column name to plain value (nil for null).
func runTraining(t *testing.T, cfg *Config) []map[string]any {
	t.Helper()
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	for _, path := range OutputFiles(cfg.Output) {
		rows = append(rows, readOutput(t, path, cfg.Columns())...)
	}
	return rows
}

// readOutput reads an output file back with a reader that is not the
// writer: encoding/csv, encoding/json, or Arrow's Parquet reader.
func readOutput(t *testing.T, path string, cols []Column) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	switch f, _ := FormatOf(path); f {
	case JSONLines:
		for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			d := json.NewDecoder(bytes.NewReader(line))
			d.UseNumber()
			var m map[string]any
			if err := d.Decode(&m); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			for _, c := range cols {
				if c.Type.Composite() {
					m[c.Name] = canonComposite(t, c, m[c.Name])
					continue
				}
				m[c.Name] = fromJSON(t, m[c.Name], c.Type)
			}
			rows = append(rows, m)
		}
	case CSV:
		recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		header := recs[0]
		if got := strings.Join(header, ", "); got != columnNames(cols) {
			t.Fatalf("%s header %s, want %s", path, got, columnNames(cols))
		}
		for _, rec := range recs[1:] {
			m := map[string]any{}
			for i, c := range cols {
				if c.Type.Composite() {
					m[c.Name] = compositeFromText(t, c, rec[i])
					continue
				}
				m[c.Name] = fromText(t, rec[i], c.Type)
			}
			rows = append(rows, m)
		}
	case Parquet:
		pf, err := file.NewParquetReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		defer pf.Close()
		fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
		if err != nil {
			t.Fatal(err)
		}
		tbl, err := fr.ReadTable(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer tbl.Release()
		tr := array.NewTableReader(tbl, 1000)
		defer tr.Release()
		for tr.Next() {
			rec := tr.Record()
			for i := range int(rec.NumRows()) {
				m := map[string]any{}
				for j, c := range cols {
					if rec.ColumnName(j) != c.Name {
						t.Fatalf("%s column %d is %s, want %s", path, j, rec.ColumnName(j), c.Name)
					}
					if c.Type.Composite() {
						m[c.Name] = arrowComposite(t, c, rec.Column(j), i)
						continue
					}
					m[c.Name] = nilIfNull(arrowValue(rec.Column(j), i))
				}
				rows = append(rows, m)
			}
		}
	}
	return rows
}

func nilIfNull(v schemas.Value) any {
	if v.IsNull() {
		return nil
	}
	return plain(v)
}

func fromText(t *testing.T, s string, typ schemas.Type) any {
	t.Helper()
	if s == "" { // CSV has no null: an empty field is one (and so is an empty string)
		return nil
	}
	switch typ {
	case schemas.Int64:
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return i
	case schemas.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		return f
	case schemas.Bool:
		return s == "true"
	}
	return s
}

func fromJSON(t *testing.T, v any, typ schemas.Type) any {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		return v
	}
	return fromText(t, n.String(), typ)
}

// oracleKeep is the `where:` of an oracleDef feature written out in Go,
// sharing no code with schemas' expressions (fields: account n x s ok ts).
func oracleKeep(feature string) func(schemas.Event) bool {
	switch feature {
	case "notok_count_1h": // not ok
		return func(e schemas.Event) bool { return !e.Values[4].IsNull() && e.Values[4].Int == 0 }
	case "x_sum_big_24h": // x > 10000 and s in ("apple", "kiwi")
		return func(e schemas.Event) bool {
			x, s := e.Values[2], e.Values[3]
			return !x.IsNull() && x.Float > 10000 && !s.IsNull() && (s.Str == "apple" || s.Str == "kiwi")
		}
	case "n_max_1h": // n < 0 or ok is null
		return func(e schemas.Event) bool {
			return !e.Values[1].IsNull() && e.Values[1].Int < 0 || e.Values[4].IsNull()
		}
	}
	return func(schemas.Event) bool { return true }
}

// oracleDerive is an oracleDef derived feature written out in Go over the
// brute-force values of its inputs (nil: null), sharing no code with
// schemas' expressions.
func oracleDerive(name string, in map[string]any) any {
	switch name {
	case "big_x_per_c": // x_sum_big_24h / c_1h
		s, c := in["x_sum_big_24h"].(float64), in["c_1h"].(int64)
		if c == 0 {
			return nil
		}
		return s / float64(c)
	case "notok_or_low": // notok_count_1h > 3 or coalesce(n_max_1h, 0) < -400
		m, _ := in["n_max_1h"].(int64) // null: 0
		return in["notok_count_1h"].(int64) > 3 || m < -400
	}
	panic("no oracle for derived feature " + name)
}

// TestOracle runs the pipeline on a random history and spine, for every
// spine and output format, and checks every value against brute force.
// oracleRun is the input of a run over oracleDef's events: the events
// (written to evPath in dir) and a spine of random instants, rows of
// account, when (RFC 3339) and label (the instant's index).
type oracleRun struct {
	set      *schemas.FeatureSet
	events   []schemas.Event
	instants []struct {
		key string
		at  int64
	}
	dir, evPath string
	spineRows   [][]string
}

func newOracleRun(t *testing.T, seed1, seed2 uint64) oracleRun {
	t.Helper()
	o := oracleRun{set: schemastest.MustParse(t, oracleDef), dir: t.TempDir()}
	rng := rand.New(rand.NewPCG(seed1, seed2))
	o.events = oracleEvents(o.set, rng)
	o.instants = oracleInstants(o.events, rng)
	o.evPath = writeEvents(t, o.dir, o.set, o.events)
	o.spineRows = make([][]string, len(o.instants))
	for i, q := range o.instants {
		o.spineRows[i] = []string{q.key, time.UnixMicro(q.at).UTC().Format(time.RFC3339Nano), strconv.Itoa(i)}
	}
	return o
}

func TestOracle(t *testing.T) {
	o := newOracleRun(t, 11, 12)
	set, events, instants, dir, evPath, spineRows := o.set, o.events, o.instants, o.dir, o.evPath, o.spineRows
	for _, tc := range []struct{ spine, output string }{
		{"spine.csv", "out.parquet"},
		{"spine.jsonl", "out.csv"},
		{"spine.parquet", "out.jsonl"},
	} {
		t.Run(tc.spine+"→"+tc.output, func(t *testing.T) {
			spinePath := filepath.Join(dir, tc.spine)
			writeSpine(t, spinePath, []string{"account", "when", "label"}, spineRows)
			cfg := &Config{
				Requests:   []Request{{Set: set, Source: schemas.BatchSource{Files: evPath}}},
				SpineGlob:  spinePath,
				SpineTime:  "when",
				Output:     Output{Path: filepath.Join(dir, tc.output)},
				DeadLetter: filepath.Join(dir, "dead"),
			}
			rows := runTraining(t, cfg)
			if len(rows) != len(instants) {
				t.Fatalf("%d output rows, want %d", len(rows), len(instants))
			}
			checked, derivedNonNull := 0, 0
			for _, row := range rows {
				i := labelOf(t, row["label"])
				q := instants[i]
				if row["account"] != q.key {
					t.Fatalf("row %d: account %v, want %s", i, row["account"], q.key)
				}
				brute := map[string]any{}
				for _, f := range set.Features {
					got := row[schemas.FeatureColumn(set.Name, f.Name)]
					want, ok := bruteForce(f, events, q.key, q.at)
					if !ok {
						want = nil
					}
					brute[f.Name] = want
					if !agrees(f, got, want) {
						t.Errorf("%s at %s (row %d): %v, want %v", f.Name, time.UnixMicro(q.at).UTC().Format(time.RFC3339Nano), i, got, want)
					}
					checked++
				}
				for _, d := range set.Derived {
					got := row[schemas.FeatureColumn(set.Name, d.Name)]
					want := oracleDerive(d.Name, brute)
					if !agrees(schemas.Feature{}, got, want) {
						t.Errorf("%s at %s (row %d): %v, want %v (inputs %v)", d.Name, time.UnixMicro(q.at).UTC().Format(time.RFC3339Nano), i, got, want, brute)
					}
					if want != nil {
						derivedNonNull++
					}
					checked++
				}
			}
			t.Logf("%d values checked", checked)
			if derivedNonNull == 0 {
				t.Error("every derived value was null: the test does not reach the evaluator")
			}
		})
	}
}

func labelOf(t *testing.T, v any) int {
	t.Helper()
	switch x := v.(type) {
	case string:
		i, err := strconv.Atoi(x)
		if err != nil {
			t.Fatal(err)
		}
		return i
	case int64:
		return int(x)
	}
	t.Fatalf("label %v (%T)", v, v)
	return 0
}

// agrees compares a pipeline value with brute force, within the documented
// tolerances (brute.Agrees).
func agrees(f schemas.Feature, got, want any) bool { return brute.Agrees(f, got, want) == "" }

// writeSpine writes a spine in the format of path's extension: every value
// a string, but the label column an integer in JSON lines and Parquet.
func writeSpine(t *testing.T, path string, header []string, rows [][]string) {
	t.Helper()
	var b bytes.Buffer
	switch f, _ := FormatOf(path); f {
	case CSV:
		w := csv.NewWriter(&b)
		w.Write(header)
		w.WriteAll(rows)
	case JSONLines:
		for _, r := range rows {
			m := map[string]any{}
			for i, h := range header {
				m[h] = r[i]
				if h == "label" {
					m[h], _ = strconv.Atoi(r[i])
				}
			}
			line, _ := json.Marshal(m)
			b.Write(append(line, '\n'))
		}
	case Parquet:
		cols := make([]Column, len(header))
		for i, h := range header {
			cols[i] = Column{Name: h, Type: schemas.String}
			if h == "label" {
				cols[i].Type = schemas.Int64
			}
		}
		w, err := newParquetWriter(&b, cols)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			vals := make([]schemas.Value, len(r))
			for i, s := range r {
				vals[i] = schemas.StringValue(s)
				if cols[i].Type == schemas.Int64 {
					n, _ := strconv.Atoi(s)
					vals[i] = schemas.Int64Value(int64(n))
				}
			}
			if err := w.write(vals); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// usersDef is a second set, keyed by an int64, for runs over two sets.
const usersDef = `
name: users
entity: {name: user, key: uid}
event_time: at
fields:
  uid: int64
  pages: int64
  at: timestamp
features:
  - {name: views_1h, op: count, window: 1h}
  - {name: pages_sum_24h, op: sum, field: pages, window: 24h}
  - {name: pages_max_1h, op: max, field: pages, window: 1h}
`

// TestTwoSets runs a spine keyed for two sets (one by an int64 key in a
// column named otherwise), with bad rows, and checks the values of both
// against brute force and the bad rows against the dead-letter file. Its
// good instants follow oracleT0 (30 days ago).
//
// fixed dates: the bad rows' times; the training pipeline compares no
// instant with the wall clock.
func TestTwoSets(t *testing.T) {
	acct := schemastest.MustParse(t, oracleDef)
	users := schemastest.MustParse(t, usersDef)
	rng := rand.New(rand.NewPCG(21, 22))
	acctEvents := oracleEvents(acct, rng)
	userEvents := usersEvents(rng, 2000)
	dir := t.TempDir()
	acctPath := writeEvents(t, filepath.Join(dir), acct, acctEvents)
	usersDir := filepath.Join(dir, "users")
	if err := os.Mkdir(usersDir, 0o755); err != nil {
		t.Fatal(err)
	}
	usersPath := writeEvents(t, usersDir, users, userEvents)

	instants := oracleInstants(acctEvents, rng)
	var rows [][]string
	for i, q := range instants {
		rows = append(rows, []string{q.key, strconv.FormatInt(rng.Int64N(6)+1, 10), time.UnixMicro(q.at).UTC().Format(time.RFC3339Nano), strconv.Itoa(i)})
	}
	bad := [][]string{
		{"a_1", "", "2026-03-02T00:00:00Z", "-1"},      // no user key
		{"a_1", "seven", "2026-03-02T00:00:00Z", "-2"}, // a user key that is no int64
		{"", "1", "2026-03-02T00:00:00Z", "-3"},        // no account key
		{"a_1", "1", "2026-03-02 25:00:00", "-4"},      // a time that does not parse
	}
	spinePath := filepath.Join(dir, "spine.csv")
	writeSpine(t, spinePath, []string{"account", "user", "ts", "label"}, append(rows, bad...))
	cfg := &Config{
		Requests: []Request{
			{Set: acct, Source: schemas.BatchSource{Files: acctPath}, Features: []string{"x_sum_24h", "s_distinct_7d", "s_last_1h"}},
			{Set: users, Keys: []string{"user"}, Source: schemas.BatchSource{Files: usersPath}},
		},
		SpineGlob:  spinePath,
		Output:     Output{Path: filepath.Join(dir, "out.jsonl"), Shards: 3},
		DeadLetter: filepath.Join(dir, "dead"),
	}
	out := runTraining(t, cfg)
	if len(out) != len(instants) {
		t.Fatalf("%d output rows, want %d", len(out), len(instants))
	}
	for _, row := range out {
		i := labelOf(t, row["label"])
		q := instants[i]
		uid, _ := strconv.ParseInt(rows[i][1], 10, 64)
		if row["user"] != rows[i][1] {
			t.Fatalf("row %d: user %v, want %s", i, row["user"], rows[i][1])
		}
		for _, r := range cfg.Requests {
			key, events := q.key, acctEvents
			if r.Set == users {
				key, events = strconv.FormatInt(uid, 10), userEvents
			}
			for _, name := range r.Features {
				f, _ := r.Set.Feature(name)
				got := row[schemas.FeatureColumn(r.Set.Name, name)]
				want, ok := bruteForce(f, events, key, q.at)
				if !ok {
					want = nil
				}
				if !agrees(f, got, want) {
					t.Errorf("%s.%s of %s at %s: %v, want %v", r.Set.Name, name, key, time.UnixMicro(q.at).UTC().Format(time.RFC3339Nano), got, want)
				}
			}
		}
	}
	data, err := os.ReadFile(cfg.DeadLetter + ".jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var d struct{ Set, Stage, Reason, Raw string }
		if err := json.Unmarshal(line, &d); err != nil {
			t.Fatal(err)
		}
		if d.Set != DeadLetterSet {
			t.Errorf("dead letter of set %q: %s", d.Set, line)
		}
		reasons = append(reasons, d.Reason[strings.Index(d.Reason, ": ")+2:]+" | "+d.Raw)
	}
	slices.Sort(reasons)
	want := []string{
		`column "account": empty entity key | ,1,2026-03-02T00:00:00Z,-3`,
		`column "ts": time "2026-03-02 25:00:00" is not RFC 3339 (2006-01-02T15:04:05Z) | a_1,1,2026-03-02 25:00:00,-4`,
		`column "user": empty entity key | a_1,,2026-03-02T00:00:00Z,-1`,
		`column "user": entity key "seven" is not an int64 | a_1,seven,2026-03-02T00:00:00Z,-2`,
	}
	if diff := cmp.Diff(want, reasons); diff != "" {
		t.Errorf("dead letters (-want +got):\n%s", diff)
	}
}
