package trainpipe

import (
	"bytes"
	"encoding/json"
	"maps"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tandem-fp/tandem/pipelines/batch/batchpipe"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/schemastest"
	"github.com/tandem-fp/tandem/transforms/bigqueryread"
	"github.com/tandem-fp/tandem/transforms/bigqueryread/bqfake"
)

func newFake(t *testing.T) *bqfake.Server { return bqfake.NewTestServer(t) }

// spineColumns are a BigQuery spine's columns: the key, the instant as a
// TIMESTAMP, and labels of every other type the fake serves.
var spineColumns = []bqfake.Column{
	{Name: "label", Type: bqfake.Int64},
	{Name: "account", Type: bqfake.String},
	{Name: "weight", Type: bqfake.Float64},
	{Name: "when", Type: bqfake.Timestamp},
	{Name: "fraud", Type: bqfake.Bool},
	{Name: "fee", Type: bqfake.Numeric},
	{Name: "note", Type: bqfake.String},
}

// TestBigQuerySpine reads the spine from a BigQuery table (the fake, over
// several streams and pages) and a query's result: every column comes out
// typed and in table order, NULLs as nulls, rows without a key or an
// instant as dead letters, and every feature agrees with brute force. The
// dates are fixed: the training pipeline compares no instant with the
// clock.
func TestBigQuerySpine(t *testing.T) {
	set := schemastest.MustParse(t, oracleDef)
	rng := rand.New(rand.NewPCG(31, 32))
	events := oracleEvents(set, rng)
	instants := oracleInstants(events, rng)
	dir := t.TempDir()
	evPath := writeEvents(t, dir, set, events)
	srv := newFake(t)
	srv.SetStreams(3)
	srv.SetPageRows(7)

	var rows []map[string]any
	for i, q := range instants {
		r := map[string]any{"label": i, "account": q.key, "weight": float64(i) / 4, "when": time.UnixMicro(q.at), "fraud": i%3 == 0, "fee": "1.250000001"}
		if i%5 != 0 {
			r["note"] = "n" + q.key
		}
		rows = append(rows, r)
	}
	good := len(rows)
	rows = append(rows,
		map[string]any{"label": -1, "when": time.UnixMicro(instants[0].at)}, // no key
		map[string]any{"label": -2, "account": "a_1"},                       // no instant
	)
	const table = "tandem-test.ml.spine"
	if err := srv.AddTable(table, spineColumns, rows); err != nil {
		t.Fatal(err)
	}
	// The same rows with the instant as an RFC 3339 STRING, as a query's result.
	strCols := slices.Clone(spineColumns)
	strCols[3].Type = bqfake.String
	var strRows []map[string]any
	for _, r := range rows[:good] {
		r = maps.Clone(r)
		r["when"] = r["when"].(time.Time).UTC().Format(time.RFC3339Nano)
		strRows = append(strRows, r)
	}
	const result = "tandem-test._anon.result"
	if err := srv.AddTable(result, strCols, strRows); err != nil {
		t.Fatal(err)
	}
	const sql = "SELECT * FROM `tandem-test.ml.labels` WHERE split = 'train'"
	srv.HandleQueries(func(q bqfake.Query) (string, error) {
		if q.SQL != sql {
			t.Errorf("query %q, want %q", q.SQL, sql)
		}
		return result, nil
	})

	wantCols := []Column{
		{Name: "label", Type: schemas.Int64}, {Name: "account", Type: schemas.String}, {Name: "weight", Type: schemas.Float64}, {Name: "when", Type: schemas.Timestamp},
		{Name: "fraud", Type: schemas.Bool}, {Name: "fee", Type: schemas.String}, {Name: "note", Type: schemas.String},
	}
	for _, tc := range []struct {
		name   string
		src    bigqueryread.Source
		output string
		dead   int
	}{
		{"table", bigqueryread.Source{Table: table}, "out.parquet", 2},
		{"query", bigqueryread.Source{Query: sql}, "out.jsonl", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &Config{
				Requests:      []Request{{Set: set, Source: schemas.BatchSource{Files: evPath}, Features: []string{"c_1h", "x_sum_24h", "s_last_1h", "s_distinct_7d"}}},
				SpineBigQuery: tc.src,
				SpineTime:     "when",
				BigQuery:      batchpipe.BigQueryConfig{Project: "tandem-billing", Endpoint: srv.Addr, RESTEndpoint: srv.URL},
				Output:        Output{Path: filepath.Join(dir, tc.name+"-"+tc.output)},
				DeadLetter:    filepath.Join(dir, tc.name+"-dead"),
			}
			before := len(srv.SessionRequests())
			if err := Prepare(t.Context(), cfg); err != nil {
				t.Fatal(err)
			}
			want := slices.Clone(wantCols)
			if tc.src.Query != "" {
				want[3].Type = schemas.String
			}
			if diff := cmp.Diff(want, cfg.Spine.Columns); diff != "" {
				t.Errorf("spine columns (-want +got):\n%s", diff)
			}
			out := runTraining(t, cfg)
			if len(out) != good {
				t.Fatalf("%d output rows, want %d", len(out), good)
			}
			for _, row := range out {
				i := labelOf(t, row["label"])
				q := instants[i]
				src := rows[i]
				if row["account"] != q.key || row["weight"] != src["weight"] || row["fraud"] != src["fraud"] || row["fee"] != "1.250000001" {
					t.Errorf("row %d: spine columns %v, want %v", i, row, src)
				}
				if note, ok := src["note"]; (ok && row["note"] != note) || (!ok && row["note"] != nil) {
					t.Errorf("row %d: note %v, want %v", i, row["note"], src["note"])
				}
				wantWhen := any(q.at) // a TIMESTAMP: Unix microseconds
				if tc.src.Query != "" {
					wantWhen = time.UnixMicro(q.at).UTC().Format(time.RFC3339Nano)
				}
				if row["when"] != wantWhen {
					t.Errorf("row %d: when %v, want %v", i, row["when"], wantWhen)
				}
				for _, name := range cfg.Requests[0].Features {
					f, _ := set.Feature(name)
					got := row[schemas.FeatureColumn(set.Name, name)]
					want, ok := bruteForce(f, events, q.key, q.at)
					if !ok {
						want = nil
					}
					if !agrees(f, got, want) {
						t.Errorf("%s at %s (row %d): %v, want %v", name, time.UnixMicro(q.at).UTC().Format(time.RFC3339Nano), i, got, want)
					}
				}
			}
			dead := readDead(t, cfg.DeadLetter+".jsonl")
			if len(dead) != tc.dead {
				t.Errorf("%d dead letters, want %d: %v", len(dead), tc.dead, dead)
			}
			for _, d := range dead {
				if !strings.Contains(d, "missing entity key") && !strings.Contains(d, "no time") {
					t.Errorf("dead letter %s: want a missing key or time", d)
				}
			}
			// Three sessions: the schema, the time column, the pipeline's
			// read; a table is read as of one snapshot.
			reqs := srv.SessionRequests()[before:]
			if len(reqs) != 3 {
				t.Fatalf("%d read sessions, want 3", len(reqs))
			}
			if got := reqs[1].GetReadSession().GetReadOptions().GetSelectedFields(); !slices.Equal(got, []string{"when"}) {
				t.Errorf("the probe reads columns %v, want [when]", got)
			}
			for _, r := range reqs {
				if r.GetParent() != "projects/tandem-billing" {
					t.Errorf("session parent %s, want the billing project", r.GetParent())
				}
				snap := r.GetReadSession().GetTableModifiers().GetSnapshotTime()
				if tc.src.Table != "" && !snap.AsTime().Equal(cfg.Spine.Snapshot) || tc.src.Table == "" && snap != nil {
					t.Errorf("session snapshot %v, want %v", snap, cfg.Spine.Snapshot)
				}
			}
		})
	}
}

// readDead returns the reason and raw row of each dead letter in path.
func readDead(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var d struct{ Reason, Raw string }
		if err := json.Unmarshal(line, &d); err != nil {
			t.Fatal(err)
		}
		out = append(out, d.Reason+" | "+d.Raw)
	}
	return out
}

func TestDecimalString(t *testing.T) {
	for _, tc := range []struct {
		unscaled int64
		scale    int32
		want     string
	}{
		{1250000001, 9, "1.250000001"},
		{-1250000000, 9, "-1.25"},
		{5, 9, "0.000000005"},
		{-5, 9, "-0.000000005"},
		{0, 9, "0"},
		{42000000000, 9, "42"},
		{7, 0, "7"},
		{7, -2, "700"},
	} {
		if got := decimalString(big.NewInt(tc.unscaled), tc.scale); got != tc.want {
			t.Errorf("decimalString(%d, %d) = %q, want %q", tc.unscaled, tc.scale, got, tc.want)
		}
	}
}
