// Command trainingbench measures the training pipeline against a bare Beam
// baseline, in one process and one run, on Beam's prism runner.
//
// It generates --n events (default 1M, package schemas/sample; 50k
// entities) of a feature set with 10 features (count 1h and 24h, sum 1h and
// 24h, mean, min, max and stddev 24h, approx_count_distinct and last 7d)
// over 14 days, and a spine of --spine rows (default 100k) over the same
// entities at random instants of the second week, writes them to a
// temporary JSON lines file and a CSV file, and then runs:
//
//	(a) training: the training pipeline (package trainpipe) from those
//	    files to a Parquet file: read both, key, group by entity, sort and
//	    sweep, write;
//	(b) bare Beam: a pipeline over the same files that reads and decodes
//	    them with the same decoders, keys both by entity and joins them
//	    with a CoGroupByKey, counting the pairs' sizes, computing and
//	    writing nothing;
//	(c) hot: (a) again over inputs where one entity holds --hot (10%) of
//	    the events and of the spine rows.
//
// With --bigquery it also runs
//
//	(d) BigQuery output: (a) again, writing to a table of the in-process
//	    BigQuery fake (bqfake) through the Storage Write API (4 streams,
//	    one commit) instead of the Parquet file; the fake, which decodes
//	    and keeps every row in memory, is part of what is measured.
//
// The machine may be shared, so it runs --rounds rounds of (a), (b) and
// (c), interleaved, and keeps each phase's fastest. It prints spine rows/s
// of each, the ratio (a)/(b) (target ≥ 0.5), the CPU time of each phase and
// its peak RSS (VmHWM, reset between phases).
//
//	go run ./scripts/trainingbench                 # 1M events, 100k spine rows
//	go run ./scripts/trainingbench --n 200000 --spine 20000
//	go run ./scripts/trainingbench --bigquery       # and (d)
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/textio"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/tandem-fp/tandem/pipelines/batch/batchpipe"
	"github.com/tandem-fp/tandem/pipelines/training/trainpipe"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/sample"
	"github.com/tandem-fp/tandem/scripts/internal/procstat"
	"github.com/tandem-fp/tandem/transforms"
	"github.com/tandem-fp/tandem/transforms/bigqueryread/bqfake"
)

func init() {
	register.Function1x2[string, string, int64](spineKey)
	register.Function1x2[schemas.Event, string, int64](eventKey)
	register.DoFn4x0[context.Context, string, func(*int64) bool, func(*int64) bool](&bareJoinFn{})
	register.Iter1[int64]()
}

const benchDef = `
name: bench
entity: {name: card, key: card_id}
event_time: ts
fields:
  card_id: string
  merchant: string
  amount: float64
  approved: bool
  ts: timestamp
features:
  - {name: txn_count_1h, op: count, window: 1h}
  - {name: txn_count_24h, op: count, window: 24h}
  - {name: amount_sum_1h, op: sum, field: amount, window: 1h}
  - {name: amount_sum_24h, op: sum, field: amount, window: 24h}
  - {name: amount_mean_24h, op: mean, field: amount, window: 24h}
  - {name: amount_min_24h, op: min, field: amount, window: 24h}
  - {name: amount_max_24h, op: max, field: amount, window: 24h}
  - {name: amount_stddev_24h, op: stddev, field: amount, window: 24h}
  - {name: merchants_7d, op: approx_count_distinct, field: merchant, window: 7d}
  - {name: last_merchant, op: last, field: merchant, window: 7d, tile: 1h}
`

// withBigQuery runs phase (d).
var withBigQuery bool

func main() {
	n := flag.Int("n", 1_000_000, "events")
	spineRows := flag.Int("spine", 100_000, "spine rows")
	hot := flag.Float64("hot", 0.10, "share of the events and spine rows of the hot entity in phase (c)")
	rounds := flag.Int("rounds", 1, "rounds of (a), (b), (c); the fastest of each is kept")
	flag.BoolVar(&withBigQuery, "bigquery", false, "also run (d): (a) with the BigQuery output, to the in-process fake")
	flag.Parse()
	beam.Init()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := run(context.Background(), *n, *spineRows, *hot, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "trainingbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n, spineRows int, hot float64, rounds int) error {
	set, err := schemas.Parse("bench.yaml", []byte(benchDef))
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "trainingbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// Fixed dates: nothing here compares event times with the wall clock.
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	t1 := t0.Add(14 * 24 * time.Hour)
	plain, err := writeInputs(set, filepath.Join(dir, "plain"), n, spineRows, 0, t0, t1)
	if err != nil {
		return err
	}
	skewed, err := writeInputs(set, filepath.Join(dir, "hot"), n, spineRows, hot, t0, t1)
	if err != nil {
		return err
	}
	fmt.Printf("inputs: %d events of %d entities over %s, %d spine rows; hot entity %s: %.0f%% of both in (c)\n",
		n, sample.Entities(n), t1.Sub(t0), spineRows, plain.hotKey, hot*100)
	var a, b, c, d *phase
	var fake *bqfake.Server
	if withBigQuery {
		if fake, err = bqfake.NewServer(); err != nil {
			return err
		}
		defer fake.Close()
	}
	for r := range rounds {
		pa, err := measure(func() (int64, error) { return runTraining(ctx, set, plain, filepath.Join(dir, "a.parquet")) })
		if err != nil {
			return fmt.Errorf("(a) training: %w", err)
		}
		pb, err := measure(func() (int64, error) { return runBare(ctx, set, plain) })
		if err != nil {
			return fmt.Errorf("(b) bare Beam: %w", err)
		}
		pc, err := measure(func() (int64, error) { return runTraining(ctx, set, skewed, filepath.Join(dir, "c.parquet")) })
		if err != nil {
			return fmt.Errorf("(c) hot: %w", err)
		}
		fmt.Printf("round %d: (a) %s  (b) %s  (c) %s\n", r+1, pa, pb, pc)
		a, b, c = fastest(a, pa), fastest(b, pb), fastest(c, pc)
		if fake != nil {
			pd, err := measure(func() (int64, error) { return runTrainingBigQuery(ctx, set, plain, fake, r, dir) })
			if err != nil {
				return fmt.Errorf("(d) BigQuery output: %w", err)
			}
			fmt.Printf("round %d: (d) %s\n", r+1, pd)
			d = fastest(d, pd)
		}
	}
	fmt.Printf("(a) training:  %8.0f spine rows/s  %s wall, %s CPU; peak RSS %s\n", a.rate(), a.wall.Round(time.Millisecond), a.cpu.Round(time.Millisecond), mb(a.rss))
	fmt.Printf("(b) bare Beam: %8.0f spine rows/s  %s wall, %s CPU; peak RSS %s\n", b.rate(), b.wall.Round(time.Millisecond), b.cpu.Round(time.Millisecond), mb(b.rss))
	fmt.Printf("(c) hot:       %8.0f spine rows/s  %s wall, %s CPU; peak RSS %s\n", c.rate(), c.wall.Round(time.Millisecond), c.cpu.Round(time.Millisecond), mb(c.rss))
	if d != nil {
		fmt.Printf("(d) BigQuery:  %8.0f spine rows/s  %s wall, %s CPU; peak RSS %s; (d)/(a) = %.2f\n", d.rate(), d.wall.Round(time.Millisecond), d.cpu.Round(time.Millisecond), mb(d.rss), d.rate()/a.rate())
	}
	ratio := a.rate() / b.rate()
	fmt.Printf("(a)/(b) = %.2f (target ≥ 0.5: %s); (c)/(a) = %.2f\n", ratio, verdict(ratio >= 0.5), c.rate()/a.rate())
	return nil
}

// inputs are the files of one phase.
type inputs struct {
	events, spine string
	rows          int64
	hotKey        string
}

// writeInputs writes n events over [t0, t1) and spineRows spine rows in the
// second half, with the share hot of both moved to one entity.
func writeInputs(set *schemas.FeatureSet, prefix string, n, spineRows int, hot float64, t0, t1 time.Time) (inputs, error) {
	in := inputs{events: prefix + "-events.jsonl", spine: prefix + "-spine.csv", rows: int64(spineRows)}
	events := sample.Events(set, 1, n, t0, t1)
	keys := map[string]bool{}
	var pool []string
	for _, e := range events {
		if !keys[e.Key] {
			keys[e.Key] = true
			pool = append(pool, e.Key)
		}
	}
	in.hotKey = pool[0]
	rng := rand.New(rand.NewPCG(7, 8))
	ki := set.KeyIndexes()[0] // a single-key set (card_activity)
	for i := range events {
		if rng.Float64() < hot {
			events[i].Key = in.hotKey
			events[i].Values[ki] = schemas.StringValue(in.hotKey)
		}
	}
	f, err := os.Create(in.events)
	if err != nil {
		return in, err
	}
	if err := sample.WriteJSONL(f, set, events); err != nil {
		f.Close()
		return in, err
	}
	if err := f.Close(); err != nil {
		return in, err
	}
	events = nil
	g, err := os.Create(in.spine)
	if err != nil {
		return in, err
	}
	w := bufio.NewWriter(g)
	w.WriteString("card_id,ts,label\n")
	mid, span := t0.Add(t1.Sub(t0)/2).UnixMicro(), t1.Sub(t0).Microseconds()/2
	for range spineRows {
		key := pool[rng.IntN(len(pool))]
		if rng.Float64() < hot {
			key = in.hotKey
		}
		at := time.UnixMicro(mid + rng.Int64N(span)).UTC().Format(time.RFC3339Nano)
		fmt.Fprintf(w, "%s,%s,%d\n", key, at, rng.IntN(2))
	}
	if err := w.Flush(); err != nil {
		g.Close()
		return in, err
	}
	runtime.GC()
	debug.FreeOSMemory()
	return in, g.Close()
}

// runTraining runs the training pipeline and returns the rows written.
func runTraining(ctx context.Context, set *schemas.FeatureSet, in inputs, out string) (int64, error) {
	cfg := &trainpipe.Config{
		Requests:   []trainpipe.Request{{Set: set, Source: schemas.BatchSource{Files: in.events}}},
		SpineGlob:  in.spine,
		Output:     trainpipe.Output{Path: out},
		DeadLetter: strings.TrimSuffix(out, ".parquet") + "-dead",
	}
	res, err := trainpipe.Run(ctx, cfg)
	if err != nil {
		return 0, err
	}
	if res.Rows != in.rows || res.DeadRows != 0 {
		return 0, fmt.Errorf("%d rows written and %d dead, want %d and 0", res.Rows, res.DeadRows, in.rows)
	}
	return res.Rows, nil
}

// runTrainingBigQuery runs phase (d): (a) to table training_<round> of fake.
func runTrainingBigQuery(ctx context.Context, set *schemas.FeatureSet, in inputs, fake *bqfake.Server, round int, dir string) (int64, error) {
	cfg := &trainpipe.Config{
		Requests:   []trainpipe.Request{{Set: set, Source: schemas.BatchSource{Files: in.events}}},
		SpineGlob:  in.spine,
		Output:     trainpipe.Output{Table: fmt.Sprintf("bench.ml.training_%d", round), Shards: 4},
		DeadLetter: filepath.Join(dir, "d-dead"),
		BigQuery:   batchpipe.BigQueryConfig{Endpoint: fake.Addr, RESTEndpoint: fake.URL},
	}
	res, err := trainpipe.Run(ctx, cfg)
	if err != nil {
		return 0, err
	}
	if got := len(fake.Rows(cfg.Output.Table)); res.Rows != in.rows || int64(got) != in.rows || res.DeadRows != 0 {
		return 0, fmt.Errorf("%d rows committed (%d in the table) and %d dead, want %d and 0", res.Rows, got, res.DeadRows, in.rows)
	}
	return res.Rows, nil
}

// runBare runs phase (b): read and decode both inputs, join by entity.
func runBare(ctx context.Context, set *schemas.FeatureSet, in inputs) (int64, error) {
	p, s := beam.NewPipelineWithRoot()
	events, _, err := batchpipe.ReadFiles(s, set, in.events)
	if err != nil {
		return 0, err
	}
	spine := beam.ParDo(s, spineKey, textio.Read(s, in.spine))
	joined := beam.CoGroupByKey(s, beam.ParDo(s, eventKey, events), spine)
	beam.ParDo0(s, &bareJoinFn{}, joined)
	pr, err := beamx.RunWithMetrics(ctx, p)
	if err != nil {
		return 0, err
	}
	c := batchpipe.Counters(pr)
	if c["bare_spine_rows"] != in.rows {
		return 0, fmt.Errorf("%d spine rows joined, want %d", c["bare_spine_rows"], in.rows)
	}
	return c["bare_spine_rows"], nil
}

// spineKey parses a spine line's key and instant; the header gets key "".
func spineKey(line string) (string, int64) {
	key, rest, _ := strings.Cut(line, ",")
	ts, _, _ := strings.Cut(rest, ",")
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return "", 0
	}
	return key, t.UnixMicro()
}

func eventKey(e schemas.Event) (string, int64) { return e.Key, e.Time }

// bareJoinFn counts each entity's events and spine rows.
type bareJoinFn struct{}

func (fn *bareJoinFn) ProcessElement(ctx context.Context, key string, events, spine func(*int64) bool) {
	var t, ne, ns int64
	for events(&t) {
		ne++
	}
	for spine(&t) {
		ns++
	}
	if key == "" {
		return
	}
	beam.NewCounter(transforms.MetricsNamespace, "bare_spine_rows").Inc(ctx, ns)
	beam.NewCounter(transforms.MetricsNamespace, "bare_events").Inc(ctx, ne)
}

// phase is one measured run.
type phase struct {
	rows      int64
	wall, cpu time.Duration
	rss       int64
}

func (p *phase) rate() float64 { return float64(p.rows) / p.wall.Seconds() }

func (p *phase) String() string {
	return fmt.Sprintf("%.0f rows/s (%s, RSS %s)", p.rate(), p.wall.Round(time.Millisecond), mb(p.rss))
}

func fastest(old, cur *phase) *phase {
	if old == nil || cur.wall < old.wall {
		return cur
	}
	return old
}

// measure runs f and returns its wall and CPU time and peak RSS.
func measure(f func() (int64, error)) (*phase, error) {
	procstat.ResetPeak()
	cpu0 := procstat.CPUTime()
	t := time.Now()
	rows, err := f()
	return &phase{rows: rows, wall: time.Since(t), cpu: procstat.CPUTime() - cpu0, rss: procstat.PeakRSS()}, err
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}

func mb(b int64) string { return fmt.Sprintf("%d MB", b>>20) }
