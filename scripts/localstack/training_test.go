package localstack

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"os"
	"os/exec"
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

	"github.com/tandem-fp/tandem/schemas"
)

// TestDemoTrainingCommand runs the demo (scripts/local) until it prints its
// training command, then runs exactly that command's flags with the
// training binary over the files the demo wrote, and checks the output:
// one row per spine row, the spine's columns unchanged and in order, then
// the service's features, and every txn_count_1h equal to a count of the
// history's events in the row's window (schemas.Feature.Span).
func TestDemoTrainingCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	dir := t.TempDir()
	binary := filepath.Join(t.TempDir(), "training")
	build := exec.CommandContext(ctx, "go", "build", "-o", binary, "../../pipelines/training")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the training command: %v\n%s", err, out)
	}

	demoCtx, stopDemo := context.WithCancel(ctx)
	got := make(chan []TrainingCommand, 1)
	var printed bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- RunDemo(demoCtx, DemoConfig{
			Definitions:   []string{"../../schemas"},
			Addr:          "127.0.0.1:0",
			History:       72 * time.Hour,
			HistoryEvents: 3000,
			Rate:          5,
			Seed:          7,
			StaleAfter:    2 * time.Minute,
			Dir:           dir,
			Training:      func(c []TrainingCommand) { got <- c },
		}, &printed)
	}()
	var cmds []TrainingCommand
	select {
	case cmds = <-got:
	case err := <-done:
		t.Fatalf("demo ended before its training command: %v\n%s", err, printed.String())
	case <-ctx.Done():
		t.Fatal("no training command")
	}
	stopDemo()
	if err := <-done; err != nil {
		t.Fatalf("demo: %v", err)
	}
	if len(cmds) != 1 || cmds[0].Service != "fraud_model" {
		t.Fatalf("training commands %+v, want one for fraud_model", cmds)
	}
	c := cmds[0]
	if !strings.Contains(printed.String(), c.String()) {
		t.Fatalf("the demo did not print the command %s:\n%s", c, printed.String())
	}

	run := exec.CommandContext(ctx, binary, c.Args...)
	if out, err := run.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", c, err, out)
	}

	spine := readCSV(t, c.Spine)
	rows, cols := readParquet(t, c.Output)
	svc, err := schemas.LoadServiceWithSets("../../schemas/services/fraud_model.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(spine[0])
	for _, e := range svc.Entries {
		for _, f := range e.Features {
			want = append(want, schemas.FeatureColumn(e.Set.Name, f.Name))
		}
	}
	for _, d := range svc.Derived {
		want = append(want, schemas.ServiceDerivedColumn(svc.Name, d.Name))
	}
	if !slices.Equal(cols, want) {
		t.Fatalf("output columns %v, want %v", cols, want)
	}
	if len(rows) != len(spine)-1 || len(rows) != c.SpineRows {
		t.Fatalf("%d output rows, %d spine rows, want equal", len(rows), len(spine)-1)
	}

	// Brute force: the history's card events in each row's window.
	cards := svc.Entries[0].Set
	f, _ := cards.Feature("txn_count_1h")
	history := readHistory(t, cards, filepath.Join(dir, cards.Name+"-history.jsonl"))
	bySpine := map[string][]string{}
	for _, r := range spine[1:] {
		bySpine[strings.Join(r, ",")] = r
	}
	nonZero := 0
	for _, row := range rows {
		key := strings.Join(row[:len(spine[0])], ",")
		if _, ok := bySpine[key]; !ok {
			t.Fatalf("output row %v: its spine columns are no spine row", row[:len(spine[0])])
		}
		at, err := time.Parse(time.RFC3339Nano, row[slices.Index(cols, "ts")])
		if err != nil {
			t.Fatal(err)
		}
		from, to := f.Span(at.UnixMicro())
		n := 0
		for _, e := range history {
			if e.Key == row[slices.Index(cols, "card_id")] && e.Time >= from && e.Time < to {
				n++
			}
		}
		if got := row[slices.Index(cols, "card_activity__txn_count_1h")]; got != strconv.Itoa(n) {
			t.Errorf("row %v: txn_count_1h %s, want %d", row[:len(spine[0])], got, n)
		}
		if n > 0 {
			nonZero++
		}
		// The service's derived ratio, from the row's own columns: null
		// (empty) when the user viewed nothing.
		views, err := strconv.ParseInt(row[slices.Index(cols, "user_sessions__views_1h")], 10, 64)
		if err != nil {
			t.Fatalf("row %v: views_1h: %v", row[:len(spine[0])], err)
		}
		wantRatio := ""
		if views != 0 {
			wantRatio = strconv.FormatFloat(float64(n)/float64(views), 'g', -1, 64)
		}
		if got := row[slices.Index(cols, "fraud_model__txns_per_view_1h")]; got != wantRatio {
			if g, err := strconv.ParseFloat(got, 64); wantRatio == "" || err != nil || g != float64(n)/float64(views) {
				t.Errorf("row %v: txns_per_view_1h %q, want %q (%d / %d)", row[:len(spine[0])], got, wantRatio, n, views)
			}
		}
	}
	if nonZero < len(rows)/2 {
		t.Errorf("only %d of %d rows count an event in the hour before: the spine misses the history", nonZero, len(rows))
	}
	t.Logf("%s\n%d rows, %d with events in the hour before", c, len(rows), nonZero)
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// readParquet reads a Parquet file with Arrow's reader, every value as
// its text ("" for null).
func readParquet(t *testing.T, path string) (rows [][]string, cols []string) {
	t.Helper()
	pf, err := file.OpenParquetFile(path, false)
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
	for i := range int(tbl.NumCols()) {
		cols = append(cols, tbl.Schema().Field(i).Name)
	}
	tr := array.NewTableReader(tbl, 1000)
	defer tr.Release()
	for tr.Next() {
		rec := tr.Record()
		for i := range int(rec.NumRows()) {
			row := make([]string, rec.NumCols())
			for j := range row {
				if !rec.Column(j).IsNull(i) {
					row[j] = rec.Column(j).ValueStr(i)
				}
			}
			rows = append(rows, row)
		}
	}
	return rows, cols
}

// readHistory decodes a JSON-lines history file.
func readHistory(t *testing.T, set *schemas.FeatureSet, path string) []schemas.Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []schemas.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		e, err := set.DecodeJSON(sc.Bytes())
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, e)
	}
	return out
}
