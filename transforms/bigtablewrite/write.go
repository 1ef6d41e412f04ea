// Package bigtablewrite provides Tandem's Bigtable sink: a bulk-writer DoFn
// that keeps one client per worker, batches mutations of many rows into
// bounded bulk requests (rows, bytes and cells), keeps a few of them in
// flight while it batches the next, retries transient per-row failures with
// backoff and fails the bundle on a permanent one, naming the row. Unlike
// Beam's bigtableio it never funnels writes through one group key, so it
// writes from every worker in parallel and works on unbounded, unwindowed
// input.
package bigtablewrite

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"cloud.google.com/go/bigtable"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/transforms"
)

func init() {
	register.DoFn3x1[context.Context, transforms.RowMutation, func(int64), error](&writeFn{})
	register.Emitter1[int64]()
}

// Defaults for the bulk batches.
const (
	DefaultMaxRows     = 1000    // rows per bulk request
	DefaultMaxBytes    = 3 << 20 // bytes (values, qualifiers, keys, framing) per bulk request: under gRPC's default 4 MiB message limit, which the emulator keeps
	DefaultMaxCells    = 100_000 // cells per bulk request: Bigtable's limit of mutations per MutateRows
	DefaultAttempts    = 8       // tries of a row with transient failures
	DefaultConcurrency = 2       // bulk requests in flight per DoFn instance
)

// Option tunes Write.
type Option func(*writeFn)

// MaxRows bounds the rows of one bulk request.
func MaxRows(n int) Option { return func(fn *writeFn) { fn.MaxRows = n } }

// MaxBytes bounds the bytes of one bulk request (values, qualifiers, row
// keys and an estimate of the framing).
func MaxBytes(n int) Option { return func(fn *writeFn) { fn.MaxBytes = n } }

// MaxCells bounds the cells of one bulk request (at most DefaultMaxCells,
// Bigtable's limit). A batch is sent before a row mutation that would take
// it past the bound; a single row mutation with more cells fails the bundle.
func MaxCells(n int) Option { return func(fn *writeFn) { fn.MaxCells = n } }

// Attempts sets how many times a row with transient failures is tried
// (DefaultAttempts by default; 1 never retries).
func Attempts(n int) Option { return func(fn *writeFn) { fn.Attempts = n } }

// Concurrency sets how many bulk requests one DoFn instance keeps in flight
// while it goes on batching (1: each request is awaited before the next row
// is batched). The bundle finishes only when all of them are acknowledged.
func Concurrency(n int) Option { return func(fn *writeFn) { fn.Concurrency = n } }

// Write applies row mutations to the table of cfg in bulk. It returns the
// number of rows written by each bundle, emitted when the bundle finishes,
// after its writes are acknowledged by Bigtable: a transform that consumes
// the combined counts (for example the batch watermark commit) runs only
// after every write has succeeded.
//
//	PCollection<transforms.RowMutation> → PCollection<int64>
func Write(s beam.Scope, cfg bigtablestore.Config, muts beam.PCollection, opts ...Option) beam.PCollection {
	s = s.Scope("bigtablewrite.Write")
	if err := cfg.Validate(); err != nil {
		panic(fmt.Sprintf("bigtablewrite.Write: %v", err))
	}
	fn := &writeFn{Config: cfg, MaxRows: DefaultMaxRows, MaxBytes: DefaultMaxBytes, MaxCells: DefaultMaxCells,
		Attempts: DefaultAttempts, Concurrency: DefaultConcurrency}
	for _, o := range opts {
		o(fn)
	}
	if fn.MaxRows < 1 || fn.MaxBytes < 1 || fn.MaxCells < 1 || fn.MaxCells > DefaultMaxCells || fn.Attempts < 1 || fn.Concurrency < 1 {
		panic(fmt.Sprintf("bigtablewrite.Write: MaxRows %d, MaxBytes %d, MaxCells %d (at most %d), Attempts %d and Concurrency %d must be positive",
			fn.MaxRows, fn.MaxBytes, fn.MaxCells, DefaultMaxCells, fn.Attempts, fn.Concurrency))
	}
	return beam.ParDo(s, fn, muts)
}

type writeFn struct {
	Config      bigtablestore.Config `json:"config"`
	MaxRows     int                  `json:"max_rows"`
	MaxBytes    int                  `json:"max_bytes"`
	MaxCells    int                  `json:"max_cells"`
	Attempts    int                  `json:"attempts"`
	Concurrency int                  `json:"concurrency"`

	client *bigtable.Client
	table  *bigtable.Table

	batch    *Batch       // the batch being filled
	free     []*Batch     // batches to reuse
	done     chan flushed // results of the requests in flight
	inflight int          // requests in flight
	err      error        // the first failure of this bundle
	rows     int64        // rows acknowledged in this bundle

	written beam.Counter
	cells   beam.Counter
	retries beam.Counter
}

// flushed is the outcome of one bulk request.
type flushed struct {
	batch   *Batch
	rows    int
	cells   int
	retried int
	err     error
}

func (fn *writeFn) Setup(ctx context.Context) error {
	cl, err := fn.Config.NewClient(ctx)
	if err != nil {
		return err
	}
	fn.client = cl
	fn.table = cl.Open(fn.Config.Table)
	fn.batch = &Batch{}
	fn.done = make(chan flushed, fn.Concurrency)
	fn.written = beam.NewCounter(transforms.MetricsNamespace, "bigtable_rows_written")
	fn.cells = beam.NewCounter(transforms.MetricsNamespace, "bigtable_cells_written")
	fn.retries = beam.NewCounter(transforms.MetricsNamespace, "bigtable_row_retries")
	return nil
}

func (fn *writeFn) StartBundle(ctx context.Context, _ func(int64)) {
	// A failed bundle may have left requests in flight; they belong to it.
	for fn.inflight > 0 {
		fn.collect(ctx, <-fn.done)
	}
	fn.batch.Reset()
	fn.err = nil
	fn.rows = 0
}

func (fn *writeFn) ProcessElement(ctx context.Context, m transforms.RowMutation, _ func(int64)) error {
	if fn.err != nil {
		return fn.err
	}
	if len(m.Cells) > fn.MaxCells {
		return fmt.Errorf("bigtable write of row %q: %d cells, more than the %d of one bulk request", m.RowKey, len(m.Cells), fn.MaxCells)
	}
	if fn.batch.Cells()+len(m.Cells) > fn.MaxCells || fn.batch.Rows() > 0 && fn.batch.Bytes()+mutationBytes(m) > fn.MaxBytes {
		fn.flush(ctx)
	}
	fn.batch.Add(m)
	if fn.batch.Rows() >= fn.MaxRows || fn.batch.Bytes() >= fn.MaxBytes {
		fn.flush(ctx)
	}
	return fn.err
}

func (fn *writeFn) FinishBundle(ctx context.Context, emit func(int64)) error {
	fn.flush(ctx)
	for fn.inflight > 0 {
		fn.collect(ctx, <-fn.done)
	}
	if fn.err != nil {
		return fn.err
	}
	emit(fn.rows)
	return nil
}

func (fn *writeFn) Teardown() error {
	if fn.client == nil {
		return nil
	}
	for fn.inflight > 0 {
		<-fn.done
		fn.inflight--
	}
	err := fn.client.Close()
	fn.client = nil
	return err
}

// flush sends the current batch, if any, in the background, first waiting
// for a request to finish when Concurrency are in flight.
func (fn *writeFn) flush(ctx context.Context) {
	if fn.batch.Rows() == 0 {
		return
	}
	for fn.inflight >= fn.Concurrency {
		fn.collect(ctx, <-fn.done)
	}
	b := fn.batch
	if n := len(fn.free); n > 0 {
		fn.batch, fn.free = fn.free[n-1], fn.free[:n-1]
	} else {
		fn.batch = &Batch{}
	}
	fn.inflight++
	go func() {
		rows, cells := b.Rows(), b.Cells()
		retried, err := ApplyBulk(ctx, fn.table, b, fn.Attempts)
		fn.done <- flushed{batch: b, rows: rows, cells: cells, retried: retried, err: err}
	}()
}

// collect accounts for a finished request, on the bundle's goroutine.
func (fn *writeFn) collect(ctx context.Context, r flushed) {
	fn.inflight--
	fn.retries.Inc(ctx, int64(r.retried))
	if r.err != nil {
		if fn.err == nil {
			fn.err = r.err
		}
	} else {
		fn.rows += int64(r.rows)
		fn.written.Inc(ctx, int64(r.rows))
		fn.cells.Inc(ctx, int64(r.cells))
	}
	r.batch.Reset()
	fn.free = append(fn.free, r.batch)
}

// Batch collects row mutations for one bulk request, merging the cells of
// mutations to the same row into one entry.
type Batch struct {
	keys  []string
	muts  []*bigtable.Mutation
	index map[string]int
	cells int
	bytes int
}

// Add adds the cells of m to the batch.
func (b *Batch) Add(m transforms.RowMutation) {
	if b.index == nil {
		b.index = make(map[string]int)
	}
	i, ok := b.index[m.RowKey]
	if !ok {
		i = len(b.keys)
		b.index[m.RowKey] = i
		b.keys = append(b.keys, m.RowKey)
		b.muts = append(b.muts, bigtable.NewMutation())
		b.bytes += len(m.RowKey)
	}
	for _, c := range m.Cells {
		if c.Replace {
			b.muts[i].DeleteCellsInColumn(c.Family, c.Qualifier)
		}
		b.muts[i].Set(c.Family, c.Qualifier, bigtable.Timestamp(c.Timestamp), c.Value)
		b.cells++
	}
	b.bytes += cellBytes(m)
}

// cellBytes is about the bytes m's cells take in a request: value,
// qualifier, family and framing per cell, and the qualifier and family
// again for a cell that replaces its column.
func cellBytes(m transforms.RowMutation) int {
	n := 0
	for _, c := range m.Cells {
		n += len(c.Qualifier) + len(c.Family) + len(c.Value) + 16
		if c.Replace {
			n += len(c.Qualifier) + len(c.Family) + 8
		}
	}
	return n
}

// mutationBytes is about the bytes m adds to a request.
func mutationBytes(m transforms.RowMutation) int { return len(m.RowKey) + cellBytes(m) }

// Rows is the number of distinct rows in the batch.
func (b *Batch) Rows() int { return len(b.keys) }

// Cells is the number of cells in the batch.
func (b *Batch) Cells() int { return b.cells }

// Bytes estimates the size of the batch.
func (b *Batch) Bytes() int { return b.bytes }

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() {
	b.keys, b.muts = b.keys[:0], b.muts[:0]
	clear(b.index)
	b.cells, b.bytes = 0, 0
}

// ApplyBulk writes the batch with bulk mutations, retrying rows that fail
// with a transient error (up to attempts tries, with jittered exponential
// backoff) and returning the first permanent error with its row key. It
// returns the number of row retries.
func ApplyBulk(ctx context.Context, tbl *bigtable.Table, b *Batch, attempts int) (retried int, err error) {
	keys, muts := b.keys, b.muts
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		errs, rpcErr := tbl.ApplyBulk(ctx, keys, muts)
		var failedKeys []string
		var failedMuts []*bigtable.Mutation
		var lastErr error
		switch {
		case rpcErr != nil:
			if !Transient(rpcErr) {
				return retried, fmt.Errorf("bigtable bulk write of %d rows (first row %q): %w", len(keys), keys[0], rpcErr)
			}
			failedKeys, failedMuts, lastErr = keys, muts, rpcErr
		default:
			for i, e := range errs {
				if e == nil {
					continue
				}
				if !Transient(e) {
					return retried, fmt.Errorf("bigtable write of row %q: %w", keys[i], e)
				}
				failedKeys = append(failedKeys, keys[i])
				failedMuts = append(failedMuts, muts[i])
				lastErr = e
			}
		}
		if len(failedKeys) == 0 {
			return retried, nil
		}
		if attempt >= attempts {
			return retried, fmt.Errorf("bigtable write of row %q (and %d more) failed %d times: %w", failedKeys[0], len(failedKeys)-1, attempt, lastErr)
		}
		retried += len(failedKeys)
		keys, muts = failedKeys, failedMuts
		sleep := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return retried, fmt.Errorf("bigtable write of row %q: %w", keys[0], ctx.Err())
		case <-time.After(sleep):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// Transient reports whether a Bigtable error is worth retrying.
func Transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted, codes.Internal:
		return true
	}
	return false
}
