// Command servebench measures the serving API against a bare Bigtable
// client reading the same rows, in one process and one run.
//
// It seeds a Bigtable emulator (bttest in a child process of this binary by
// default, or in this process with --emulator inprocess, or the one at
// BIGTABLE_EMULATOR_HOST) with --entities entities of a 10-feature
// feature set (windows 10m to 7d: one batch and two stream events per
// entity, so 2–3 tiles per feature), starts the real server (package
// serving, behind net/http) on a loopback port, and then drives, each for
// its duration and open-loop (latency is measured from each request's
// scheduled start, so queueing counts):
//
//  1. bare single: Bigtable ReadRow of one random entity with the server's
//     filter, at --single_rate per second;
//  2. server single: GET /v1/features/bench/{entity}, all 10 features, at
//     the same rate;
//  3. bare batch: Bigtable ReadRows of --batch_size random entities;
//  4. server batch: POST /v1/features/bench with the same number of entities;
//  5. abuse (abuse.go; --abuse=false skips it, --only abuse runs it alone):
//     a second server with an API key and every limit at its default,
//     under thousands of idle connections, 64 concurrent 1 MB POSTs and a
//     GET flood, reporting peak RSS and the 503s and 429s.
//
// The server of runs 2 and 4 runs as serve runs it: serving.HTTPServer on
// LimitListener, every limit at its default. With --limits_ab (the
// default) a second server with every limit off runs 2 and 4 as well, in the
// same alternation, so that the limits' own cost is a ratio measured in one
// run rather than across two runs of a noisy machine.
//
// Bare and server runs alternate every --slice (1s), so that all see the
// same machine. The load generator's HTTP client is a minimal HTTP/1.1
// keep-alive client (--client raw, as wrk would be) so that the latency is
// the server's rather than net/http's client's; --client net/http uses
// net/http instead. The emulator runs in its own process by default, as
// Bigtable does: in this process its heap (millions of cells) makes every
// garbage collection of the server's and the load generator's a scan of
// a gigabyte, which puts the emulator's cost in the server's tail. The
// benchmark table has no GC policy: bttest scans every
// row once a second when one is set, which real Bigtable does not.
//
// It prints p50, p90, p99, max latency and throughput of each, and the ratio
// of the server's to the bare read's. Targets (2-core machine): single p99
// ≤ 2 ms and ≤ 1.3× bare; batch of 100 p99 ≤ 15 ms. All traffic stays on
// 127.0.0.1.
//
//	go run ./scripts/servebench                      # defaults: ~2–3 minutes
//	go run ./scripts/servebench --entities 20000 --single_duration 5s --batch_duration 5s
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cloud.google.com/go/bigtable"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/serving"
	"github.com/tandem-fp/tandem/serving/servingtest"
)

const benchYAML = `
name: bench
entity: {name: user, key: user_id}
event_time: ts
fields: {user_id: string, page: string, dwell_ms: int64, amount: float64, ts: timestamp}
features:
  - {name: views_10m, op: count, window: 10m}
  - {name: views_1h, op: count, window: 1h}
  - {name: dwell_sum_1h, op: sum, field: dwell_ms, window: 1h}
  - {name: dwell_max_1h, op: max, field: dwell_ms, window: 1h}
  - {name: amount_sum_24h, op: sum, field: amount, window: 24h}
  - {name: amount_mean_24h, op: mean, field: amount, window: 24h}
  - {name: amount_stddev_24h, op: stddev, field: amount, window: 24h}
  - {name: last_page_1d, op: last, field: page, window: 1d}
  - {name: pages_7d, op: approx_count_distinct, field: page, window: 7d}
  - {name: views_7d, op: count, window: 7d}
`

type flags struct {
	entities       int
	singleRate     int
	singleDuration time.Duration
	batchSize      int
	batchRate      int
	batchDuration  time.Duration
	warmup         time.Duration
	gcPercent      int
	slice          time.Duration
	client         string
	cpuProfile     string
	only           string
	emulator       string
	abuse          bool
	abuseFlags     abuseFlags
	limits         bool
	limitsAB       bool
}

func main() {
	var f flags
	flag.IntVar(&f.entities, "entities", 100_000, "entities to seed")
	flag.IntVar(&f.singleRate, "single_rate", 1000, "single-entity requests per second")
	flag.DurationVar(&f.singleDuration, "single_duration", 20*time.Second, "duration of each single-entity run")
	flag.IntVar(&f.batchSize, "batch_size", 100, "entities per batch request")
	flag.IntVar(&f.batchRate, "batch_rate", 20, "batch requests per second")
	flag.DurationVar(&f.batchDuration, "batch_duration", 30*time.Second, "duration of each batch run")
	flag.DurationVar(&f.warmup, "warmup", 2*time.Second, "unmeasured warm-up before each run")
	flag.IntVar(&f.gcPercent, "gogc", 400, "GOGC for this process: the emulator keeps millions of cells in its heap, which a real server does not")
	flag.StringVar(&f.client, "client", "raw", "HTTP client of the load generator: raw (a minimal HTTP/1.1 keep-alive client, as wrk uses, so that latency is the server's) or net/http")
	flag.DurationVar(&f.slice, "slice", time.Second, "bare and server runs alternate in slices of this length, so that both see the same machine")
	flag.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the measured runs to this file")
	flag.StringVar(&f.only, "only", "", "run only the runs whose names contain this (bare, server, ReadRow, POST, ...)")
	flag.StringVar(&f.emulator, "emulator", "process", "where the bttest emulator runs when BIGTABLE_EMULATOR_HOST is unset: process (a child process of this binary) or inprocess")
	flag.BoolVar(&f.limits, "limits", true, "serve the latency runs with every limit at its default (false: limits off, to compare)")
	flag.BoolVar(&f.limitsAB, "limits_ab", true, "with --limits, also run a second server with every limit off in the same slices, and print the limits' own cost as a ratio")
	flag.BoolVar(&f.abuse, "abuse", true, "after the latency runs, run the abuse run (see abuse.go) against a second server with an API key")
	flag.IntVar(&f.abuseFlags.conns, "abuse_conns", 3000, "abuse run: idle keep-alive connections opened")
	flag.IntVar(&f.abuseFlags.posts, "abuse_posts", 64, "abuse run: concurrent POSTs of 1000 keys of 1 KiB")
	flag.DurationVar(&f.abuseFlags.duration, "abuse_duration", 10*time.Second, "abuse run: how long the POSTs and the GET flood last")
	child := flag.Bool(emulatorChildFlag, false, "internal: serve the emulator for a parent servebench")
	flag.Parse()
	if *child {
		debug.SetGCPercent(f.gcPercent)
		if err := serveEmulator(); err != nil {
			fmt.Fprintln(os.Stderr, "servebench emulator:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(f); err != nil {
		fmt.Fprintln(os.Stderr, "servebench:", err)
		os.Exit(1)
	}
}

// only is --only.
var only string

func run(f flags) error {
	only = f.only
	debug.SetGCPercent(f.gcPercent)
	ctx := context.Background()
	set, err := schemas.Parse("", []byte(benchYAML))
	if err != nil {
		return err
	}
	// The table has the data families but no GC policy: bttest scans every
	// row for garbage once a second when a family has one, which costs this
	// process a core at 100k rows and is not what Bigtable does (it
	// collects garbage during compactions). The seeded tiles are all within
	// the retention anyway.
	cfg := bigtablestore.Config{Project: bigtablestore.DefaultProject, Instance: bigtablestore.DefaultInstance, Table: "servebench"}
	if host := os.Getenv("BIGTABLE_EMULATOR_HOST"); host != "" {
		if !strings.HasPrefix(host, "127.0.0.1:") && !strings.HasPrefix(host, "localhost:") {
			return fmt.Errorf("BIGTABLE_EMULATOR_HOST=%s: this benchmark only talks to 127.0.0.1", host)
		}
		fmt.Printf("emulator: %s (BIGTABLE_EMULATOR_HOST)\n", host)
	} else {
		switch f.emulator {
		case "process":
			addr, stop, err := startEmulatorProcess()
			if err != nil {
				return err
			}
			defer stop()
			cfg.Endpoint = addr
			fmt.Printf("emulator: bttest in child process %d at %s\n", emulatorPID, addr)
		case "inprocess":
			srv, emuCfg, err := bigtablestore.StartEmulator()
			if err != nil {
				return err
			}
			defer srv.Close()
			cfg.Endpoint = emuCfg.Endpoint
			fmt.Printf("emulator: in-process bttest at %s\n", srv.Addr)
		default:
			return fmt.Errorf("--emulator %q: want process or inprocess", f.emulator)
		}
	}
	if err := createTable(ctx, cfg); err != nil {
		return err
	}
	client, err := cfg.NewClient(ctx)
	if err != nil {
		return err
	}
	defer client.Close()
	tbl := client.Open(cfg.Table)
	fmt.Printf("machine: %d CPUs, %s, GOMAXPROCS %d, GOGC %d\n", runtime.NumCPU(), runtime.Version(), runtime.GOMAXPROCS(0), f.gcPercent)

	now := time.Now().UTC()
	tb := now.Add(-time.Hour).Truncate(3 * time.Hour) // aligned to every tile size
	if err := seed(ctx, tbl, set, f.entities, tb, now); err != nil {
		return err
	}
	if err := servingtest.WriteFreshness(ctx, tbl, set.Name, tb, now.Truncate(time.Second)); err != nil {
		return err
	}

	if f.only == "abuse" {
		return abuse(ctx, f.abuseFlags, set, tbl)
	}
	// The server as serve runs it: every limit at its default
	// (serving.HTTPServer on LimitListener), without API keys; and, with
	// --limits_ab, a second one with every limit off, measured in the same
	// slices, so that the limits' own cost is a ratio of one run.
	variants := []bool{true}
	switch {
	case !f.limits:
		variants = []bool{false}
	case f.limitsAB:
		variants = []bool{true, false}
	}
	type target struct {
		name string
		do   func(method, path string, body []byte) error
	}
	var servers []target
	for _, on := range variants {
		scfg := serving.Config{
			Sets: []*schemas.FeatureSet{set}, Table: tbl,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		}
		name := "server"
		if !on {
			limitsOff(&scfg)
			name = "server/nolimits"
		}
		api, err := serving.New(scfg)
		if err != nil {
			return err
		}
		defer api.Close()
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		hs := api.HTTPServer()
		go func() { _ = hs.Serve(api.LimitListener(lis)) }()
		defer hs.Close()
		base := "http://" + lis.Addr().String()
		fmt.Printf("%s (limits %v): %s\n", name, on, base)
		var do func(method, path string, body []byte) error
		switch f.client {
		case "raw":
			rc := &rawClient{addr: lis.Addr().String()}
			defer rc.close()
			do = rc.do
		case "net/http":
			hc := &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute}, Timeout: 10 * time.Second}
			do = func(method, path string, body []byte) error { return httpDo(hc, method, base+path, body) }
		default:
			return fmt.Errorf("--client %q: want raw or net/http", f.client)
		}
		servers = append(servers, target{name, do})
	}
	fmt.Printf("HTTP client: %s\n\n", f.client)

	entity := func(r *rand.Rand) string { return entityKey(r.IntN(f.entities)) }
	batch := func(r *rand.Rand) []string {
		keys := make([]string, f.batchSize)
		for i := range keys {
			keys[i] = entity(r)
		}
		return keys
	}
	// The bare reads use the server's filter, rebuilt each second as `at`
	// moves (building it is not measured, as a bare client would cache it).
	var filter atomic.Pointer[bigtable.Filter]
	setFilter := func() error {
		flt, err := serving.ReadFilter(set, nil, time.Now())
		if err == nil {
			filter.Store(&flt)
		}
		return err
	}
	if err := setFilter(); err != nil {
		return err
	}
	stopFilter := make(chan struct{})
	defer close(stopFilter)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopFilter:
				return
			case <-t.C:
				_ = setFilter()
			}
		}
	}()

	bareSingle := func(r *rand.Rand) error {
		key := schemas.RowKey(set.Name, entity(r))
		row, err := tbl.ReadRow(ctx, key, bigtable.RowFilter(*filter.Load()))
		if err == nil && len(row) == 0 {
			err = fmt.Errorf("row %s is empty", key)
		}
		return err
	}
	serverSingle := func(t target) func(*rand.Rand) error {
		return func(r *rand.Rand) error { return t.do(http.MethodGet, "/v1/features/bench/"+entity(r), nil) }
	}
	bareBatch := func(r *rand.Rand) error {
		keys := batch(r)
		rows := make(bigtable.RowList, len(keys))
		for i, k := range keys {
			rows[i] = schemas.RowKey(set.Name, k)
		}
		n := 0
		err := tbl.ReadRows(ctx, rows, func(bigtable.Row) bool { n++; return true }, bigtable.RowFilter(*filter.Load()))
		if err == nil && n == 0 {
			err = errors.New("no rows")
		}
		return err
	}
	serverBatch := func(t target) func(*rand.Rand) error {
		return func(r *rand.Rand) error {
			var b bytes.Buffer
			b.WriteString(`{"entities":[`)
			for i, k := range batch(r) {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(strconv.Quote(k))
			}
			b.WriteString(`]}`)
			return t.do(http.MethodPost, "/v1/features/bench", b.Bytes())
		}
	}

	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); pf.Close() }()
	}
	singles := []contender{{"bare ReadRow (1 entity)", bareSingle}}
	name := fmt.Sprintf("(%d entities)", f.batchSize)
	batches := []contender{{"bare ReadRows " + name, bareBatch}}
	for _, t := range servers {
		singles = append(singles, contender{t.name + " GET (1 entity)", serverSingle(t)})
		batches = append(batches, contender{t.name + " POST " + name, serverBatch(t)})
	}
	ss := compare(singles, f.singleRate, f.warmup, f.singleDuration, f.slice)
	bs := compare(batches, f.batchRate, f.warmup, f.batchDuration, f.slice)
	fmt.Printf("\n%-36s %9s %9s %9s %9s %10s %7s %12s\n", "run", "p50", "p90", "p99", "max", "req/s", "errors", "CPU/request")
	for _, s := range append(slices.Clone(ss), bs...) {
		fmt.Printf("%-36s %9s %9s %9s %9s %10.1f %7d %12s\n", s.name, ms(s.p50), ms(s.p90), ms(s.p99), ms(s.max), s.throughput, s.errors, ms(s.cpuPerCall))
	}
	fmt.Println("(CPU/request: CPU time of this process and the emulator's child process (server, emulator and load generator), per request)")
	fmt.Println()
	for i, t := range servers {
		s, b := ss[i+1], bs[i+1]
		fmt.Printf("%-16s single: /bare p50 %.2f×, p99 %.2f×   (target p99 ≤ 2 ms and ≤ 1.3×: %s)\n", t.name,
			ratio(s.p50, ss[0].p50), ratio(s.p99, ss[0].p99), verdict(s.p99 <= 2*time.Millisecond && ratio(s.p99, ss[0].p99) <= 1.3))
		fmt.Printf("%-16s %d entities: /bare p50 %.2f×, p99 %.2f×   (target p99 ≤ 15 ms and ≤ 1.3×: %s)\n", t.name,
			f.batchSize, ratio(b.p50, bs[0].p50), ratio(b.p99, bs[0].p99), verdict(b.p99 <= 15*time.Millisecond && ratio(b.p99, bs[0].p99) <= 1.3))
	}
	if len(servers) == 2 {
		fmt.Printf("limits on/off:   single p99 %.2f×, %d entities p99 %.2f×\n", ratio(ss[1].p99, ss[2].p99), f.batchSize, ratio(bs[1].p99, bs[2].p99))
	}
	if f.abuse && f.only == "" {
		return abuse(ctx, f.abuseFlags, set, tbl)
	}
	return nil
}

// createTable creates the benchmark's table, dropping an old one, with the
// data and meta families and no GC policy.
func createTable(ctx context.Context, cfg bigtablestore.Config) error {
	ac, err := cfg.NewAdminClient(ctx)
	if err != nil {
		return err
	}
	defer ac.Close()
	tables, err := ac.Tables(ctx)
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	if slices.Contains(tables, cfg.Table) {
		if err := ac.DeleteTable(ctx, cfg.Table); err != nil {
			return fmt.Errorf("drop table %s: %w", cfg.Table, err)
		}
	}
	if err := ac.CreateTable(ctx, cfg.Table); err != nil {
		return fmt.Errorf("create table %s: %w", cfg.Table, err)
	}
	for _, fam := range []string{schemas.FamilyBatch, schemas.FamilyStream, schemas.FamilyMeta} {
		if err := ac.CreateColumnFamily(ctx, cfg.Table, fam); err != nil {
			return fmt.Errorf("create family %s: %w", fam, err)
		}
	}
	return nil
}

func entityKey(i int) string { return fmt.Sprintf("u%07d", i) }

// seed writes, for every entity, one batch event before tb and two stream
// events after it, as tiles of every feature, in bulk writes of 1000 rows
// from two goroutines.
func seed(ctx context.Context, tbl *bigtable.Table, set *schemas.FeatureSet, n int, tb, now time.Time) error {
	fmt.Printf("seeding %d entities × %d features (batch watermark %s)...\n", n, len(set.Features), tb.Format(time.RFC3339))
	start := time.Now()
	const chunk = 1000
	var next, done, cells atomic.Int64
	pages := []string{"home", "search", "item", "cart", "checkout", "help", "account", "deals"}
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 42))
			for {
				lo := int(next.Add(chunk)) - chunk
				if lo >= n {
					return
				}
				hi := min(lo+chunk, n)
				batch, stream := servingtest.NewTiles(set), servingtest.NewTiles(set)
				for i := lo; i < hi; i++ {
					ev := func(t time.Time) schemas.Event {
						return servingtest.Event(set, entityKey(i), t, map[string]schemas.Value{
							"page":     schemas.StringValue(pages[r.IntN(len(pages))]),
							"dwell_ms": schemas.Int64Value(r.Int64N(60_000)),
							"amount":   schemas.Float64Value(float64(r.IntN(10_000)) / 100),
						})
					}
					batch.Add(ev(tb.Add(-time.Duration(r.Int64N(int64(20 * time.Hour))))))
					since := now.Sub(tb)
					stream.Add(ev(tb.Add(time.Duration(r.Int64N(int64(since))))), ev(now.Add(-time.Duration(r.Int64N(int64(5*time.Minute))))))
				}
				for _, w := range []struct {
					t   *servingtest.Tiles
					fam string
				}{{batch, schemas.FamilyBatch}, {stream, schemas.FamilyStream}} {
					cells.Add(int64(w.t.Len()))
					if err := w.t.Write(ctx, tbl, w.fam); err != nil {
						errc <- err
						return
					}
				}
				if d := done.Add(int64(hi - lo)); d%20_000 == 0 || d == int64(n) {
					fmt.Printf("  %d/%d entities, %d cells, %.0fs\n", d, n, cells.Load(), time.Since(start).Seconds())
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	fmt.Printf("seeded %d entities, %d cells in %.1fs\n", n, cells.Load(), time.Since(start).Seconds())
	return nil
}

func httpDo(hc *http.Client, method, url string, body []byte) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return err
	}
	res, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err == nil && res.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", res.StatusCode)
	}
	return err
}

// rawClient is a minimal HTTP/1.1 client over a pool of keep-alive
// connections: it writes a request, reads the status line, the headers and
// a Content-Length body, with none of net/http's per-request goroutine
// hand-offs. It is enough for this server, which always sends
// Content-Length.
type rawClient struct {
	addr string
	mu   sync.Mutex
	idle []*rawConn
}

type rawConn struct {
	c   net.Conn
	r   *bufio.Reader
	buf []byte
}

func (rc *rawClient) get() (*rawConn, error) {
	rc.mu.Lock()
	if n := len(rc.idle); n > 0 {
		c := rc.idle[n-1]
		rc.idle = rc.idle[:n-1]
		rc.mu.Unlock()
		return c, nil
	}
	rc.mu.Unlock()
	c, err := net.Dial("tcp", rc.addr)
	if err != nil {
		return nil, err
	}
	return &rawConn{c: c, r: bufio.NewReaderSize(c, 64<<10)}, nil
}

func (rc *rawClient) close() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, c := range rc.idle {
		c.c.Close()
	}
	rc.idle = nil
}

func (rc *rawClient) do(method, path string, body []byte) error {
	c, err := rc.get()
	if err != nil {
		return err
	}
	status, err := c.roundTrip(method, path, body)
	if err != nil {
		c.c.Close()
		return err
	}
	rc.mu.Lock()
	rc.idle = append(rc.idle, c)
	rc.mu.Unlock()
	if status != http.StatusOK {
		return fmt.Errorf("status %d", status)
	}
	return nil
}

func (c *rawConn) roundTrip(method, path string, body []byte) (int, error) {
	b := c.buf[:0]
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: bench\r\n"...)
	if body != nil {
		b = append(b, "Content-Type: application/json\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	b = append(b, body...)
	c.buf = b
	if _, err := c.c.Write(b); err != nil {
		return 0, err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length := -1
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return 0, fmt.Errorf("bad Content-Length %q", v)
			}
		}
	}
	if length < 0 {
		return 0, errors.New("response without Content-Length")
	}
	if _, err := c.r.Discard(length); err != nil {
		return 0, err
	}
	return status, nil
}

type stats struct {
	name               string
	p50, p90, p99, max time.Duration
	throughput         float64
	cpuPerCall         time.Duration
	errors             int
	firstErr           error
}

// contender is one kind of call that compare measures.
type contender struct {
	name string
	fn   func(*rand.Rand) error
}

// compare runs the contenders in turn, each in slices of length slice at
// rate per second, open-loop, until each has run for d after an unmeasured
// warm-up, and reports their latencies measured from each call's scheduled
// start. Alternating puts all of them under the same load from the rest of
// the machine.
func compare(cs []contender, rate int, warmup, d, slice time.Duration) []stats {
	var names []string
	recs := make([]*recorder, len(cs))
	for i, c := range cs {
		if only != "" && !strings.Contains(c.name, only) {
			continue
		}
		recs[i] = &recorder{name: c.name}
		names = append(names, c.name)
	}
	fmt.Printf("running %s at %d/s, alternating every %s, %s each...\n", strings.Join(names, ", "), rate, slice, d)
	for i, c := range cs {
		if recs[i] != nil {
			runSlice(c.fn, rate, warmup, nil)
		}
	}
	for elapsed := time.Duration(0); elapsed < d; elapsed += slice {
		for i, c := range cs {
			if recs[i] != nil {
				runSlice(c.fn, rate, min(slice, d-elapsed), recs[i])
			}
		}
	}
	out := make([]stats, len(cs))
	for i, r := range recs {
		out[i] = r.stats()
	}
	return out
}

// recorder collects the latencies of one kind of call.
type recorder struct {
	name     string
	mu       sync.Mutex
	lat      []time.Duration
	errors   int
	firstErr error
	active   time.Duration // total length of its slices
	cpu      time.Duration // process CPU time during its slices
	calls    int
}

func (r *recorder) add(l time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errors++
		if r.firstErr == nil {
			r.firstErr = err
		}
		return
	}
	r.lat = append(r.lat, l)
}

func (r *recorder) stats() stats {
	if r == nil {
		return stats{}
	}
	slices.Sort(r.lat)
	s := stats{name: r.name, errors: r.errors, firstErr: r.firstErr}
	if r.calls > 0 {
		s.cpuPerCall = r.cpu / time.Duration(r.calls)
	}
	if r.active > 0 {
		s.throughput = float64(len(r.lat)) / r.active.Seconds()
	}
	if n := len(r.lat); n > 0 {
		q := func(p float64) time.Duration { return r.lat[min(n-1, int(p*float64(n)))] }
		s.p50, s.p90, s.p99, s.max = q(0.50), q(0.90), q(0.99), r.lat[n-1]
	}
	if r.firstErr != nil {
		fmt.Printf("  %s: %d errors, first: %v\n", r.name, r.errors, r.firstErr)
	}
	return s
}

// runSlice calls fn at rate per second for d, each call in its own
// goroutine at its scheduled time, waits for all of them, and records their
// latencies from the scheduled times in rec (nil: not recorded).
func runSlice(fn func(*rand.Rand) error, rate int, d time.Duration, rec *recorder) {
	interval := time.Second / time.Duration(rate)
	n := int(d / interval)
	cpu0 := processCPU()
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		}
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seq.Add(1), 7))
			err := fn(r)
			if rec != nil {
				rec.add(time.Since(at), err)
			}
		})
	}
	wg.Wait()
	if rec != nil {
		rec.mu.Lock()
		rec.active += time.Duration(n) * interval
		rec.cpu += processCPU() - cpu0
		rec.calls += n
		rec.mu.Unlock()
	}
}

// processCPU is the CPU time (user + system) this process and the
// emulator's child process, if any, have used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano()+ru.Stime.Nano()) + childCPU(emulatorPID)
}

// seq seeds each call's random source differently.
var seq atomic.Uint64

func ms(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d.Microseconds())/1000) }

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}
