// Command streambench measures the local streaming pipeline (prism, Tandem's
// Pub/Sub source) end to end and prints its figures:
//
//  1. Freshness: events of card_activity published at --rate events/s (event
//     time = now) for --freshness_for; one event in ten belongs to a fresh
//     probe entity, and a poller reads the probes' rows every 10 ms: the
//     time from publishing a probe to its tile being readable in Bigtable,
//     p50/p90/p99/max.
//  2. Throughput: for --throughput_for, a publisher keeps the subscription's
//     backlog near --backlog messages and the pipeline drains it as fast as
//     it can; events acknowledged per second (the pipeline acknowledges a
//     message only after its tile is written), overall and per interval.
//  3. Memory: the pipeline process's RSS at the start, during and at the end.
//
// The pipeline runs as a subprocess (the streaming command, built first);
// the Pub/Sub fake and the Bigtable emulator run in this process, so both
// share the machine's cores with the pipeline, as in a local run.
//
//	go run ./scripts/streambench
//	go run ./scripts/streambench --freshness_for 20s --throughput_for 30s
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cloud.google.com/go/bigtable"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"

	"github.com/tandem-fp/tandem/pipelines/streaming/localstack"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/sample"
	"github.com/tandem-fp/tandem/transforms/pubsubread"
)

var (
	featureset    = flag.String("featureset", "schemas/card_activity.yaml", "feature set to stream")
	rate          = flag.Int("rate", 1000, "freshness phase: events per second")
	freshnessFor  = flag.Duration("freshness_for", 60*time.Second, "freshness phase duration")
	throughputFor = flag.Duration("throughput_for", 2*time.Minute, "throughput phase duration")
	backlog       = flag.Int("backlog", 6000, "throughput phase: messages kept waiting in the subscription")
	bundleWait    = flag.Duration("bundle_wait", 0, "pipeline --bundle_wait (0: its default)")
	cpuProfile    = flag.String("cpuprofile", "", "pipeline --cpuprofile")
	benchProfile  = flag.String("bench_cpuprofile", "", "CPU profile of this process (emulators and publisher)")
)

// ackCounter counts acknowledged messages (a pstest reactor).
type ackCounter struct{ n atomic.Int64 }

func (a *ackCounter) React(req any) (bool, any, error) {
	if r, ok := req.(*pubsubpb.AcknowledgeRequest); ok {
		a.n.Add(int64(len(r.GetAckIds())))
	}
	return false, nil, nil
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "streambench:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	// This process hosts the Pub/Sub fake, which keeps every message ever
	// published: spend memory rather than garbage-collection CPU on it, so
	// that the fake takes less of the cores the pipeline needs.
	debug.SetGCPercent(400)
	if *benchProfile != "" {
		f, err := os.Create(*benchProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	set, err := schemas.Load(*featureset)
	if err != nil {
		return err
	}
	sub := pubsubread.Subscription(set.Sources.Stream.Subscription)
	topic := localstack.Topic(sub)
	acks := &ackCounter{}
	st, err := localstack.Start(ctx, localstack.Options{
		PubSubReactors: []pstest.ServerReactorOption{{FuncName: "Acknowledge", Reactor: acks}},
	}, set)
	if err != nil {
		return err
	}
	defer st.Close()

	dir, err := os.MkdirTemp("", "streambench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "streaming")
	fmt.Println("building the streaming command ...")
	if out, err := exec.Command("go", "build", "-o", bin, "./pipelines/streaming").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	args := []string{"--featureset", *featureset, "--dead_letter", filepath.Join(dir, "dead", "dl")}
	if *cpuProfile != "" {
		args = append(args, "--cpuprofile", *cpuProfile)
	}
	if *bundleWait > 0 {
		args = append(args, "--bundle_wait", bundleWait.String())
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "PUBSUB_EMULATOR_HOST="+st.PubSub.Addr, "BIGTABLE_EMULATOR_HOST="+st.Bigtable.Addr)
	logf, err := os.Create(filepath.Join(dir, "streaming.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill() }()

	cl, err := st.BigtableConfig.NewClient(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	tbl := cl.Open(st.BigtableConfig.Table)
	countQ := ""
	for _, f := range set.Features {
		if f.Op == schemas.OpCount {
			countQ = f.Qualifier()
		}
	}
	if countQ == "" {
		return fmt.Errorf("feature set %s has no count feature to probe", set.Name)
	}

	// Warm up: wait until the pipeline writes a first event.
	fmt.Println("starting the pipeline ...")
	if err := waitVisible(ctx, st, tbl, set, topic, countQ, 60*time.Second); err != nil {
		return err
	}
	rssStart := rss(cmd.Process.Pid)
	fmt.Printf("pipeline up (pid %d), RSS %s\n", cmd.Process.Pid, mb(rssStart))

	lat, err := freshness(ctx, st, tbl, set, topic, countQ, cmd.Process.Pid)
	if err != nil {
		return err
	}
	rssAfterFresh := rss(cmd.Process.Pid)

	tp, rates, rssSeries := throughput(st, set, topic, acks, cmd.Process.Pid)
	rssEnd := rss(cmd.Process.Pid)

	// Drain: SIGTERM, exit 0.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	drainStart := time.Now()
	werr := cmd.Wait()
	drainTook := time.Since(drainStart)

	fmt.Println()
	fmt.Println("== streambench results ==")
	fmt.Printf("machine: %d CPUs; load average at end: %s\n", numCPU(), loadavg())
	fmt.Printf("freshness at %d events/s for %s: %d probes, p50 %s, p90 %s, p99 %s, max %s (publish → count tile readable in Bigtable; 10 ms polling)\n",
		*rate, *freshnessFor, len(lat), pct(lat, 50), pct(lat, 90), pct(lat, 99), pct(lat, 100))
	fmt.Printf("throughput for %s (backlog kept near %d): %.0f events/s sustained\n", *throughputFor, *backlog, tp)
	fmt.Printf("  per 10s: %s\n", rates)
	fmt.Printf("pipeline RSS: start %s, after freshness %s, end %s\n", mb(rssStart), mb(rssAfterFresh), mb(rssEnd))
	fmt.Printf("  during throughput: %s\n", rssSeries)
	fmt.Printf("emulators+publisher process RSS: %s\n", mb(rss(os.Getpid())))
	fmt.Printf("SIGTERM drain: %v after %s\n", exitStatus(werr), drainTook.Round(time.Millisecond))
	fmt.Printf("pipeline counters: %s\n", finalCounters(logf.Name()))
	return nil
}

// waitVisible publishes one probe and waits until its tile is readable.
func waitVisible(ctx context.Context, st *localstack.Stack, tbl *bigtable.Table, set *schemas.FeatureSet, topic, countQ string, timeout time.Duration) error {
	e := probeEvent(set, "warmup", time.Now())
	st.PubSub.Publish(topic, set.EncodeJSON(e), nil)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		row, err := tbl.ReadRow(ctx, schemas.RowKey(set.Name, e.Key))
		if err != nil {
			return err
		}
		if len(row[schemas.FamilyStream]) > 0 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the pipeline wrote nothing within %s", timeout)
}

// probeEvent is a sample event of a fresh entity.
func probeEvent(set *schemas.FeatureSet, key string, at time.Time) schemas.Event {
	e := sample.Events(set, 1, 1, at, at.Add(time.Microsecond))[0]
	vals := append([]schemas.Value(nil), e.Values...)
	vals[set.KeyIndexes()[0]] = schemas.StringValue(key) // a single-key set (card_activity)
	vals[set.TimeIndex()] = schemas.TimestampValue(at)
	return schemas.Event{Key: key, Time: at.UnixMicro(), Values: vals}
}

// freshness publishes at *rate for *freshnessFor and returns the probes'
// publish-to-visible latencies.
func freshness(ctx context.Context, st *localstack.Stack, tbl *bigtable.Table, set *schemas.FeatureSet, topic, countQ string, pid int) ([]time.Duration, error) {
	fmt.Printf("freshness: %d events/s for %s ...\n", *rate, *freshnessFor)
	type probe struct {
		key string
		at  time.Time
	}
	var (
		mu      sync.Mutex
		pending = map[string]time.Time{}
		lat     []time.Duration
		stop    = make(chan struct{})
		pollErr error
		wg      sync.WaitGroup
	)
	wg.Add(1)
	go func() { // poller
		defer wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for done := false; !done; {
			select {
			case <-stop:
				done = true // one last poll, then wait for stragglers below
			case <-t.C:
			}
			mu.Lock()
			keys := make(bigtable.RowList, 0, len(pending))
			for k := range pending {
				keys = append(keys, schemas.RowKey(set.Name, k))
			}
			mu.Unlock()
			if len(keys) == 0 {
				continue
			}
			err := tbl.ReadRows(ctx, keys, func(r bigtable.Row) bool {
				now := time.Now()
				_, entity, _ := schemas.SplitRowKey(r.Key())
				mu.Lock()
				if at, ok := pending[entity]; ok && len(r[schemas.FamilyStream]) > 0 {
					lat = append(lat, now.Sub(at))
					delete(pending, entity)
				}
				mu.Unlock()
				return true
			}, bigtable.RowFilter(bigtable.ChainFilters(bigtable.FamilyFilter(schemas.FamilyStream), bigtable.ColumnFilter(countQ))))
			if err != nil {
				pollErr = err
				return
			}
		}
	}()

	// Publish: every 10 ms, rate/100 events; one in ten is a probe.
	perTick := max(*rate/100, 1)
	events := sample.Events(set, 42, *rate*int(*freshnessFor/time.Second)+perTick, time.Now(), time.Now().Add(*freshnessFor))
	tick := time.NewTicker(10 * time.Millisecond)
	end := time.Now().Add(*freshnessFor)
	i, n := 0, 0
	for now := range tick.C {
		if now.After(end) {
			break
		}
		for range perTick {
			e := events[i%len(events)]
			i++
			key := e.Key
			if n%10 == 0 {
				key = "probe_" + strconv.Itoa(n)
			}
			e = withKeyTime(set, e, key, time.Now())
			at := time.Now()
			if n%10 == 0 {
				mu.Lock()
				pending[key] = at
				mu.Unlock()
			}
			st.PubSub.Publish(topic, set.EncodeJSON(e), nil)
			n++
		}
	}
	tick.Stop()
	// Stragglers: give the last probes up to 10 s.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		left := len(pending)
		mu.Unlock()
		if left == 0 {
			break
		}
	}
	close(stop)
	wg.Wait()
	if pollErr != nil {
		return nil, pollErr
	}
	mu.Lock()
	defer mu.Unlock()
	if len(pending) > 0 {
		fmt.Printf("  %d probes never became visible\n", len(pending))
	}
	fmt.Printf("  published %d events (%d probes), pipeline RSS %s\n", n, len(lat)+len(pending), mb(rss(pid)))
	return lat, nil
}

func withKeyTime(set *schemas.FeatureSet, e schemas.Event, key string, at time.Time) schemas.Event {
	vals := append([]schemas.Value(nil), e.Values...)
	vals[set.KeyIndexes()[0]] = schemas.StringValue(key) // a single-key set (card_activity)
	vals[set.TimeIndex()] = schemas.TimestampValue(at)
	return schemas.Event{Key: key, Time: at.UnixMicro(), Values: vals}
}

// throughput keeps the backlog near *backlog for *throughputFor and returns
// the acknowledged events per second, per-10s rates and RSS samples.
func throughput(st *localstack.Stack, set *schemas.FeatureSet, topic string, acks *ackCounter, pid int) (float64, string, string) {
	fmt.Printf("throughput: %s with a backlog of %d ...\n", *throughputFor, *backlog)
	// Pre-encode a pool of events; event times are refreshed per chunk so
	// that they stay near now (and within the allowed lateness).
	const pool = 200000
	base := sample.Events(set, 7, pool, time.Now(), time.Now().Add(time.Minute))
	var published int64
	startAcks := acks.n.Load()
	start := time.Now()
	end := start.Add(*throughputFor)
	var rates, rssSeries []string
	lastAcks, lastT := startAcks, start
	nextReport := start.Add(10 * time.Second)
	i := 0
	for time.Now().Before(end) {
		inFlight := published - (acks.n.Load() - startAcks)
		if inFlight < int64(*backlog) {
			now := time.Now()
			for range 1000 {
				e := base[i%pool]
				i++
				e = withKeyTime(set, e, e.Key, now)
				st.PubSub.Publish(topic, set.EncodeJSON(e), nil)
			}
			published += 1000
		} else {
			time.Sleep(5 * time.Millisecond)
		}
		if now := time.Now(); now.After(nextReport) {
			a := acks.n.Load()
			rates = append(rates, fmt.Sprintf("%.0f", float64(a-lastAcks)/now.Sub(lastT).Seconds()))
			rssSeries = append(rssSeries, mb(rss(pid)))
			lastAcks, lastT = a, now
			nextReport = nextReport.Add(10 * time.Second)
		}
	}
	done := acks.n.Load() - startAcks
	fmt.Printf("  published %d, acknowledged %d, pipeline RSS %s\n", published, done, mb(rss(pid)))
	return float64(done) / time.Since(start).Seconds(), strings.Join(rates, " "), strings.Join(rssSeries, " ")
}

// finalCounters returns the counters the pipeline logged when it finished.
func finalCounters(log string) string {
	b, err := os.ReadFile(log)
	if err != nil {
		return err.Error()
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "streaming pipeline finished") {
			if i := strings.Index(line, `"counters":`); i >= 0 {
				return strings.TrimSuffix(line[i+len(`"counters":`):], "}")
			}
		}
	}
	return "(not logged)"
}

// rss is a process's resident set size in bytes (Linux).
func rss(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func mb(b int64) string { return fmt.Sprintf("%.0f MB", float64(b)/(1<<20)) }

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)].Round(time.Millisecond)
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func exitStatus(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}
