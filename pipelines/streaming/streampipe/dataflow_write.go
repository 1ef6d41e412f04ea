package streampipe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"time"

	"cloud.google.com/go/bigtable"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/mtime"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/transforms"
	"github.com/tandem-fp/tandem/transforms/bigtablewrite"
)

func init() {
	beam.RegisterType(reflect.TypeOf(seqMutation{}))
	register.DoFn5x1[context.Context, beam.EventTime, string, seqMutation, func(beam.EventTime, string, int64), error](&tileWriterFn{})
	register.Emitter3[beam.EventTime, string, int64]()
}

// seqMutation is one write of the Dataflow variant to an entity row: the
// whole value of every tile a bundle of entityTilesFn changed, the
// entity's newest event time, and where the write stands in the entity's
// chain of writes. Chain is drawn when the entity's state is created and
// Seq counts the chain's mutations from 1; Prev is the stream:~chain value
// the row must hold for this write to apply: the previous mutation of the
// chain, or, for the first, Origin, the value read when the chain started
// (empty: no cell).
type seqMutation struct {
	Chain  uint64
	Seq    int64
	Prev   []byte
	Origin []byte
	Newest int64
	Cells  []transforms.Cell
}

// encodeSeq is the stream:~chain value of a chain's mutation seq.
func encodeSeq(chain uint64, seq int64) []byte {
	b := binary.BigEndian.AppendUint64(nil, chain)
	return binary.BigEndian.AppendUint64(b, uint64(seq))
}

// decodeSeq decodes a stream:~chain value; ok is false for another length.
func decodeSeq(b []byte) (chain uint64, seq int64, ok bool) {
	if len(b) != 16 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(b), int64(binary.BigEndian.Uint64(b[8:])), true
}

// tileWriterFn applies the seqMutations of entityTilesFn to Bigtable. It
// runs after a Reshuffle, so it only ever sees mutations whose bundle
// Dataflow committed (with the state they were computed from), and each
// may reach it more than once (a retried writer bundle, a superseded
// worker still running) and in any order.
//
// Each mutation is a CheckAndMutateRow conditional on the row's
// stream:~chain cell (schemas.QualifierChain) holding the mutation's Prev;
// the mutation also sets stream:~chain to its own chain and seq. So the mutations of an entity are applied exactly
// in their chain's order, each at most once in effect: one whose
// predecessor is not yet applied waits (and after MaxWait fails the
// bundle, which Dataflow retries), one already applied or superseded by a
// later one is skipped (counted: <set>_stream_writes_superseded). A row
// written by another chain than the one expected (two jobs writing one
// set, or a writer lagging by more than the state's retention) is a
// conflict: logged, counted (<set>_stream_write_conflicts) and skipped.
//
// A mutation larger than MaxCells or MaxBytes is split into several
// conditional writes on the same Prev; only the last one moves
// stream:~chain, and each carries the entity's ~newest cell, so a reader
// never sees a tile newer than ~newest says.
//
// Each bundle emits the start of the newest tile it wrote, keyed for
// streamMetaFn.
type tileWriterFn struct {
	Set         *schemas.FeatureSet  `json:"set"`
	Bigtable    bigtablestore.Config `json:"bigtable"`
	MaxCells    int                  `json:"max_cells"`
	MaxBytes    int                  `json:"max_bytes"`
	Concurrency int                  `json:"concurrency"`
	MaxWait     time.Duration        `json:"max_wait"`

	table   *sharedTable
	buf     map[string][]seqMutation
	minTS   beam.EventTime
	counter writerCounters
}

type writerCounters struct {
	cells, superseded, conflicts, waits beam.Counter
}

// Defaults of tileWriterFn.
const (
	defaultWriterConcurrency = 16
	defaultWriterMaxWait     = 30 * time.Second
)

func newTileWriterFn(set *schemas.FeatureSet, bt bigtablestore.Config) *tileWriterFn {
	return &tileWriterFn{Set: set, Bigtable: bt, MaxCells: bigtablewrite.DefaultMaxCells, MaxBytes: bigtablewrite.DefaultMaxBytes,
		Concurrency: defaultWriterConcurrency, MaxWait: defaultWriterMaxWait}
}

func (fn *tileWriterFn) Setup(ctx context.Context) error {
	t, err := acquireTable(ctx, fn.Bigtable)
	if err != nil {
		return err
	}
	fn.table = t
	ns := transforms.MetricsNamespace
	fn.counter = writerCounters{
		cells:      beam.NewCounter(ns, fn.Set.Name+"_stream_cells_written"),
		superseded: beam.NewCounter(ns, fn.Set.Name+"_stream_writes_superseded"),
		conflicts:  beam.NewCounter(ns, fn.Set.Name+"_stream_write_conflicts"),
		waits:      beam.NewCounter(ns, fn.Set.Name+"_stream_writes_waited"),
	}
	return nil
}

func (fn *tileWriterFn) Teardown() error {
	if fn.table == nil {
		return nil
	}
	err := fn.table.release()
	fn.table = nil
	return err
}

func (fn *tileWriterFn) StartBundle(context.Context, func(beam.EventTime, string, int64)) {
	fn.buf = map[string][]seqMutation{}
	fn.minTS = mtime.MaxTimestamp
}

func (fn *tileWriterFn) ProcessElement(_ context.Context, ts beam.EventTime, entity string, m seqMutation, _ func(beam.EventTime, string, int64)) error {
	fn.buf[entity] = append(fn.buf[entity], m)
	fn.minTS = min(fn.minTS, ts)
	return nil
}

func (fn *tileWriterFn) FinishBundle(ctx context.Context, emit func(beam.EventTime, string, int64)) error {
	if len(fn.buf) == 0 {
		return nil
	}
	type result struct {
		newest int64
		err    error
	}
	work := make(chan string)
	results := make(chan result)
	var wg sync.WaitGroup
	for range min(fn.Concurrency, len(fn.buf)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for entity := range work {
				ms := fn.buf[entity]
				slices.SortFunc(ms, func(a, b seqMutation) int { return int(min(max(a.Seq-b.Seq, -1), 1)) })
				var r result
				for _, m := range ms {
					newest, err := fn.apply(ctx, entity, m)
					r.newest = max(r.newest, newest)
					if err != nil {
						r.err = err
						break
					}
				}
				results <- r
			}
		}()
	}
	go func() {
		for entity := range fn.buf {
			work <- entity
		}
		close(work)
		wg.Wait()
		close(results)
	}()
	var newest int64
	var errs []error
	for r := range results {
		newest = max(newest, r.newest)
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if newest > 0 {
		emit(fn.minTS, metaKey, newest)
	}
	return nil
}

// metaKey is the one key of streamMetaFn's input.
const metaKey = "meta"

// apply applies m to entity's row as described on tileWriterFn and returns
// the newest tile start it wrote (0 if skipped).
func (fn *tileWriterFn) apply(ctx context.Context, entity string, m seqMutation) (int64, error) {
	row := schemas.RowKey(fn.Set.Name, entity)
	chunks := splitCells(m.Cells, fn.MaxCells-2, fn.MaxBytes)
	waited := time.Duration(0)
	backoff := 20 * time.Millisecond
	for {
		applied := true
		for i, cells := range chunks {
			mut := bigtable.NewMutation()
			nc := NewestCell(m.Newest)
			mut.DeleteCellsInColumn(nc.Family, nc.Qualifier)
			mut.Set(nc.Family, nc.Qualifier, bigtable.Timestamp(nc.Timestamp), nc.Value)
			for _, c := range cells {
				mut.Set(c.Family, c.Qualifier, bigtable.Timestamp(c.Timestamp), c.Value)
			}
			if i == len(chunks)-1 {
				mut.DeleteCellsInColumn(schemas.FamilyStream, schemas.QualifierChain)
				mut.Set(schemas.FamilyStream, schemas.QualifierChain, bigtable.Timestamp(nc.Timestamp), encodeSeq(m.Chain, m.Seq))
			}
			ok, err := fn.applyIf(ctx, row, m.Prev, mut)
			if err != nil {
				return 0, fmt.Errorf("write stream tiles of %s/%s (chain %x, mutation %d): %w", fn.Set.Name, entity, m.Chain, m.Seq, err)
			}
			if !ok {
				applied = false
				break
			}
		}
		if applied {
			fn.counter.cells.Inc(ctx, int64(len(m.Cells)+2))
			var newest int64
			for _, c := range m.Cells {
				newest = max(newest, c.Timestamp)
			}
			return newest, nil
		}
		cur, err := fn.readSeq(ctx, row)
		if err != nil {
			return 0, err
		}
		chain, seq, ok := decodeSeq(cur)
		switch {
		case ok && chain == m.Chain && seq >= m.Seq:
			fn.counter.superseded.Inc(ctx, 1)
			return 0, nil
		case m.Seq > 1 && ((ok && chain == m.Chain) || slices.Equal(cur, m.Origin)):
			// The predecessor is not applied yet: it is on its way.
			if waited >= fn.MaxWait {
				return 0, fmt.Errorf("write stream tiles of %s/%s: mutation %d of chain %x still waits for mutation %d after %s (the row holds %d)",
					fn.Set.Name, entity, m.Seq, m.Chain, m.Seq-1, fn.MaxWait, seq)
			}
			fn.counter.waits.Inc(ctx, 1)
			time.Sleep(backoff)
			waited += backoff
			backoff = min(2*backoff, time.Second)
		case slices.Equal(cur, m.Prev):
			// The row changed between the write and the read; try again.
		default:
			fn.counter.conflicts.Inc(ctx, 1)
			slog.Error("stream tiles written by another writer; mutation skipped",
				"set", fn.Set.Name, "entity", entity, "chain", fmt.Sprintf("%x", m.Chain), "seq", m.Seq,
				"expected", fmt.Sprintf("%x", m.Prev), "found", fmt.Sprintf("%x", cur))
			return 0, nil
		}
	}
}

// applyIf applies mut to row if its stream:~chain cell holds prev (is absent
// when prev is empty) and reports whether it did. Transient errors are
// retried.
func (fn *tileWriterFn) applyIf(ctx context.Context, row string, prev []byte, mut *bigtable.Mutation) (bool, error) {
	seqCell := bigtable.ChainFilters(bigtable.FamilyFilter(schemas.FamilyStream), bigtable.ColumnFilter(schemas.QualifierChain), bigtable.LatestNFilter(1))
	var cond *bigtable.Mutation
	if len(prev) == 0 {
		cond = bigtable.NewCondMutation(seqCell, nil, mut)
	} else {
		cond = bigtable.NewCondMutation(bigtable.ChainFilters(seqCell, bigtable.ValueRangeFilter(prev, append(slices.Clone(prev), 0))), mut, nil)
	}
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		var matched bool
		err := fn.table.table.Apply(ctx, row, cond, bigtable.GetCondMutationResult(&matched))
		if err == nil {
			return matched == (len(prev) > 0), nil
		}
		if !bigtablewrite.Transient(err) || attempt >= bigtablewrite.DefaultAttempts {
			return false, err
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// readSeq reads row's stream:~chain cell (nil if none).
func (fn *tileWriterFn) readSeq(ctx context.Context, row string) ([]byte, error) {
	r, err := fn.table.table.ReadRow(ctx, row, bigtable.RowFilter(bigtable.ChainFilters(
		bigtable.FamilyFilter(schemas.FamilyStream), bigtable.ColumnFilter(schemas.QualifierChain), bigtable.LatestNFilter(1))))
	if err != nil {
		return nil, fmt.Errorf("read %s:%s of %s: %w", schemas.FamilyStream, schemas.QualifierChain, row, err)
	}
	for _, it := range r[schemas.FamilyStream] {
		return it.Value, nil
	}
	return nil, nil
}

// splitCells splits cells into runs of at most maxCells cells and about
// maxBytes bytes (a run holds at least one cell); none for no cells.
func splitCells(cells []transforms.Cell, maxCells, maxBytes int) [][]transforms.Cell {
	if len(cells) == 0 {
		return [][]transforms.Cell{nil}
	}
	var out [][]transforms.Cell
	start, bytes := 0, 0
	for i, c := range cells {
		size := len(c.Qualifier) + len(c.Value) + 16
		if i > start && (i-start >= maxCells || bytes+size > maxBytes) {
			out = append(out, cells[start:i])
			start, bytes = i, 0
		}
		bytes += size
	}
	return append(out, cells[start:])
}

// sharedTable is a Bigtable client shared by every DoFn instance of a
// process that writes to the same table (Dataflow runs many DoFn
// instances per worker; each client holds its own connection pool).
type sharedTable struct {
	cfg    bigtablestore.Config
	client *bigtable.Client
	table  *bigtable.Table
	refs   int
}

var sharedTables = struct {
	sync.Mutex
	m map[bigtablestore.Config]*sharedTable
}{m: map[bigtablestore.Config]*sharedTable{}}

// acquireTable returns the process's client of cfg's table, creating it on
// first use; release it when done.
func acquireTable(ctx context.Context, cfg bigtablestore.Config) (*sharedTable, error) {
	sharedTables.Lock()
	defer sharedTables.Unlock()
	if t := sharedTables.m[cfg]; t != nil {
		t.refs++
		return t, nil
	}
	cl, err := cfg.NewClient(ctx)
	if err != nil {
		return nil, err
	}
	t := &sharedTable{cfg: cfg, client: cl, table: cl.Open(cfg.Table), refs: 1}
	sharedTables.m[cfg] = t
	return t, nil
}

// release drops a reference; the last one closes the client.
func (t *sharedTable) release() error {
	sharedTables.Lock()
	defer sharedTables.Unlock()
	t.refs--
	if t.refs > 0 {
		return nil
	}
	delete(sharedTables.m, t.cfg)
	return t.client.Close()
}
