package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/schemas/schemastest"
)

// binary is the batch command, built once for the tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "batchtest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "batch")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build the batch command:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestDataflowDryRun builds the Dataflow job of the batch pipeline without
// credentials (--dry_run prints it instead of submitting it) and checks that
// it is a batch job with the pipeline's stages.
func TestDataflowDryRun(t *testing.T) {
	dataflow := []string{
		"--runner=dataflow", "--dry_run",
		"--project=tandem-test", "--region=us-central1",
		"--staging_location=gs://tandem-test/staging", "--temp_location=gs://tandem-test/tmp",
		"--featureset=../../schemas/card_activity.yaml", "--as_of=" + time.Now().UTC().Format(time.RFC3339),
		"--bigtable_project=tandem-test", "--bigtable_instance=features", "--bigtable_table=features",
		"--dead_letter=gs://tandem-test/dead_letter/card_activity",
	}
	tests := []struct {
		name   string
		args   []string
		stages []string // transforms the job must hold (unique names)
	}{
		{
			name: "files",
			args: []string{"--source=files:gs://tandem-test/events/*.jsonl"},
			stages: []string{
				"Read/batchpipe.ReadFiles/textio.Read",
				"Read/batchpipe.ReadFiles/transforms.DecodeJSON",
				"Tile/batchpipe.TileRows/batchpipe.bundleTilesFn",
				"Tile/batchpipe.TileRows/batchpipe.rowsFn",
				"Write/bigtablewrite.Write/bigtablewrite.writeFn",
				"Watermark/batchpipe.CommitWatermark/batchpipe.commitFn",
				"DeadLetters/batchpipe.WriteDeadLetters/batchpipe.writeDeadLettersFn",
			},
		},
		{
			name: "bigquery",
			args: []string{"--source=bq:tandem-test.payments.card_events", "--bigquery_max_streams=64"},
			stages: []string{
				"Read/bigqueryread.Read/bigqueryread.sessionFn",
				"Read/bigqueryread.Read/bigqueryread.readStreamFn",
				"Tile/batchpipe.TileRows/batchpipe.bundleTilesFn",
				"Write/bigtablewrite.Write/bigtablewrite.writeFn",
				"Watermark/batchpipe.CommitWatermark/batchpipe.commitFn",
			},
		},
		{
			name: "csv files",
			args: []string{"--source=files:gs://tandem-test/events/*.csv"},
			stages: []string{
				"Read/batchpipe.ReadFiles/fileio.MatchFiles",
				"Read/batchpipe.ReadFiles/batchpipe.readCSVFn",
				"Tile/batchpipe.TileRows/batchpipe.bundleTilesFn",
				"Write/bigtablewrite.Write/bigtablewrite.writeFn",
				"Watermark/batchpipe.CommitWatermark/batchpipe.commitFn",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(binary, append(dataflow, tc.args...)...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("batch --runner=dataflow --dry_run: %v\n%s", err, out)
			}
			// The job is logged as quoted JSON, the pipeline as quoted text.
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
		})
	}
}

// TestFlags checks that bad flags fail before any pipeline is built.
func TestFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no feature set", nil, "--featureset is required"},
		{"bad as_of", []string{"--featureset=../../schemas/card_activity.yaml", "--as_of=yesterday"}, "--as_of"},
		{"bad source", []string{"--featureset=../../schemas/card_activity.yaml", "--source=events.jsonl"}, "want bq:PROJECT.DATASET.TABLE or files:GLOB"},
		{"no file", []string{"--featureset=../../schemas/card_activity.yaml", "--source=files:nowhere/*.jsonl"}, "no file matches"},
		{"emulator on dataflow", []string{"--featureset=../../schemas/card_activity.yaml", "--emulator", "--runner=dataflow"}, "--emulator runs Bigtable in this process"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(binary, tc.args...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Errorf("batch %s: err %v, output:\n%s\nwant a failure mentioning %q", strings.Join(tc.args, " "), err, out, tc.want)
			}
		})
	}
}

// TestNoTable runs the batch command against an emulator without the
// table, as a new user who skipped scripts/setuptable would: it must fail
// before any Beam work, in one line naming the table, the instance and the
// command that creates it.
func TestNoTable(t *testing.T) {
	srv, cfg, err := bigtablestore.StartEmulator()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	// as_of on a boundary of the set's largest tile: no line about rounding.
	asOf := schemastest.DaysAgo(0).Format(time.RFC3339)
	cmd := exec.Command(binary, "--featureset=../../schemas/card_activity.yaml", "--as_of="+asOf)
	cmd.Env = append(os.Environ(), "BIGTABLE_EMULATOR_HOST="+cfg.Endpoint)
	out, err := cmd.CombinedOutput()
	want := "batch: bigtablestore: table not set up: table features not found in instance tandem of project tandem-local (emulator at " + cfg.Endpoint + "); " +
		"create it with: BIGTABLE_EMULATOR_HOST=" + cfg.Endpoint + " go run ./scripts/setuptable --featureset ../../schemas/card_activity.yaml --bigtable_project tandem-local --bigtable_instance tandem --bigtable_table features\n"
	if err == nil || string(out) != want {
		t.Errorf("batch without the table: err %v, output:\n%s\nwant exactly:\n%s", err, out, want)
	}
}
