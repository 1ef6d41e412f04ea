package main

// These tests run the streaming command as a subprocess against the
// emulator host (scripts/emulators), which outlives the pipeline, so that
// the pipeline can be killed and restarted over the same Pub/Sub and
// Bigtable state. TestMain builds both binaries once.

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/bigtable"

	"github.com/tandem-fp/tandem/pipelines/streaming/localstack"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/schemas/sample"
	"github.com/tandem-fp/tandem/schemas/schemastest"
	"github.com/tandem-fp/tandem/transforms/aggregate"
	"github.com/tandem-fp/tandem/transforms/pubsubread"
)

var (
	binDir    string // holds the built streaming and emulators binaries
	psAddr    string // Pub/Sub fake of the emulator host
	btAddr    string // Bigtable emulator of the emulator host
	setupErr  error
	emulators *exec.Cmd
)

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "streaming-test")
		if err != nil {
			setupErr = err
			return m.Run()
		}
		defer os.RemoveAll(dir)
		binDir = dir
		if setupErr = build(dir); setupErr == nil {
			setupErr = startEmulators(dir)
		}
		if emulators != nil {
			defer func() {
				_ = emulators.Process.Signal(syscall.SIGTERM)
				_ = emulators.Wait()
			}()
		}
		return m.Run()
	}()
	os.Exit(code)
}

func build(dir string) error {
	for _, b := range []struct{ out, pkg string }{
		{"streaming", "."},
		{"emulators", "../../scripts/emulators"},
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.out), b.pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startEmulators starts the emulator host with the test feature sets.
func startEmulators(dir string) error {
	var err error
	if psAddr, err = freeAddr(); err != nil {
		return err
	}
	if btAddr, err = freeAddr(); err != nil {
		return err
	}
	emulators = exec.Command(filepath.Join(dir, "emulators"),
		"--featureset", "testdata/kill_cards.yaml,testdata/term_cards.yaml",
		"--pubsub_addr", psAddr, "--bigtable_addr", btAddr, "--ack_deadline", "10s", "--reject_expired_cells")
	emulators.Stderr = os.Stderr
	out, err := emulators.StdoutPipe()
	if err != nil {
		return err
	}
	if err := emulators.Start(); err != nil {
		return fmt.Errorf("start emulators: %w", err)
	}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "READY ") {
				ready <- nil
				return
			}
		}
		ready <- fmt.Errorf("emulators exited before READY")
	}()
	select {
	case err := <-ready:
		return err
	case <-time.After(60 * time.Second):
		return fmt.Errorf("emulators not ready after 60s")
	}
}

func setup(t *testing.T) {
	t.Helper()
	if setupErr != nil {
		t.Fatalf("test setup: %v", setupErr)
	}
}

func loadSet(t *testing.T, path string) *schemas.FeatureSet {
	t.Helper()
	set, err := schemas.Load(path)
	if err != nil {
		t.Fatalf("Load(%s) = %v", path, err)
	}
	return set
}

// pipeline starts the streaming command against the emulator host.
func pipeline(t *testing.T, set string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), "streaming-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(binDir, "streaming"), append([]string{"--featureset", set}, args...)...)
	cmd.Env = append(os.Environ(), "PUBSUB_EMULATOR_HOST="+psAddr, "BIGTABLE_EMULATOR_HOST="+btAddr)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start streaming: %v", err)
	}
	return cmd, logf.Name()
}

// waitExit waits for the command and returns its exit code.
func waitExit(t *testing.T, cmd *exec.Cmd, log string, timeout time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		b, _ := os.ReadFile(log)
		t.Fatalf("streaming still running after %s; log tail:\n%s", timeout, tail(string(b), 3000))
	}
	return -1
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// publishEvents publishes the events' JSON to the set's topic.
func publishEvents(set *schemas.FeatureSet, events []schemas.Event) error {
	ctx := context.Background()
	sub := pubsubread.Subscription(set.Sources.Stream.Subscription)
	p, err := localstack.NewPublisher(ctx, pubsubread.Endpoint{Emulator: psAddr}, localstack.Topic(sub))
	if err != nil {
		return err
	}
	defer p.Close()
	raw := make([][]byte, len(events))
	for i, e := range events {
		raw[i] = set.EncodeJSON(e)
	}
	_, err = p.Publish(ctx, raw)
	return err
}

// countFeature is the first count feature of a set.
func countFeature(t *testing.T, set *schemas.FeatureSet) schemas.Feature {
	t.Helper()
	for _, f := range set.Features {
		if f.Op == schemas.OpCount {
			return f
		}
	}
	t.Fatalf("feature set %s has no count feature", set.Name)
	return schemas.Feature{}
}

// expectedCounts is the count of every tile of the count feature.
func expectedCounts(set *schemas.FeatureSet, f schemas.Feature, events []schemas.Event) map[string]int64 {
	want := map[string]int64{}
	for _, e := range events {
		want[fmt.Sprintf("%s@%d", e.Key, schemas.TileStart(e.Time, f.Tile))]++
	}
	return want
}

// storedCounts reads the count feature's stream tiles.
func storedCounts(t *testing.T, set *schemas.FeatureSet, f schemas.Feature) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	cfg := bigtablestore.Config{Project: bigtablestore.DefaultProject, Instance: bigtablestore.DefaultInstance, Table: bigtablestore.DefaultTable, Endpoint: btAddr}
	cl, err := cfg.NewClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string]int64{}
	err = cl.Open(cfg.Table).ReadRows(ctx, bigtable.PrefixRange(set.Name+"#"), func(r bigtable.Row) bool {
		_, entity, _ := schemas.SplitRowKey(r.Key())
		for _, it := range r[schemas.FamilyStream] {
			p, err := aggregate.Decode(it.Value)
			if err != nil {
				t.Errorf("decode %s: %v", r.Key(), err)
				return false
			}
			v, _ := p.Result()
			got[fmt.Sprintf("%s@%d", entity, it.Timestamp)] = v.Int
		}
		return true
	}, bigtable.RowFilter(bigtable.ChainFilters(bigtable.FamilyFilter(schemas.FamilyStream), bigtable.ColumnFilter(f.Qualifier()))))
	if err != nil {
		t.Fatalf("read stream tiles: %v", err)
	}
	return got
}

// compare returns the events missing from the stored counts and the
// duplicates (stored beyond expected).
func compare(want, got map[string]int64) (missing, duplicates int64) {
	for k, w := range want {
		g := got[k]
		if g < w {
			missing += w - g
		} else {
			duplicates += g - w
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			duplicates += g
		}
	}
	return missing, duplicates
}

func total(m map[string]int64) (n int64) {
	for _, v := range m {
		n += v
	}
	return n
}

// TestKillRestart publishes 12,000 events while the pipeline is killed
// with SIGKILL four times at random moments and restarted; then no event
// may be missing from the tiles, and the duplicates must be within the
// bound: the messages of the bundle in flight at each crash (written, not
// yet acknowledged), at most --bundle_size per kill.
func TestKillRestart(t *testing.T) {
	setup(t)
	const (
		n          = 12000
		kills      = 4
		bundleSize = 1000
	)
	set := loadSet(t, "testdata/kill_cards.yaml")
	f := countFeature(t, set)
	// Two days old, whatever the date: inside the table's max-age GC (8d),
	// which the emulator applies against the wall clock.
	t0 := schemastest.DaysAgo(2).Add(10 * time.Hour)
	// Four minutes of event time: inside the allowed lateness, since the
	// fake redelivers a backlog in random order.
	events := sample.Events(set, 7, n, t0, t0.Add(4*time.Minute))
	want := expectedCounts(set, f, events)

	// Publish in 120 slices over ~12s, while the pipeline runs and dies,
	// so that a kill usually finds a bundle in flight.
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		step := n / 120
		for i := 0; i < n; i += step {
			if err := publishEvents(set, events[i:min(i+step, n)]); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	args := []string{"--ack_extension", "10s", "--bundle_size", fmt.Sprint(bundleSize), "--dead_letter", filepath.Join(t.TempDir(), "dead")}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for k := range kills {
		before := total(storedCounts(t, set, f))
		start := time.Now()
		cmd, log := pipeline(t, "testdata/kill_cards.yaml", args...)
		// Kill at a random moment once this run is writing.
		for total(storedCounts(t, set, f)) == before && time.Since(start) < 20*time.Second {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.Int64N(int64(time.Second))))
		after := time.Since(start)
		before = total(storedCounts(t, set, f))
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if code := waitExit(t, cmd, log, 30*time.Second); code == 0 {
			t.Fatalf("kill %d: exit code 0 after SIGKILL", k+1)
		}
		t.Logf("kill %d after %s (%d events counted in tiles before it)", k+1, after.Round(time.Millisecond), before)
	}
	<-pubDone
	// The last run drains the rest, including the messages redelivered
	// once the killed runs' ack deadlines (10s) lapse.
	cmd, log := pipeline(t, "testdata/kill_cards.yaml", append(args, "--max_idle", "15s")...)
	if code := waitExit(t, cmd, log, 3*time.Minute); code != 0 {
		b, _ := os.ReadFile(log)
		t.Fatalf("final run exit code %d; log tail:\n%s", code, tail(string(b), 3000))
	}
	got := storedCounts(t, set, f)
	missing, dups := compare(want, got)
	t.Logf("%d events, %d kills: %d counted, %d missing, %d duplicates (bound %d)", n, kills, total(got), missing, dups, kills*bundleSize)
	if missing != 0 {
		t.Errorf("%d events missing from the tiles after %d kills", missing, kills)
	}
	if dups > kills*bundleSize {
		t.Errorf("%d duplicates, more than the bound %d (%d kills × bundle size %d)", dups, kills*bundleSize, kills, bundleSize)
	}
}

// TestSIGTERMDrains stops a busy pipeline with SIGTERM: it must exit 0
// having written and acknowledged everything it pulled, so that a second
// run completes the tiles exactly, with no event lost or counted twice.
func TestSIGTERMDrains(t *testing.T) {
	setup(t)
	set := loadSet(t, "testdata/term_cards.yaml")
	f := countFeature(t, set)
	t0 := schemastest.DaysAgo(1).Add(10 * time.Hour) // inside the 8d max-age GC on any date
	events := sample.Events(set, 9, 20000, t0, t0.Add(4*time.Minute))
	want := expectedCounts(set, f, events)
	if err := publishEvents(set, events); err != nil {
		t.Fatal(err)
	}

	cmd, log := pipeline(t, "testdata/term_cards.yaml", "--bundle_size", "500", "--max_outstanding", "1000")
	deadline := time.Now().Add(time.Minute)
	for total(storedCounts(t, set, f)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no tile written within a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, cmd, log, time.Minute); code != 0 {
		b, _ := os.ReadFile(log)
		t.Fatalf("exit code %d after SIGTERM, want 0; log tail:\n%s", code, tail(string(b), 3000))
	}
	b, _ := os.ReadFile(log)
	if !strings.Contains(string(b), "draining") {
		t.Errorf("log does not mention draining:\n%s", tail(string(b), 2000))
	}
	drained := total(storedCounts(t, set, f))
	if drained >= int64(len(events)) {
		t.Logf("the first run consumed everything (%d events) before SIGTERM; the drain is not exercised", drained)
	}

	cmd, log = pipeline(t, "testdata/term_cards.yaml", "--max_idle", "3s")
	if code := waitExit(t, cmd, log, 2*time.Minute); code != 0 {
		t.Fatalf("second run exit code %d", code)
	}
	missing, dups := compare(want, storedCounts(t, set, f))
	t.Logf("first run wrote %d of %d events before draining; after the second run: %d missing, %d duplicates", drained, len(events), missing, dups)
	if missing != 0 || dups != 0 {
		t.Errorf("after a drain and a second run: %d events missing, %d counted twice; want none", missing, dups)
	}
}

// TestDataflowDryRun builds the Dataflow job offline and checks that it is
// a streaming job on Streaming Engine reading Pub/Sub.
func TestDataflowDryRun(t *testing.T) {
	setup(t)
	cmd := exec.Command(filepath.Join(binDir, "streaming"),
		"--featureset", "../../schemas/card_activity.yaml",
		"--runner=dataflow", "--dry_run",
		"--project=tandem-prod", "--region=us-central1", "--staging_location=gs://tandem-staging/streaming",
		"--bigtable_project=tandem-prod", "--bigtable_instance=features")
	cmd.Env = append(os.Environ(), "GOOGLE_APPLICATION_CREDENTIALS=/nonexistent")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, tail(string(out), 3000))
	}
	for _, want := range []string{
		"JOB_TYPE_STREAMING",
		"beam:transform:pubsub_read:v1",
		"projects/tandem-local/subscriptions/card-events",
		"enable_streaming_engine",
		"event_time", // the timestamp attribute
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dry-run output lacks %q", want)
		}
	}
}

// TestNoTable runs the streaming command, on the local runner and in its
// Dataflow startup, against a Bigtable emulator without the table, as a new
// user who skipped scripts/setuptable would: it must fail before any Beam
// work, in one line naming the table, the instance and the command that
// creates it.
func TestNoTable(t *testing.T) {
	setup(t)
	srv, cfg, err := bigtablestore.StartEmulator()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	want := "streaming: bigtablestore: table not set up: table features not found in instance tandem of project tandem-local (emulator at " + cfg.Endpoint + "); " +
		"create it with: BIGTABLE_EMULATOR_HOST=" + cfg.Endpoint + " go run ./scripts/setuptable --featureset testdata/kill_cards.yaml --bigtable_project tandem-local --bigtable_instance tandem --bigtable_table features\n"
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"local", nil},
		{"dataflow", []string{"--runner=dataflow", "--project=tandem-test", "--region=us-central1", "--staging_location=gs://tandem-test/staging"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(filepath.Join(binDir, "streaming"), append([]string{"--featureset", "testdata/kill_cards.yaml"}, tc.args...)...)
			cmd.Env = append(os.Environ(), "PUBSUB_EMULATOR_HOST="+psAddr, "BIGTABLE_EMULATOR_HOST="+cfg.Endpoint, "GOOGLE_APPLICATION_CREDENTIALS=/nonexistent")
			out, err := cmd.CombinedOutput()
			if err == nil || string(out) != want {
				t.Errorf("streaming %s without the table: err %v, output:\n%s\nwant exactly:\n%s", strings.Join(tc.args, " "), err, tail(string(out), 3000), want)
			}
		})
	}
}
