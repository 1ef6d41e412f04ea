package trainpipe

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"cloud.google.com/go/bigquery"
	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/api/option"

	"github.com/tandem-fp/tandem/pipelines/batch/batchpipe"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/schemastest"
	"github.com/tandem-fp/tandem/transforms/bigqueryread"
	"github.com/tandem-fp/tandem/transforms/bigqueryread/bqfake"
	"github.com/tandem-fp/tandem/transforms/bigquerywrite"
)

// TestBigQueryOutput runs the same training set to Parquet and to a
// BigQuery table (the fake, over three write streams), reads the table
// back through the Storage Read API and checks that it holds the Parquet
// rows: the same columns in the same order with the documented BigQuery
// types, the same values, NULL where Parquet has null (an empty array for
// a list), composites included. The dates are fixed: the training
// pipeline compares no instant with the clock.
func TestBigQueryOutput(t *testing.T) {
	o := newOracleRun(t, 41, 42)
	set, instants, dir := o.set, o.instants, o.dir
	spinePath := filepath.Join(dir, "spine.jsonl")
	writeSpine(t, spinePath, []string{"account", "when", "label"}, o.spineRows)
	srv := newFake(t)
	const table = "tandem-test.ml.training"
	config := func(out Output) *Config {
		out.Shards = 3
		return &Config{
			Requests:   []Request{{Set: set, Source: schemas.BatchSource{Files: o.evPath}}},
			SpineGlob:  spinePath,
			SpineTime:  "when",
			Output:     out,
			DeadLetter: filepath.Join(dir, "dead"),
			BigQuery:   batchpipe.BigQueryConfig{Endpoint: srv.Addr, RESTEndpoint: srv.URL},
		}
	}
	pq := config(Output{Path: filepath.Join(dir, "out.parquet")})
	want := runTraining(t, pq)
	cfg := config(Output{Table: table})
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != int64(len(instants)) {
		t.Errorf("Result.Rows = %d, want %d", res.Rows, len(instants))
	}
	cols := cfg.Columns()

	// The table's schema, as BigQuery's REST API gives it.
	c, err := bigquery.NewClient(t.Context(), "tandem-test", option.WithEndpoint(srv.URL), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	md, err := c.Dataset("ml").Table("training").Metadata(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	types := map[string]string{}
	for _, f := range md.Schema {
		names = append(names, f.Name)
		types[f.Name] = fieldString(f)
	}
	if diff := cmp.Diff(strings.Split(columnNames(cols), ", "), names); diff != "" {
		t.Errorf("table columns (-want +got):\n%s", diff)
	}
	for name, typ := range map[string]string{
		"account":             "STRING",
		"label":               "INTEGER",
		"acct__c_1h":          "INTEGER",
		"acct__x_mean_1h":     "FLOAT",
		"acct__ok_last_24h":   "BOOLEAN",
		"acct__s_last3_1h":    "REPEATED STRING",
		"acct__n_first2_24h":  "REPEATED INTEGER",
		"acct__s_top3_7d":     "REPEATED RECORD<value STRING, count REQUIRED INTEGER>",
		"acct__x_pct_24h":     "RECORD<p10 FLOAT, p50 FLOAT, p90 FLOAT, p99 FLOAT>",
		"acct__s_hist_24h":    "RECORD<buckets REPEATED RECORD<key REQUIRED STRING, value INTEGER>, overflow REQUIRED INTEGER>",
		"acct__notok_or_low":  "BOOLEAN",
		"acct__s_distinct_7d": "INTEGER",
	} {
		if types[name] != typ {
			t.Errorf("column %s is %s, want %s", name, types[name], typ)
		}
	}

	got := readBigQueryOutput(t, srv, table, cols)
	byLabel := func(rows []map[string]any) map[int]map[string]any {
		out := map[int]map[string]any{}
		for _, r := range rows {
			out[labelOf(t, r["label"])] = r
		}
		return out
	}
	if len(got) != len(want) {
		t.Fatalf("%d rows in the table, %d in the Parquet file", len(got), len(want))
	}
	nulls, empties := 0, 0
	for _, r := range want { // BigQuery has no NULL array: an empty one
		for _, c := range cols {
			if c.Type == schemas.List || c.Type == schemas.Counts {
				if r[c.Name] == nil {
					nulls++
				}
				if l, _ := r[c.Name].([]any); len(l) == 0 {
					r[c.Name] = []any{}
					empties++
				}
			}
		}
	}
	if diff := cmp.Diff(byLabel(want), byLabel(got), cmpopts.EquateNaNs(), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("BigQuery rows (-Parquet +BigQuery):\n%s", diff)
	}
	// The comparison reaches NULLs and composites.
	var scalarNulls, quantiles, hists int
	for _, r := range got {
		if r["acct__s_last_1h"] == nil {
			scalarNulls++
		}
		if r["acct__x_pct_24h"] != nil {
			quantiles++
		}
		if r["acct__s_hist_24h"] != nil {
			hists++
		}
	}
	t.Logf("%d rows: %d NULL s_last_1h, %d quantiles, %d histograms, %d null and %d empty lists", len(got), scalarNulls, quantiles, hists, nulls, empties)
	if scalarNulls == 0 || quantiles == 0 || hists == 0 || nulls == 0 || empties == len(want)*3 {
		t.Errorf("the rows do not cover NULLs and composites")
	}
	streams := srv.WriteStreams()
	if len(streams) != 3 {
		t.Errorf("%d write streams, want 3 (--output_shards)", len(streams))
	}

	// A second run into the table, now with rows, fails at the start.
	err = Prepare(t.Context(), config(Output{Table: table}))
	if !errors.Is(err, bigquerywrite.ErrTable) || !strings.Contains(err.Error(), "already has") {
		t.Errorf("Prepare of a second run into %s = %v, want a table with rows refused", table, err)
	}
	if err := Prepare(t.Context(), config(Output{Table: table, Disposition: bigquerywrite.WriteAppend})); err != nil {
		t.Errorf("Prepare with WRITE_APPEND = %v", err)
	}
}

// fieldString writes a field's mode and type, records with their fields.
func fieldString(f *bigquery.FieldSchema) string {
	s := string(f.Type)
	if f.Type == bigquery.RecordFieldType {
		var fs []string
		for _, sub := range f.Schema {
			fs = append(fs, sub.Name+" "+fieldString(sub))
		}
		s += "<" + strings.Join(fs, ", ") + ">"
	}
	switch {
	case f.Repeated:
		s = "REPEATED " + s
	case f.Required:
		s = "REQUIRED " + s
	}
	return s
}

// readBigQueryOutput reads table back through the fake's Storage Read API
// in the form readOutput gives a Parquet file's rows.
func readBigQueryOutput(t *testing.T, srv *bqfake.Server, table string, cols []Column) []map[string]any {
	t.Helper()
	var rows []map[string]any
	err := bigqueryread.Scan(t.Context(), table, nil, func(rec arrow.Record) error {
		for i := range int(rec.NumRows()) {
			m := map[string]any{}
			for j, c := range cols {
				if rec.ColumnName(j) != c.Name {
					t.Fatalf("column %d is %s, want %s", j, rec.ColumnName(j), c.Name)
				}
				if c.Type.Composite() {
					m[c.Name] = bigQueryComposite(t, c, rec.Column(j), i)
					continue
				}
				m[c.Name] = nilIfNull(arrowValue(rec.Column(j), i))
			}
			rows = append(rows, m)
		}
		return nil
	}, bigqueryread.Endpoint(srv.Addr))
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// bigQueryComposite reads value i of a composite column as BigQuery's Arrow
// serves it (REPEATED: a list; RECORD: a struct) in arrowComposite's form.
func bigQueryComposite(t *testing.T, c Column, col arrow.Array, i int) any {
	t.Helper()
	if col.IsNull(i) {
		return nil
	}
	field := func(st *array.Struct, name string) arrow.Array {
		j, ok := st.DataType().(*arrow.StructType).FieldIdx(name)
		if !ok {
			t.Fatalf("column %s: no field %s in %s", c.Name, name, st.DataType())
		}
		return st.Field(j)
	}
	switch c.Type {
	case schemas.List, schemas.Counts:
		l := col.(*array.List)
		start, end := l.ValueOffsets(i)
		out := []any{}
		for j := start; j < end; j++ {
			if c.Type == schemas.List {
				out = append(out, plain(arrowValue(l.ListValues(), int(j))))
				continue
			}
			st := l.ListValues().(*array.Struct)
			out = append(out, map[string]any{"value": nilIfNull(arrowValue(field(st, "value"), int(j))), "count": field(st, "count").(*array.Int64).Value(int(j))})
		}
		return out
	case schemas.Quantiles:
		st := col.(*array.Struct)
		out := map[string]any{}
		for _, k := range c.Keys {
			out[k] = field(st, quantileField(k)).(*array.Float64).Value(i)
		}
		return out
	}
	st := col.(*array.Struct)
	b := field(st, "buckets").(*array.List)
	kv := b.ListValues().(*array.Struct)
	start, end := b.ValueOffsets(i)
	buckets := map[string]any{}
	for j := start; j < end; j++ {
		buckets[field(kv, "key").(*array.String).Value(int(j))] = field(kv, "value").(*array.Int64).Value(int(j))
	}
	return map[string]any{"buckets": buckets, "overflow": field(st, "overflow").(*array.Int64).Value(i)}
}

// TestBigQueryOutputTable: an existing table whose schema does not take the
// rows fails Prepare with one line naming the column and what to do; a
// spine column BigQuery cannot name fails before the table is touched.
//
// fixed dates: the training pipeline compares no spine instant with the
// clock, and these runs fail before reading any.
func TestBigQueryOutputTable(t *testing.T) {
	set := schemastest.MustParse(t, oracleDef)
	dir := t.TempDir()
	spinePath := filepath.Join(dir, "spine.csv")
	writeSpine(t, spinePath, []string{"account", "when", "label"}, [][]string{{"a_1", "2026-03-02T12:00:00Z", "1"}})
	srv := newFake(t)
	if err := srv.AddTable("tandem-test.ml.old", []bqfake.Column{
		{Name: "account", Type: bqfake.String}, {Name: "when", Type: bqfake.String}, {Name: "label", Type: bqfake.String},
		{Name: "acct__c_1h", Type: bqfake.Float64},
	}, nil); err != nil {
		t.Fatal(err)
	}
	badSpine := filepath.Join(dir, "bad.csv")
	writeSpine(t, badSpine, []string{"account", "when", "is fraud"}, [][]string{{"a_1", "2026-03-02T12:00:00Z", "1"}})
	for _, tc := range []struct {
		name, spine, table string
		wants              []string
	}{
		{"incompatible", spinePath, "tandem-test.ml.old", []string{"its column acct__c_1h is NULLABLE FLOAT64, the rows have NULLABLE INT64", "write to a new table, or drop this one (bq rm -t tandem-test:ml.old)"}},
		{"bad column name", badSpine, "tandem-test.ml.new", []string{`column "is fraud" is not a BigQuery column name`}},
		{"bad table", spinePath, "ml.new", []string{`bad table "ml.new"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &Config{
				Requests:   []Request{{Set: set, Features: []string{"c_1h"}, Source: schemas.BatchSource{Files: filepath.Join(dir, "none.jsonl")}}},
				SpineGlob:  tc.spine,
				SpineTime:  "when",
				Output:     Output{Table: tc.table},
				DeadLetter: filepath.Join(dir, "dead"),
				BigQuery:   batchpipe.BigQueryConfig{Endpoint: srv.Addr, RESTEndpoint: srv.URL},
			}
			err := Prepare(t.Context(), cfg)
			if err == nil {
				t.Fatal("Prepare = nil, want an error")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("message of several lines: %q", err)
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Prepare = %q, want it to say %q", err, w)
				}
			}
		})
	}
	if i := slices.IndexFunc(srv.WriteStreams(), func(bqfake.WriteStreamInfo) bool { return true }); i >= 0 {
		t.Errorf("a write stream was created for a refused output")
	}
}
