package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-fp/tandem/transforms/bigqueryread/bqfake"
)

// binary is the training command, built once for the tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "trainingtest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "training")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build the training command:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// writeSpine writes a small CSV spine keyed for the example sets.
// A fixed date: the training pipeline compares no instant with the clock.
func writeSpine(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "spine.csv")
	spine := "card_id,user_id,merchant,ts,label\nc_1001,100001,Starbucks,2026-03-02T12:00:00Z,1\nc_1002,100002,Amazon,2026-03-02T13:30:00.5Z,0\n"
	if err := os.WriteFile(path, []byte(spine), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDataflowDryRun builds the Dataflow job of the training pipeline
// without credentials (--dry_run prints it instead of submitting it) and
// checks that it is a batch job with read, join and write stages.
func TestDataflowDryRun(t *testing.T) {
	spine := writeSpine(t)
	dataflow := []string{
		"--runner=dataflow", "--dry_run",
		"--project=tandem-test", "--region=us-central1",
		"--staging_location=gs://tandem-test/staging", "--temp_location=gs://tandem-test/tmp",
		"--spine=files:" + spine, "--output=files:gs://tandem-test/training/out.parquet",
		"--dead_letter=gs://tandem-test/dead_letter/training",
	}
	srv, err := bqfake.NewServer() // the BigQuery output's table check
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	tests := []struct {
		name   string
		args   []string
		stages []string // transforms the job must hold (unique names)
		not    []string // and must not
	}{
		{
			name: "one set from files",
			args: []string{"--featureset=../../schemas/card_activity.yaml"},
			stages: []string{
				"Spine/trainpipe.ReadSpine/trainpipe.readSpineFn",
				"Features_card_activity/Read/batchpipe.ReadFiles/textio.Read",
				"Features_card_activity/trainpipe.Features/trainpipe.keyEventsFn",
				"Features_card_activity/trainpipe.Features/CoGBK",
				"Features_card_activity/trainpipe.Features/trainpipe.sweepFn",
				"Write/trainpipe.WriteRows/trainpipe.writeFn",
				"DeadLetters/batchpipe.WriteDeadLetters/batchpipe.writeDeadLettersFn",
				"Check/trainpipe.Check/trainpipe.checkFn",
			},
		},
		{
			name: "the shipped service",
			args: []string{"--service=../../schemas/services/fraud_model.yaml"},
			stages: []string{
				"Features_card_activity/trainpipe.Features/trainpipe.sweepFn",
				"Features_user_merchant/trainpipe.Features/trainpipe.sweepFn",
				"Features_user_sessions/trainpipe.Features/trainpipe.sweepFn",
				"Join/trainpipe.JoinRows/trainpipe.joinFn",
				"Write/trainpipe.WriteRows/trainpipe.writeFn",
			},
		},
		{
			name: "two sets, one from BigQuery",
			args: []string{"--featureset=../../schemas/card_activity.yaml", "--featureset=" + bigQuerySet(t)},
			stages: []string{
				"Features_card_activity/Read/batchpipe.ReadFiles/textio.Read",
				"Features_user_sessions/Read/bigqueryread.Read/bigqueryread.sessionFn",
				"Features_user_sessions/Read/bigqueryread.Read/bigqueryread.readStreamFn",
				"Features_user_sessions/trainpipe.Features/trainpipe.sweepFn",
				"Join/trainpipe.JoinRows/CoGBK",
				"Join/trainpipe.JoinRows/trainpipe.joinFn",
				"Write/trainpipe.WriteRows/trainpipe.writeFn",
			},
		},
		{
			name: "BigQuery output",
			args: []string{"--service=../../schemas/services/fraud_model.yaml", "--output=bq:tandem-test.ml.fraud_training", "--output_shards=8",
				"--bigquery_endpoint=" + srv.Addr, "--bigquery_rest_endpoint=" + srv.URL},
			stages: []string{
				"Join/trainpipe.JoinRows/trainpipe.joinFn",
				"Write/trainpipe.WriteBigQuery/trainpipe.encodeRowFn",
				"Write/trainpipe.WriteBigQuery/bigquerywrite.Write/bigquerywrite.shardFn",
				"Write/trainpipe.WriteBigQuery/bigquerywrite.Write/bigquerywrite.appendFn",
				"Write/trainpipe.WriteBigQuery/bigquerywrite.Write/bigquerywrite.commitFn",
				"Check/trainpipe.Check/trainpipe.checkFn",
			},
			not: []string{"Write/trainpipe.WriteRows/trainpipe.writeFn"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(binary, append(dataflow, tc.args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("training --runner=dataflow --dry_run: %v\n%s", err, out)
			}
			text := strings.ReplaceAll(string(out), `\"`, `"`)
			if !strings.Contains(text, `"type": "JOB_TYPE_BATCH"`) {
				t.Errorf("the job is not a batch job (no JOB_TYPE_BATCH):\n%s", out)
			}
			if strings.Contains(text, "JOB_TYPE_STREAMING") {
				t.Errorf("the job is a streaming job")
			}
			for _, st := range tc.stages {
				if !strings.Contains(text, `unique_name:"`+st+`"`) {
					t.Errorf("the job has no stage %q", st)
				}
			}
			for _, st := range tc.not {
				if strings.Contains(text, `unique_name:"`+st+`"`) {
					t.Errorf("the job has a stage %q", st)
				}
			}
		})
	}
}

// bigQuerySet is user_sessions with a BigQuery table as its batch source.
func bigQuerySet(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../schemas/user_sessions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	def := strings.Replace(string(b), "batch: {files: data/user_sessions.jsonl}", "batch: {bigquery: {table: tandem-test.web.page_views}}", 1)
	if def == string(b) {
		t.Fatal("user_sessions.yaml has no files batch source to replace")
	}
	path := filepath.Join(t.TempDir(), "user_sessions.yaml")
	if err := os.WriteFile(path, []byte(def), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFlags checks that bad flags fail before any pipeline is built.
func TestFlags(t *testing.T) {
	spine := writeSpine(t)
	set := "--featureset=../../schemas/card_activity.yaml"
	out := "--output=files:" + filepath.Join(t.TempDir(), "out.parquet")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no feature set", []string{"--spine=files:" + spine, out}, "--service or --featureset is required"},
		{"no spine", []string{set, out}, "--spine is required"},
		{"no output", []string{set, "--spine=files:" + spine}, "--output is required"},
		{"spine not files", []string{set, "--spine=" + spine, out}, "want files:GLOB, bq:PROJECT.DATASET.TABLE or bq-query:SQL"},
		{"bad spine table", []string{set, "--spine=bq:ml.spine", out}, `bad table \"ml.spine\"`},
		{"spine query without a project", []string{set, "--spine=bq-query:SELECT 1", out}, "needs a billing project (--bigquery_project)"},
		{"no spine file", []string{set, "--spine=files:nowhere/*.csv", out}, "no file matches"},
		{"bad output format", []string{set, "--spine=files:" + spine, "--output=files:out.xlsx"}, "cannot tell the format"},
		{"bad output table", []string{set, "--spine=files:" + spine, "--output=bq:ml.out"}, `bad table \"ml.out\"`},
		{"bad write disposition", []string{set, "--spine=files:" + spine, "--output=bq:p.ml.out", "--write_disposition=WRITE_TRUNCATE"}, "want WRITE_EMPTY or WRITE_APPEND"},
		{"no time column", []string{set, "--spine=files:" + spine, "--spine_time=when", out}, `no time column \"when\"`},
		{"unknown service file", []string{"--service=nowhere.yaml", "--spine=files:" + spine, out}, "nowhere.yaml"},
		{"source without a set", []string{set, "--spine=files:" + spine, out, "--source=files:x.jsonl"}, `want SET=files:GLOB`},
		{"source of a set not asked for", []string{set, "--spine=files:" + spine, out, "--source=user_sessions=files:x.jsonl"}, `no requested feature set \"user_sessions\" (requested: card_activity)`},
		{"source twice", []string{set, "--spine=files:" + spine, out, "--source=card_activity=files:x.jsonl", "--source=card_activity=files:y.jsonl"}, "has a --source already"},
		{"bad source", []string{set, "--spine=files:" + spine, out, "--source=card_activity=x.jsonl"}, "want bq:PROJECT.DATASET.TABLE or files:GLOB"},
		{"no key column", []string{"--featureset=../../schemas/card_activity.yaml", "--spine=files:" + keylessSpine(t), out}, `no column \"card_id\"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(binary, tc.args...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Errorf("training %s: err %v, output:\n%s\nwant a failure mentioning %q", strings.Join(tc.args, " "), err, out, tc.want)
			}
		})
	}
}

// keylessSpine is a spine without the key column. A fixed date: nothing
// compares its instant with the wall clock.
func keylessSpine(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "spine.csv")
	if err := os.WriteFile(path, []byte("account,ts\na,2026-03-02T12:00:00Z\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSourceOverride runs the command with --source: the events come from
// the file it names, not the set's sources.batch. A fixed date: the
// training pipeline compares no instant with the clock.
func TestSourceOverride(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "events.jsonl")
	lines := `{"card_id":"c_x","merchant":"A","amount":1.5,"approved":true,"ts":"2026-03-02T11:10:00Z"}
{"card_id":"c_x","merchant":"B","amount":2.5,"approved":true,"ts":"2026-03-02T11:50:00Z"}
{"card_id":"c_x","merchant":"C","amount":9,"approved":true,"ts":"2026-03-02T12:00:00Z"}
`
	if err := os.WriteFile(events, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	spine := filepath.Join(dir, "spine.csv")
	if err := os.WriteFile(spine, []byte("card_id,ts\nc_x,2026-03-02T12:00:00Z\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.jsonl")
	cmd := exec.Command(binary, "--featureset=../../schemas/card_activity.yaml", "--source=card_activity=files:"+events,
		"--spine=files:"+spine, "--output=files:"+out, "--dead_letter="+filepath.Join(dir, "dead"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("training: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// The event at 12:00 is at the row's instant: not counted.
	for _, want := range []string{`"card_activity__txn_count_1h":2`, `"card_activity__amount_mean_24h":2`, `"card_activity__last_merchant":"B"`} {
		if !strings.Contains(string(got), want) {
			t.Errorf("output %s has no %s", got, want)
		}
	}
}
