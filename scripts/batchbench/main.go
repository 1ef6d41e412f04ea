// Command batchbench measures the batch pipeline against two bare
// baselines, in one process and one run, on Beam's prism runner and the
// in-process Bigtable emulator (bttest).
//
// It generates --n events (default 1M, package schemas/sample; 50k
// entities) of a feature set with 5 features (count 1h, sum and max 24h,
// approx_count_distinct and last 7d) over the history one batch run reads,
// writes them to a temporary JSON lines file, and then runs:
//
//	(a) batch: the batch pipeline (package batchpipe) from that file into
//	    the emulator: read, decode, tile, bulk write, watermark;
//	(b) bare Beam: a pipeline over the same file that reads it with textio,
//	    parses each line with the same decoder and sums one field per
//	    entity (stats.SumPerKey), writing nothing;
//	(c) bare write: a loop of bigtable ApplyBulk calls, one at a time, 1000
//	    rows a request, writing as many cells and rows as (a) wrote, with
//	    values of the same mean size, to the same emulator. Its requests are
//	    built before the clock starts.
//
// The machine may be shared, so it runs --rounds rounds of (a), (b), (c),
// interleaved, and keeps each phase's fastest. It prints events/s of (a)
// and (b) and their ratio (target ≥ 0.5); the write rate of (a) while it
// wrote, as the emulator sees it (cells from the start of the first to the
// end of the last MutateRows call), against the rate of (c) (target ≥ 0.7);
// the CPU time of each phase (the process's, emulator included) and its
// peak RSS (VmHWM, reset between phases). --cpuprofile and --memprofile
// profile phase (a) of the first round.
//
//	go run ./scripts/batchbench            # 1M events, 3 rounds: about 4 minutes on 2 cores
//	go run ./scripts/batchbench --n 200000 --rounds 1
//	go run ./scripts/batchbench --def schemas/card_activity.yaml   # another feature set
//
// With several definitions (--def a.yaml,b.yaml) it runs the whole
// benchmark of each in turn, one round at a time, --rounds times, and
// ends with the fastest batch run of each and its events/s against the
// first's: two feature sets compared in one run.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/bigtable"
	btpb "cloud.google.com/go/bigtable/apiv2/bigtablepb"
	"cloud.google.com/go/bigtable/bttest"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/textio"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/stats"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"
	"google.golang.org/grpc"

	"github.com/tandem-fp/tandem/pipelines/batch/batchpipe"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/schemas/sample"
	"github.com/tandem-fp/tandem/scripts/internal/procstat"
	"github.com/tandem-fp/tandem/transforms"
	"github.com/tandem-fp/tandem/transforms/bigtablewrite"
)

const benchYAML = `
name: bench
entity: {name: card, key: card_id}
event_time: ts
fields: {card_id: string, merchant: string, amount: float64, approved: bool, ts: timestamp}
features:
  - {name: txn_count_1h, op: count, window: 1h}
  - {name: amount_sum_24h, op: sum, field: amount, window: 24h}
  - {name: amount_max_24h, op: max, field: amount, window: 24h}
  - {name: merchants_7d, op: approx_count_distinct, field: merchant, window: 7d}
  - {name: last_merchant, op: last, field: merchant, window: 7d, tile: 1h}
`

func init() {
	register.DoFn3x0[context.Context, string, func(string, float64)](&bareParseFn{})
	register.Emitter2[string, float64]()
	register.DoFn3x0[context.Context, string, float64](&bareCountFn{})
}

func main() {
	n := flag.Int("n", 1_000_000, "events to generate")
	keep := flag.Bool("keep", false, "keep the generated events file")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of phase (a) to this file")
	memProfile := flag.String("memprofile", "", "write an allocation profile of phase (a) to this file")
	rounds := flag.Int("rounds", 3, "runs of each phase, interleaved; the fastest of each counts")
	logLevel := flag.String("log_level", "warn", "level of the runner's logs: debug, info, warn or error")
	def := flag.String("def", "", "a feature-set definition to run instead of the built-in one (its fields must be card_id, merchant, amount, approved, ts, as schemas/card_activity.yaml's); several, comma-separated, are run in turn in each round and compared")
	flag.Parse()
	beam.Init()
	// Prism and the SDK log every job step at Info; by default keep the
	// output to the benchmark's own lines.
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "batchbench: --log_level:", err)
		os.Exit(2)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	defs := strings.Split(*def, ",")
	var err error
	if len(defs) == 1 {
		_, err = run(context.Background(), *def, *n, *rounds, *keep, *cpuProfile, *memProfile)
	} else {
		err = compare(context.Background(), defs, *n, *rounds, *keep)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "batchbench:", err)
		os.Exit(1)
	}
}

// compare runs each definition of defs in turn, one round each, rounds
// times, and prints the fastest batch run of each beside the first's.
func compare(ctx context.Context, defs []string, n, rounds int, keep bool) error {
	bests := make([]*phase, len(defs))
	for round := 1; round <= rounds; round++ {
		for i, def := range defs {
			fmt.Printf("== round %d of %d: %s\n", round, rounds, def)
			a, err := run(ctx, def, n, 1, keep, "", "")
			if err != nil {
				return fmt.Errorf("%s: %w", def, err)
			}
			bests[i] = best(bests[i], a)
		}
	}
	fmt.Printf("\nbatch pipeline, %d events, best of %d rounds of each definition, interleaved:\n", n, rounds)
	for i, def := range defs {
		a := bests[i]
		fmt.Printf("%-40s %8.0f events/s  %s wall, %s CPU, %d cells (%.2f per event); %.2f× the first's events/s\n",
			def, a.rate(), a.wall.Round(time.Millisecond), a.cpu.Round(time.Millisecond), a.writes.cells, float64(a.writes.cells)/float64(a.events), a.rate()/bests[0].rate())
	}
	return nil
}

// run runs the benchmark of one definition (def; "" for the built-in one)
// and returns the fastest batch run.
func run(ctx context.Context, def string, n, rounds int, keep bool, cpuProfile, memProfile string) (*phase, error) {
	set, err := schemas.Parse("bench.yaml", []byte(benchYAML))
	if def != "" {
		set, err = schemas.Load(def)
	}
	if err != nil {
		return nil, err
	}
	// As of now: the emulator, like Bigtable, garbage-collects cells older
	// than the retention (here 8d) by their timestamps, the tile starts.
	asOf := batchpipe.AlignAsOf(set, time.Now())
	from, to := batchpipe.ReadRange(set, asOf)
	fmt.Printf("batchbench: %d events, feature set %q (%d features), %d CPUs, GOMAXPROCS %d\n",
		n, set.Name, len(set.Features), runtime.NumCPU(), runtime.GOMAXPROCS(0))

	// Events file.
	dir, err := os.MkdirTemp("", "batchbench")
	if err != nil {
		return nil, err
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	path := filepath.Join(dir, "events.jsonl")
	t := time.Now()
	size, err := writeEvents(set, path, n, from, to)
	if err != nil {
		return nil, err
	}
	fmt.Printf("generated %d events of %d entities over [%s, %s) into %s (%.0f MB) in %s\n",
		n, sample.Entities(n), from.Format(time.RFC3339), to.Format(time.RFC3339), path, float64(size)/1e6, time.Since(t).Round(time.Millisecond))

	// Emulator, watched.
	watch := &mutateWatch{}
	srv, err := bttest.NewServer("127.0.0.1:0", grpc.StreamInterceptor(watch.intercept))
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	bt := bigtablestore.Config{Project: bigtablestore.DefaultProject, Instance: bigtablestore.DefaultInstance, Table: bigtablestore.DefaultTable, Endpoint: srv.Addr}
	if err := setupTable(ctx, bt, set); err != nil {
		return nil, err
	}

	cfgA := batchpipe.Config{
		Set: set, Source: schemas.BatchSource{Files: path}, AsOf: asOf, Bigtable: bt,
		DeadLetter: filepath.Join(dir, "dead_letter"),
	}
	var a, b, c *phase
	for round := 1; round <= rounds; round++ {
		if rounds > 1 {
			fmt.Printf("-- round %d of %d\n", round, rounds)
		}
		// (a) batch pipeline.
		fmt.Println("(a) batch pipeline: read → decode → tile → bulk write → watermark ...")
		var pa *phase
		if round == 1 {
			pa, err = runBatch(ctx, cfgA, watch, cpuProfile, memProfile)
		} else {
			pa, err = runBatch(ctx, cfgA, watch, "", "")
		}
		if err != nil {
			return nil, fmt.Errorf("(a) batch pipeline: %w", err)
		}
		fmt.Printf("(a) batch: %d events in %s (CPU %s) = %.0f events/s; %d tiles in %d rows; writes %s from first to last MutateRows = %.0f cells/s; peak RSS %s\n",
			pa.events, pa.wall.Round(time.Millisecond), pa.cpu.Round(time.Millisecond), pa.rate(), pa.writes.cells, pa.writes.rows,
			pa.writes.span().Round(time.Millisecond), pa.writeRate(), mb(pa.rss))
		if pa.events != int64(n) {
			return nil, fmt.Errorf("(a) batch: decoded %d of %d events", pa.events, n)
		}
		a = best(a, pa)
		// Free the emulator's copy of (a)'s tiles before the next phases.
		if err := dropRows(ctx, bt); err != nil {
			return nil, err
		}

		// (b) bare Beam pipeline.
		fmt.Println("(b) bare Beam pipeline: read → parse → SumPerKey ...")
		pb, err := runBare(ctx, set, path, n)
		if err != nil {
			return nil, fmt.Errorf("(b) bare Beam: %w", err)
		}
		fmt.Printf("(b) bare Beam: %d events in %s (CPU %s) = %.0f events/s (%d keys summed); peak RSS %s\n",
			pb.events, pb.wall.Round(time.Millisecond), pb.cpu.Round(time.Millisecond), pb.rate(), pb.keys, mb(pb.rss))
		b = best(b, pb)

		// (c) bare bulk-write loop, as many cells as (a) wrote.
		w := a.writes
		fmt.Printf("(c) bare write loop: %d cells in %d rows, %d-byte values, ApplyBulk of %d rows ...\n",
			w.cells, w.rows, w.valueBytes/max(w.cells, 1), bigtablewrite.DefaultMaxRows)
		pc, err := bareWrite(ctx, bt, watch, w, from)
		if err != nil {
			return nil, fmt.Errorf("(c) bare write: %w", err)
		}
		fmt.Printf("(c) bare write: %d cells in %s (CPU %s) = %.0f cells/s; peak RSS %s\n",
			pc.writes.cells, pc.wall.Round(time.Millisecond), pc.cpu.Round(time.Millisecond), pc.writeRate(), mb(pc.rss))
		c = best(c, pc)
		if err := dropRows(ctx, bt); err != nil {
			return nil, err
		}
	}

	fmt.Println()
	if rounds > 1 {
		fmt.Printf("best of %d rounds (the machine is shared; each phase's fastest run):\n", rounds)
	}
	fmt.Printf("(a) batch:      %8.0f events/s  %s wall, %s CPU; writes %.0f cells/s; peak RSS %s\n", a.rate(), a.wall.Round(time.Millisecond), a.cpu.Round(time.Millisecond), a.writeRate(), mb(a.rss))
	fmt.Printf("(b) bare Beam:  %8.0f events/s  %s wall, %s CPU; peak RSS %s\n", b.rate(), b.wall.Round(time.Millisecond), b.cpu.Round(time.Millisecond), mb(b.rss))
	fmt.Printf("(c) bare write: %8.0f cells/s   %s wall, %s CPU; peak RSS %s\n", c.writeRate(), c.wall.Round(time.Millisecond), c.cpu.Round(time.Millisecond), mb(c.rss))
	fmt.Printf("batch / bare Beam throughput: %.0f / %.0f events/s = %.2f (target ≥ 0.50) %s\n", a.rate(), b.rate(), a.rate()/b.rate(), verdict(a.rate()/b.rate() >= 0.5))
	fmt.Printf("batch / bare write rate:      %.0f / %.0f cells/s = %.2f (target ≥ 0.70) %s\n", a.writeRate(), c.writeRate(), a.writeRate()/c.writeRate(), verdict(a.writeRate()/c.writeRate() >= 0.7))
	fmt.Printf("per CPU-second: batch %.0f events, bare Beam %.0f events (%.2f); batch %.0f cells, bare write %.0f cells\n",
		float64(a.events)/a.cpu.Seconds(), float64(b.events)/b.cpu.Seconds(), (float64(a.events)/a.cpu.Seconds())/(float64(b.events)/b.cpu.Seconds()),
		float64(a.writes.cells)/a.cpu.Seconds(), float64(c.writes.cells)/c.cpu.Seconds())
	return a, nil
}

// phase is what one run of a phase measured.
type phase struct {
	wall, cpu time.Duration
	rss       int64 // peak RSS
	events    int64 // events read (a, b)
	keys      int64 // keys summed (b)
	writes    mutateStats
}

func (p *phase) rate() float64 { return float64(p.events) / p.wall.Seconds() }

// writeRate is the cells written per second while the phase wrote.
func (p *phase) writeRate() float64 { return float64(p.writes.cells) / p.writes.span().Seconds() }

// best returns the faster of two runs of a phase (nil is slowest).
func best(old, cur *phase) *phase {
	if old == nil || cur.wall < old.wall {
		return cur
	}
	return old
}

// measure runs f and returns its wall and CPU time and peak RSS.
func measure(f func() error) (*phase, error) {
	procstat.ResetPeak()
	cpu0 := procstat.CPUTime()
	t := time.Now()
	err := f()
	return &phase{wall: time.Since(t), cpu: procstat.CPUTime() - cpu0, rss: procstat.PeakRSS()}, err
}

// runBatch runs phase (a).
func runBatch(ctx context.Context, cfg batchpipe.Config, watch *mutateWatch, cpuProfile, memProfile string) (*phase, error) {
	watch.reset()
	stopProfile, err := startProfile(cpuProfile)
	if err != nil {
		return nil, err
	}
	var res batchpipe.Result
	p, err := measure(func() error {
		var err error
		res, err = batchpipe.Run(ctx, cfg)
		return err
	})
	stopProfile()
	if err == nil && memProfile != "" {
		err = writeHeapProfile(memProfile)
	}
	if err != nil {
		return nil, err
	}
	p.events, p.writes = res.Events, watch.snapshot()
	if p.writes.cells != res.Cells || !res.Committed {
		return nil, fmt.Errorf("the emulator saw %d of the %d cells written; watermark committed: %v", p.writes.cells, res.Cells, res.Committed)
	}
	return p, nil
}

// startProfile starts a CPU profile into path, if not empty, and returns
// the function that stops it.
func startProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// writeHeapProfile writes the allocations since the start to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}

// writeEvents writes n sample events over [from, to) to path as JSON lines
// and returns the file size. The events are freed before it returns.
func writeEvents(set *schemas.FeatureSet, path string, n int, from, to time.Time) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	events := sample.Events(set, 1, n, from, to)
	if err := sample.WriteJSONL(f, set, events); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	events = nil
	runtime.GC()
	debug.FreeOSMemory()
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func setupTable(ctx context.Context, bt bigtablestore.Config, set *schemas.FeatureSet) error {
	ac, err := bt.NewAdminClient(ctx)
	if err != nil {
		return err
	}
	defer ac.Close()
	_, err = bigtablestore.EnsureTable(ctx, ac, bt.Table, []*schemas.FeatureSet{set})
	return err
}

func dropRows(ctx context.Context, bt bigtablestore.Config) error {
	ac, err := bt.NewAdminClient(ctx)
	if err != nil {
		return err
	}
	defer ac.Close()
	if err := ac.DropAllRows(ctx, bt.Table); err != nil {
		return fmt.Errorf("drop rows: %w", err)
	}
	runtime.GC()
	debug.FreeOSMemory()
	return nil
}

// runBare runs phase (b), the bare Beam pipeline.
func runBare(ctx context.Context, set *schemas.FeatureSet, path string, n int) (*phase, error) {
	field, ok := set.FieldIndex("amount")
	if !ok {
		return nil, fmt.Errorf("no amount field")
	}
	p, s := beam.NewPipelineWithRoot()
	lines := textio.Read(s, path)
	kv := beam.ParDo(s, &bareParseFn{Set: set, Field: field}, lines)
	sums := stats.SumPerKey(s, kv)
	beam.ParDo0(s, &bareCountFn{}, sums)
	var pr beam.PipelineResult
	ph, err := measure(func() error {
		var err error
		pr, err = beamx.RunWithMetrics(ctx, p)
		return err
	})
	if err != nil {
		return nil, err
	}
	ph.events = int64(n)
	for _, c := range pr.Metrics().AllMetrics().Counters() {
		switch c.Name() {
		case "bare_keys":
			ph.keys += c.Result()
		case "bare_bad":
			return nil, fmt.Errorf("%d lines did not parse", c.Result())
		}
	}
	return ph, nil
}

// bareParseFn parses a line with the pipeline's decoder and emits the
// entity key and one float field.
type bareParseFn struct {
	Set   *schemas.FeatureSet `json:"set"`
	Field int                 `json:"field"`
}

func (fn *bareParseFn) ProcessElement(ctx context.Context, line string, emit func(string, float64)) {
	e, err := fn.Set.DecodeJSON([]byte(line))
	if err != nil {
		beam.NewCounter(transforms.MetricsNamespace, "bare_bad").Inc(ctx, 1)
		return
	}
	emit(e.Key, e.Values[fn.Field].Float)
}

type bareCountFn struct{}

func (fn *bareCountFn) ProcessElement(ctx context.Context, _ string, _ float64) {
	beam.NewCounter(transforms.MetricsNamespace, "bare_keys").Inc(ctx, 1)
}

// bareWrite runs phase (c): it writes as many cells and rows as w saw,
// values of w's mean size, timestamps from from on, with ApplyBulk batches
// of DefaultMaxRows rows (or DefaultMaxBytes), one after the other. Only the
// writes are timed.
func bareWrite(ctx context.Context, bt bigtablestore.Config, watch *mutateWatch, w mutateStats, from time.Time) (*phase, error) {
	cl, err := bt.NewClient(ctx)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	tbl := cl.Open(bt.Table)

	rows, cells := int(max(w.rows, 1)), int(w.cells)
	value := make([]byte, w.valueBytes/max(w.cells, 1))
	for i := range value {
		value[i] = byte(rand.N(256))
	}
	quals := []string{"txn_count_1h@1m", "amount_sum_24h@15m", "amount_max_24h@15m", "merchants_7d@3h", "last_merchant@1h"}
	base := from.UnixMicro()

	// Build every batch first: the loop times the writes alone.
	type batch struct {
		keys []string
		muts []*bigtable.Mutation
	}
	var batches []batch
	var cur batch
	curBytes := 0
	for r := range rows {
		per := cells / rows
		if r < cells%rows {
			per++
		}
		m := bigtable.NewMutation()
		for c := range per {
			q := quals[c%len(quals)]
			m.Set(schemas.FamilyBatch, q, bigtable.Timestamp(base+int64(c/len(quals))*60_000_000), value)
			curBytes += len(q) + len(value) + 16
		}
		cur.keys = append(cur.keys, "bare#c_"+strconv.Itoa(1001+r))
		cur.muts = append(cur.muts, m)
		if len(cur.keys) >= bigtablewrite.DefaultMaxRows || curBytes >= bigtablewrite.DefaultMaxBytes {
			batches = append(batches, cur)
			cur, curBytes = batch{}, 0
		}
	}
	if len(cur.keys) > 0 {
		batches = append(batches, cur)
	}

	watch.reset()
	p, err := measure(func() error {
		for _, b := range batches {
			errs, err := tbl.ApplyBulk(ctx, b.keys, b.muts)
			if err != nil {
				return err
			}
			for i, e := range errs {
				if e != nil {
					return fmt.Errorf("row %s: %w", b.keys[i], e)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	p.writes = watch.snapshot()
	return p, nil
}

// mutateWatch counts what MutateRows calls carry and when they run, as the
// emulator sees them.
type mutateWatch struct {
	mu sync.Mutex
	mutateStats
}

type mutateStats struct {
	rows, cells, valueBytes int64
	first, last             time.Time
}

func (s mutateStats) span() time.Duration { return s.last.Sub(s.first) }

func (w *mutateWatch) reset() {
	w.mu.Lock()
	w.mutateStats = mutateStats{}
	w.mu.Unlock()
}

func (w *mutateWatch) snapshot() mutateStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mutateStats
}

func (w *mutateWatch) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !strings.HasSuffix(info.FullMethod, "/MutateRows") {
		return handler(srv, ss)
	}
	start := time.Now()
	rs := &recvStream{ServerStream: ss}
	err := handler(srv, rs)
	end := time.Now()
	w.mu.Lock()
	if w.first.IsZero() || start.Before(w.first) {
		w.first = start
	}
	if end.After(w.last) {
		w.last = end
	}
	w.rows += rs.rows
	w.cells += rs.cells
	w.valueBytes += rs.valueBytes
	w.mu.Unlock()
	return err
}

type recvStream struct {
	grpc.ServerStream
	rows, cells, valueBytes int64
}

func (s *recvStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if req, ok := m.(*btpb.MutateRowsRequest); ok && err == nil {
		for _, e := range req.GetEntries() {
			s.rows++
			for _, mu := range e.GetMutations() {
				if sc := mu.GetSetCell(); sc != nil {
					s.cells++
					s.valueBytes += int64(len(sc.GetValue()))
				}
			}
		}
	}
	return err
}

func mb(b int64) string { return fmt.Sprintf("%.0f MB", float64(b)/(1<<20)) }
