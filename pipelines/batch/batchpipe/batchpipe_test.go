package batchpipe

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigtable"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/google/go-cmp/cmp"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/schemas/sample"
	"github.com/tandem-fp/tandem/schemas/schemastest"
	"github.com/tandem-fp/tandem/serving/servingtest"
	"github.com/tandem-fp/tandem/transforms"
	"github.com/tandem-fp/tandem/transforms/aggregate"
	"github.com/tandem-fp/tandem/transforms/bigqueryread"
	"github.com/tandem-fp/tandem/transforms/bigqueryread/bqfake"
	"github.com/tandem-fp/tandem/transforms/bigtablewrite"
)

func TestMain(m *testing.M) { ptest.Main(m) }

// testDef covers every op; its largest tile is 3h and its longest window 7d.
const testDef = `
name: cards
entity: {name: card, key: card_id}
event_time: ts
fields:
  card_id: string
  merchant: string
  amount: float64
  items: int64
  approved: bool
  ts: timestamp
features:
  - {name: txn_count_1h, op: count, window: 1h}
  - {name: amount_sum_24h, op: sum, field: amount, window: 24h}
  - {name: amount_mean_24h, op: mean, field: amount, window: 24h}
  - {name: amount_max_24h, op: max, field: amount, window: 24h}
  - {name: items_min_24h, op: min, field: items, window: 24h}
  - {name: amount_stddev_24h, op: stddev, field: amount, window: 24h}
  - {name: merchants_7d, op: approx_count_distinct, field: merchant, window: 7d}
  - {name: last_approved, op: last, field: approved, window: 7d, tile: 1h}
`

func testSet(t *testing.T) *schemas.FeatureSet {
	t.Helper()
	return schemastest.MustParse(t, testDef)
}

// testAsOf is a recent boundary of the set's largest tile: the emulator,
// like Bigtable, garbage-collects cells older than the retention by their
// timestamps, the tile starts.
func testAsOf(set *schemas.FeatureSet) time.Time {
	return AlignAsOf(set, time.Now()).Add(-set.MaxTile())
}

// testEvents returns n sample events over the read range of asOf, and a few
// outside it on either side.
func testEvents(set *schemas.FeatureSet, asOf time.Time, n int) (all, inRange []schemas.Event) {
	from, to := ReadRange(set, asOf)
	inRange = sample.Events(set, 7, n, from, to)
	before := sample.Events(set, 8, 5, from.Add(-48*time.Hour), from)
	after := sample.Events(set, 9, 5, to, to.Add(2*time.Hour))
	all = append(append(append(all, before...), inRange...), after...)
	return all, inRange
}

// emulator starts bttest with the table set up for set.
func emulator(t *testing.T, set *schemas.FeatureSet) bigtablestore.Config {
	t.Helper()
	emu, err := servingtest.StartEmulator(context.Background(), []*schemas.FeatureSet{set})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	return emu.Config
}

// writeJSONL writes events, then extra lines, to dir/events.jsonl.
func writeJSONL(t *testing.T, dir string, set *schemas.FeatureSet, events []schemas.Event, extra ...string) string {
	t.Helper()
	var b bytes.Buffer
	if err := sample.WriteJSONL(&b, set, events); err != nil {
		t.Fatal(err)
	}
	for _, l := range extra {
		b.WriteString(l + "\n")
	}
	path := filepath.Join(dir, "events.jsonl")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeCSV writes events as CSV with a header, then extra records, to
// dir/events.csv. Columns come in reverse order of the fields, plus one the
// set does not declare.
func writeCSV(t *testing.T, dir string, set *schemas.FeatureSet, events []schemas.Event, extra ...[]string) string {
	t.Helper()
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	var header []string
	for i := len(set.Fields) - 1; i >= 0; i-- {
		header = append(header, set.Fields[i].Name)
	}
	header = append(header, "note")
	must(t, w.Write(header))
	for _, e := range events {
		var rec []string
		for i := len(set.Fields) - 1; i >= 0; i-- {
			rec = append(rec, csvValue(e.Values[i]))
		}
		rec = append(rec, "a note, with a comma\nand a line break")
		must(t, w.Write(rec))
	}
	for _, rec := range extra {
		must(t, w.Write(rec))
	}
	w.Flush()
	must(t, w.Error())
	path := filepath.Join(dir, "events.csv")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func csvValue(v schemas.Value) string {
	switch v.Type {
	case schemas.Null:
		return ""
	case schemas.String:
		return v.Str
	case schemas.Float64:
		return fmt.Sprint(v.Float)
	case schemas.Bool:
		return fmt.Sprint(v.Int != 0)
	case schemas.Timestamp:
		return time.UnixMicro(v.Int).UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v.Int)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// cellKey names a tile cell: "row/qualifier@start".
type cellKey string

func tileKey(row, qualifier string, start int64) cellKey {
	return cellKey(fmt.Sprintf("%s/%s@%s", row, qualifier, time.UnixMicro(start).UTC().Format(time.RFC3339)))
}

// directTiles computes the tiles of the events straight from the algebra,
// as results.
func directTiles(set *schemas.FeatureSet, events []schemas.Event) map[cellKey]schemas.Value {
	byEntity := map[string]*transforms.TileSet{}
	for _, e := range events {
		ts, ok := byEntity[e.Key]
		if !ok {
			ts = transforms.NewTileSet()
			byEntity[e.Key] = ts
		}
		ts.Add(set, e)
	}
	out := map[cellKey]schemas.Value{}
	for entity, ts := range byEntity {
		for id, p := range ts.Tiles {
			v, _ := p.Result()
			out[tileKey(schemas.RowKey(set.Name, entity), set.Features[id.Feature].Qualifier(), id.Start)] = v
		}
	}
	return out
}

// readTiles reads the batch family back, as results.
func readTiles(t *testing.T, cfg bigtablestore.Config, set *schemas.FeatureSet) map[cellKey]schemas.Value {
	t.Helper()
	out := map[cellKey]schemas.Value{}
	for _, c := range readCells(t, cfg, set) {
		p, err := aggregate.Decode(c.Value)
		if err != nil {
			t.Fatalf("decode cell %s/%s@%d: %v", c.Row, c.Column, c.Timestamp, err)
		}
		v, _ := p.Result()
		out[tileKey(c.Row, strings.TrimPrefix(c.Column, schemas.FamilyBatch+":"), int64(c.Timestamp))] = v
	}
	return out
}

// readCells reads every cell of the batch family of the set's rows.
func readCells(t *testing.T, cfg bigtablestore.Config, set *schemas.FeatureSet) []bigtable.ReadItem {
	t.Helper()
	ctx := context.Background()
	cl, err := cfg.NewClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []bigtable.ReadItem
	err = cl.Open(cfg.Table).ReadRows(ctx, bigtable.PrefixRange(set.Name+"#"), func(r bigtable.Row) bool {
		out = append(out, r[schemas.FamilyBatch]...)
		return true
	}, bigtable.RowFilter(bigtable.FamilyFilter(schemas.FamilyBatch)))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func watermark(t *testing.T, cfg bigtablestore.Config, set *schemas.FeatureSet) time.Time {
	t.Helper()
	ctx := context.Background()
	cl, err := cfg.NewClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	meta, err := bigtablestore.ReadMeta(ctx, cl.Open(cfg.Table), set.Name)
	if err != nil {
		t.Fatal(err)
	}
	return meta.BatchWatermark
}

// diffTiles reports tiles that differ, floats within 1e-9 relative.
func diffTiles(t *testing.T, want, got map[cellKey]schemas.Value) {
	t.Helper()
	approx := cmp.Comparer(func(a, b schemas.Value) bool {
		if a.Type == schemas.Float64 && b.Type == schemas.Float64 {
			return a.Float == b.Float || math.Abs(a.Float-b.Float) <= 1e-9*math.Max(math.Abs(a.Float), math.Abs(b.Float))
		}
		return a == b
	})
	if diff := cmp.Diff(want, got, approx); diff != "" {
		t.Errorf("tiles read back differ from the direct computation (-want +got):\n%s", diff)
	}
}

// deadLetterJSON is one line of a dead-letter file as the README documents
// it, read without the pipeline's own type.
type deadLetterJSON struct {
	Set       string `json:"set"`
	Stage     string `json:"stage"`
	Reason    string `json:"reason"`
	Raw       string `json:"raw,omitempty"`
	RawBase64 []byte `json:"raw_base64,omitempty"`
}

// readDeadLetters reads a dead-letter file.
func readDeadLetters(t *testing.T, path string) []deadLetterJSON {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []deadLetterJSON
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var d deadLetterJSON
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("dead-letter line %q: %v", sc.Text(), err)
		}
		out = append(out, d)
	}
	must(t, sc.Err())
	sort.Slice(out, func(i, j int) bool { return out[i].Raw < out[j].Raw })
	return out
}

// TestFiles runs the pipeline from JSON lines and from CSV, each with
// malformed records and events outside the range, and compares the tiles
// read back from Bigtable with the tiles computed directly.
func TestFiles(t *testing.T) {
	set := testSet(t)
	asOf := testAsOf(set)
	all, inRange := testEvents(set, asOf, 3000)
	csvLine := 2*len(all) + 2 // each record spans two lines, after the header
	tests := []struct {
		name     string
		write    func(dir string) string
		read     func(schemas.Event) schemas.Event // what the file keeps of an event
		wantDead []deadLetterJSON                  // sorted by Raw; Reason is a substring
	}{
		{
			name: "json lines",
			// fixed dates: in records that fail to decode; they reach no tile.
			write: func(dir string) string {
				return writeJSONL(t, dir, set, all,
					`{"card_id":"c_1","amount":"lots","ts":"2026-11-20T10:00:00Z"}`,
					`not json`,
					``,
				)
			},
			// fixed dates: as above.
			wantDead: []deadLetterJSON{
				{Stage: "decode", Reason: "invalid JSON: empty input", Raw: ``},
				{Stage: "decode", Reason: "invalid JSON", Raw: `not json`},
				{Stage: "decode", Reason: `field "amount": want float64, got string "lots"`, Raw: `{"card_id":"c_1","amount":"lots","ts":"2026-11-20T10:00:00Z"}`},
			},
		},
		{
			name: "csv",
			// CSV has no null: an empty value is null but for strings,
			// where it is the empty string.
			read: func(e schemas.Event) schemas.Event {
				vals := slices.Clone(e.Values)
				for i, f := range set.Fields {
					if f.Type == schemas.String && vals[i].IsNull() {
						vals[i] = schemas.StringValue("")
					}
				}
				e.Values = vals
				return e
			},
			// fixed dates: in records that fail to decode; they reach no tile.
			write: func(dir string) string {
				return writeCSV(t, dir, set, all,
					[]string{"2026-11-20T10:00:00Z", "true", "2", "lots", "m_1", "c_1", ""},
					[]string{"2026-11-20T10:00:00Z", "c_2"},
				)
			},
			// fixed dates: as above.
			wantDead: []deadLetterJSON{
				{Stage: "decode", Reason: fmt.Sprintf(`events.csv:%d: schemas: bad event: record has 2 fields, the header 7`, csvLine+1), Raw: `2026-11-20T10:00:00Z,c_2`},
				{Stage: "decode", Reason: fmt.Sprintf(`events.csv:%d: schemas: bad event: field "amount"`, csvLine), Raw: `2026-11-20T10:00:00Z,true,2,lots,m_1,c_1,`},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{
				Set: set, Source: schemas.BatchSource{Files: tc.write(dir)}, AsOf: asOf,
				Bigtable: emulator(t, set), DeadLetter: filepath.Join(dir, "dead", "letters"),
			}
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatalf("Run = %v", err)
			}
			kept := inRange
			if tc.read != nil {
				kept = nil
				for _, e := range inRange {
					kept = append(kept, tc.read(e))
				}
			}
			want := directTiles(set, kept)
			diffTiles(t, want, readTiles(t, cfg.Bigtable, set))
			if got := watermark(t, cfg.Bigtable, set); !got.Equal(asOf) {
				t.Errorf("watermark = %v, want %v", got, asOf)
			}
			wantRes := Result{
				Set: set.Name, AsOf: asOf, Events: int64(len(all)), OutOfRange: int64(len(all) - len(inRange)),
				DeadLetters: int64(len(tc.wantDead)), Cells: int64(len(want)), Committed: true,
			}
			gotRes := res
			gotRes.From, gotRes.To, gotRes.Rows, gotRes.RowRetries, gotRes.Counters, gotRes.Elapsed = time.Time{}, time.Time{}, 0, 0, nil, 0
			if diff := cmp.Diff(wantRes, gotRes); diff != "" {
				t.Errorf("Result mismatch (-want +got):\n%s", diff)
			}
			if got := res.Counters[set.Name+"_dead_letter_decode"]; got != int64(len(tc.wantDead)) {
				t.Errorf("counter %s_dead_letter_decode = %d, want %d", set.Name, got, len(tc.wantDead))
			}

			dead := readDeadLetters(t, cfg.DeadLetter+".jsonl")
			if len(dead) != len(tc.wantDead) {
				t.Fatalf("dead letters = %+v, want %d", dead, len(tc.wantDead))
			}
			for i, d := range dead {
				w := tc.wantDead[i]
				if d.Set != set.Name || d.Stage != w.Stage || d.Raw != w.Raw || !strings.Contains(d.Reason, w.Reason) {
					t.Errorf("dead letter %d = %+v, want set %s, stage %s, raw %q, reason containing %q", i, d, set.Name, w.Stage, w.Raw, w.Reason)
				}
			}
		})
	}
}

// TestBigQuery runs the pipeline from the in-process BigQuery Storage Read
// fake, over several streams and pages, and compares the tiles read back
// from Bigtable with the tiles computed directly. The fake applies the time
// range the pipeline pushes down, so the events outside it never leave
// BigQuery; a row with no entity key is a dead letter.
func TestBigQuery(t *testing.T) {
	set := testSet(t)
	asOf := testAsOf(set)
	from, to := ReadRange(set, asOf)
	all, inRange := testEvents(set, asOf, 3000)
	cols := make([]bqfake.Column, len(set.Fields))
	for i, f := range set.Fields {
		cols[i] = bqfake.Column{Name: f.Name, Type: map[schemas.Type]bqfake.Type{
			schemas.String: bqfake.String, schemas.Int64: bqfake.Int64, schemas.Float64: bqfake.Float64,
			schemas.Bool: bqfake.Bool, schemas.Timestamp: bqfake.Timestamp,
		}[f.Type]}
	}
	var rows []map[string]any
	for _, e := range all {
		row := map[string]any{}
		for i, f := range set.Fields {
			switch v := e.Values[i]; v.Type {
			case schemas.String:
				row[f.Name] = v.Str
			case schemas.Int64:
				row[f.Name] = v.Int
			case schemas.Float64:
				row[f.Name] = v.Float
			case schemas.Bool:
				row[f.Name] = v.Int != 0
			case schemas.Timestamp:
				row[f.Name] = time.UnixMicro(v.Int).UTC()
			}
		}
		rows = append(rows, row)
	}
	rows = append(rows, map[string]any{"merchant": "m_1", "amount": 1.5, "ts": from.Add(time.Hour)})

	fake, err := bqfake.NewServer()
	must(t, err)
	t.Cleanup(fake.Close)
	fake.SetStreams(3)
	fake.SetPageRows(64)
	must(t, fake.AddTable("tandem-test.events.cards", cols, rows))

	dir := t.TempDir()
	cfg := Config{
		Set: set, Source: schemas.BatchSource{BigQueryTable: "tandem-test.events.cards"}, AsOf: asOf,
		BigQuery: BigQueryConfig{Endpoint: fake.Addr},
		Bigtable: emulator(t, set), DeadLetter: filepath.Join(dir, "dead"),
	}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	diffTiles(t, directTiles(set, inRange), readTiles(t, cfg.Bigtable, set))
	if got := watermark(t, cfg.Bigtable, set); !got.Equal(asOf) {
		t.Errorf("watermark = %v, want %v", got, asOf)
	}
	if res.Events != int64(len(inRange)) || res.OutOfRange != 0 || res.DeadLetters != 1 || !res.Committed {
		t.Errorf("Run = %d events, %d out of range, %d dead letters, committed %v; want %d, 0 (pushed down), 1, true",
			res.Events, res.OutOfRange, res.DeadLetters, res.Committed, len(inRange))
	}
	reqs := fake.SessionRequests()
	if len(reqs) != 1 {
		t.Fatalf("%d read sessions, want 1", len(reqs))
	}
	if got, want := reqs[0].GetReadSession().GetReadOptions().GetRowRestriction(), bigqueryread.RowRestriction(set.EventTime, from, to); got != want {
		t.Errorf("row restriction = %q, want %q", got, want)
	}
	dead := readDeadLetters(t, cfg.DeadLetter+".jsonl")
	if len(dead) != 1 || !strings.Contains(dead[0].Reason, `missing entity key "card_id"`) || !strings.Contains(dead[0].Raw, `"merchant":"m_1"`) {
		t.Errorf("dead letters = %+v, want the row with no card_id", dead)
	}
}

// TestRerun checks that a second run over the same events leaves exactly
// the cells of the first, and that a later run moves the watermark.
func TestRerun(t *testing.T) {
	set := testSet(t)
	asOf := testAsOf(set)
	all, _ := testEvents(set, asOf, 2000)
	dir := t.TempDir()
	cfg := Config{
		Set: set, Source: schemas.BatchSource{Files: writeJSONL(t, dir, set, all)}, AsOf: asOf,
		Bigtable: emulator(t, set), DeadLetter: filepath.Join(dir, "dead"),
	}
	ctx := context.Background()
	if _, err := Run(ctx, cfg); err != nil {
		t.Fatalf("first Run = %v", err)
	}
	first := readCells(t, cfg.Bigtable, set)
	if _, err := Run(ctx, cfg); err != nil {
		t.Fatalf("second Run = %v", err)
	}
	if diff := cmp.Diff(first, readCells(t, cfg.Bigtable, set)); diff != "" {
		t.Errorf("cells after the second run differ (-first +second):\n%s", diff)
	}
	if got := watermark(t, cfg.Bigtable, set); !got.Equal(asOf) {
		t.Errorf("watermark = %v, want %v", got, asOf)
	}

	cfg.AsOf = asOf.Add(set.MaxTile())
	if _, err := Run(ctx, cfg); err != nil {
		t.Fatalf("later Run = %v", err)
	}
	if got := watermark(t, cfg.Bigtable, set); !got.Equal(cfg.AsOf) {
		t.Errorf("watermark after a later run = %v, want %v", got, cfg.AsOf)
	}
	for _, c := range readCells(t, cfg.Bigtable, set) {
		if start := time.UnixMicro(int64(c.Timestamp)); !start.Before(cfg.AsOf) {
			t.Errorf("cell %s %s starts at %v, not before the watermark %v", c.Row, c.Column, start, cfg.AsOf)
		}
	}
}

// TestFailedRun checks that a run whose writes fail fails, naming the row,
// and leaves the watermark of the previous run.
func TestFailedRun(t *testing.T) {
	set := testSet(t)
	asOf := testAsOf(set)
	all, _ := testEvents(set, asOf, 500)
	tests := []struct {
		name   string
		break_ func(t *testing.T, cfg *Config)
		want   string
	}{
		{
			name: "batch family dropped",
			break_: func(t *testing.T, cfg *Config) {
				ctx := context.Background()
				ac, err := cfg.Bigtable.NewAdminClient(ctx)
				must(t, err)
				defer ac.Close()
				must(t, ac.DeleteColumnFamily(ctx, cfg.Bigtable.Table, schemas.FamilyBatch))
				cfg.WriteOptions = []bigtablewrite.Option{bigtablewrite.Attempts(2)}
			},
			want: `unknown family "batch"`,
		},
		{
			name: "rows over the bulk limit",
			break_: func(t *testing.T, cfg *Config) {
				cfg.WriteOptions = []bigtablewrite.Option{bigtablewrite.MaxCells(1)}
			},
			want: "more than the 1 of one bulk request",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{
				Set: set, Source: schemas.BatchSource{Files: writeJSONL(t, dir, set, all)}, AsOf: asOf,
				Bigtable: emulator(t, set), DeadLetter: filepath.Join(dir, "dead"),
			}
			ctx := context.Background()
			if _, err := Run(ctx, cfg); err != nil {
				t.Fatalf("first Run = %v", err)
			}
			tc.break_(t, &cfg)
			cfg.AsOf = asOf.Add(set.MaxTile())
			_, err := Run(ctx, cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `row "cards#`) {
				t.Errorf("Run with failing writes = %v, want an error naming a row and containing %q", err, tc.want)
			}
			if got := watermark(t, cfg.Bigtable, set); !got.Equal(asOf) {
				t.Errorf("watermark after a failed run = %v, want the previous %v", got, asOf)
			}
		})
	}
}

// TestEmptyRun checks that a run that finds no event in its range fails
// and leaves the watermark, unless AllowEmpty.
func TestEmptyRun(t *testing.T) {
	set := testSet(t)
	asOf := testAsOf(set)
	from, _ := ReadRange(set, asOf)
	old := sample.Events(set, 3, 50, from.Add(-72*time.Hour), from)
	dir := t.TempDir()
	cfg := Config{
		Set: set, Source: schemas.BatchSource{Files: writeJSONL(t, dir, set, old, "not json")}, AsOf: asOf,
		Bigtable: emulator(t, set), DeadLetter: filepath.Join(dir, "dead"),
	}
	ctx := context.Background()
	_, err := Run(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "wrote no tile (1 dead letters)") {
		t.Errorf("Run over an empty range = %v, want an error saying no tile was written", err)
	}
	if got := watermark(t, cfg.Bigtable, set); !got.IsZero() {
		t.Errorf("watermark after an empty run = %v, want none", got)
	}
	cfg.AllowEmpty = true
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run with AllowEmpty = %v", err)
	}
	if got := watermark(t, cfg.Bigtable, set); !got.Equal(asOf) || !res.Committed || res.OutOfRange != 50 {
		t.Errorf("Run with AllowEmpty: watermark %v, committed %v, out of range %d; want %v, true, 50", got, res.Committed, res.OutOfRange, asOf)
	}
}

func TestConfigValidate(t *testing.T) {
	set := testSet(t)
	asOf := testAsOf(set)
	good := Config{
		Set: set, Source: schemas.BatchSource{Files: "testdata/*.jsonl"}, AsOf: asOf,
		Bigtable:   bigtablestore.Config{Project: "p", Instance: "i", Table: "t"},
		DeadLetter: "dead",
	}
	uneven := schemastest.MustParse(t, `
name: uneven
entity: {name: card, key: card_id}
event_time: ts
fields: {card_id: string, ts: timestamp}
features:
  - {name: a, op: count, window: 6h, tile: 2h}
  - {name: b, op: count, window: 6h, tile: 3h}
`)
	tests := []struct {
		name   string
		change func(*Config)
		want   string // "" for valid
	}{
		{"valid", func(*Config) {}, ""},
		{"no set", func(c *Config) { c.Set = nil }, "no feature set"},
		{"no as_of", func(c *Config) { c.AsOf = time.Time{} }, "as_of is not set"},
		{"unaligned as_of", func(c *Config) { c.AsOf = asOf.Add(time.Minute) }, "not a boundary of the largest tile (3h)"},
		{"tiles that do not divide", func(c *Config) { c.Set = uneven; c.AsOf = AlignAsOf(uneven, asOf) }, "tile 2h does not divide the largest tile 3h"},
		{"two sources", func(c *Config) { c.Source.BigQueryTable = "p.d.t" }, "exactly one batch source"},
		{"no source", func(c *Config) { c.Source = schemas.BatchSource{} }, "exactly one batch source"},
		{"unknown file format", func(c *Config) { c.Source.Files = "events.txt" }, `cannot tell the format from the extension ".txt"`},
		{"bad table", func(c *Config) { c.Source = schemas.BatchSource{BigQueryTable: "dataset.table"} }, "want project.dataset.table"},
		{"query without a project", func(c *Config) { c.Source = schemas.BatchSource{BigQueryQuery: "SELECT 1"} }, "needs a billing project"},
		{"no bigtable", func(c *Config) { c.Bigtable.Table = "" }, "bigtable table is empty"},
		{"no dead letter", func(c *Config) { c.DeadLetter = "" }, "no dead-letter path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.change(&cfg)
			err := cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrConfig)):
				t.Errorf("Validate() = %v, want an ErrConfig containing %q", err, tc.want)
			}
		})
	}
}

func TestParseSource(t *testing.T) {
	tests := []struct {
		in   string
		want schemas.BatchSource
		err  string
	}{
		{"bq:my-project.events.cards", schemas.BatchSource{BigQueryTable: "my-project.events.cards"}, ""},
		{"files:data/*.jsonl", schemas.BatchSource{Files: "data/*.jsonl"}, ""},
		{"files:gs://bucket/events-*.csv.gz", schemas.BatchSource{Files: "gs://bucket/events-*.csv.gz"}, ""},
		{"bq:events.cards", schemas.BatchSource{}, "want project.dataset.table"},
		{"files:data/*.parquet", schemas.BatchSource{}, "cannot tell the format"},
		{"data/*.jsonl", schemas.BatchSource{}, "want bq:PROJECT.DATASET.TABLE or files:GLOB"},
	}
	for _, tc := range tests {
		got, err := ParseSource(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseSource(%q) = %+v, %v; want an error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSource(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if s := SourceString(got); s != tc.in {
			t.Errorf("SourceString(ParseSource(%q)) = %q", tc.in, s)
		}
	}
}

// TestReadRange checks AlignAsOf and ReadRange on a day of the clock's
// (midnight 30 days ago, a boundary of every tile size).
func TestReadRange(t *testing.T) {
	set := testSet(t) // largest tile 3h, longest window 7d
	day := schemastest.DaysAgo(30)
	at := day.Add(10*time.Hour + 30*time.Minute)
	asOf := AlignAsOf(set, at)
	if want := day.Add(9 * time.Hour); !asOf.Equal(want) {
		t.Errorf("AlignAsOf(%v) = %v, want %v", at, asOf, want)
	}
	from, to := ReadRange(set, asOf)
	// asOf − 7d − 3h, on a 3h boundary: 06:00 a week before.
	if want := day.AddDate(0, 0, -7).Add(6 * time.Hour); !from.Equal(want) || !to.Equal(asOf) {
		t.Errorf("ReadRange(%v) = [%v, %v), want [%v, %v)", asOf, from, to, want, asOf)
	}
	// Every feature's read at as_of or later needs only tiles from the range.
	for _, f := range set.Features {
		first, _ := f.WindowTiles(asOf)
		if first < from.UnixMicro() {
			t.Errorf("feature %s reads from %v, before the range start %v", f.Name, time.UnixMicro(first).UTC(), from)
		}
	}
}
