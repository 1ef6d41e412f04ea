package batchpipe

import (
	"context"
	"fmt"
	"hash/maphash"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms"
)

func init() {
	register.DoFn3x1[context.Context, schemas.Event, func(string, []byte), error](&bundleTilesFn{})
	register.Emitter2[string, []byte]()
	register.DoFn3x1[string, func(*[]byte) bool, func(transforms.RowMutation), error](&rowsFn{})
	register.Iter1[[]byte]()
	register.Emitter1[transforms.RowMutation]()
}

// Bounds of TileRows.
const (
	// DefaultBundleTiles is how many tiles TileRows holds per bundle before
	// it hands its tile sets on: about 120 bytes each, so 4M is ~500 MB.
	DefaultBundleTiles = 4 << 20
	// MaxRowCells is the most cells TileRows puts in one row mutation.
	MaxRowCells = 10_000
	// maxTileWorkers bounds the goroutines that fold a bundle's events.
	maxTileWorkers = 4
	// tileBatch is how many events the bundle hands a worker at a time.
	tileBatch = 256
)

// TileRows folds the events with event time in [from, to) into tiles with
// the aggregation algebra, as transforms.TileEvents does, and returns them
// as Bigtable mutations of family, the cells of one entity together. Events
// outside the range are not errors (a file or table usually holds more
// history than a run needs): they are skipped and counted in
// tandem/<set>_events_out_of_range, the others in
// tandem/<set>_events_in_range.
//
// It is the batch form of TileEvents followed by ToMutations, for the global
// window only, and costs less:
//
//   - Each bundle folds its events into one TileSet per entity, up to
//     DefaultBundleTiles tiles, rather than relying on Beam's combiner
//     lifting, whose cache holds 2000 keys: too few for a history of many
//     entities, whose events are far apart. The folding and the encoding
//     run on a few goroutines, each owning the entities of one hash range,
//     beside the bundle's own (a local runner gives a stage one bundle).
//   - The sets travel encoded (TileSet.MarshalBinary). A GroupByKey brings
//     an entity's sets together and their encodings become the cells'
//     values as they are (transforms.MergeEncoded, EmitEncodedRows): only a
//     tile that several sets hold is decoded, merged and encoded again.
//
// The element types:
//
//	PCollection<schemas.Event> → PCollection<transforms.RowMutation>
func TileRows(s beam.Scope, set *schemas.FeatureSet, family string, from, to time.Time, events beam.PCollection) beam.PCollection {
	s = s.Scope("batchpipe.TileRows")
	if ws := events.WindowingStrategy(); ws == nil || ws.Fn.Kind != window.GlobalWindows {
		panic(fmt.Sprintf("batchpipe.TileRows: events of %s must be in the global window", set.Name))
	}
	if family != schemas.FamilyBatch && family != schemas.FamilyStream {
		panic(fmt.Sprintf("batchpipe.TileRows: family %q is not %q or %q", family, schemas.FamilyBatch, schemas.FamilyStream))
	}
	fn := &bundleTilesFn{Set: set, From: from.UnixMicro(), To: to.UnixMicro(), MaxTiles: DefaultBundleTiles}
	sets := beam.ParDo(s, fn, events)
	return beam.ParDo(s, &rowsFn{Set: set, Family: family}, beam.GroupByKey(s, sets))
}

// bundleTilesFn folds a bundle's events in [From, To) into a TileSet per
// entity and emits them encoded when the bundle finishes, or earlier when
// it holds MaxTiles tiles. Workers, one per hash range of entity keys, do
// the folding and the encoding; the bundle's goroutine only routes events
// and emits.
type bundleTilesFn struct {
	Set      *schemas.FeatureSet `json:"set"`
	From     int64               `json:"from"` // Unix microseconds, inclusive
	To       int64               `json:"to"`   // Unix microseconds, exclusive
	MaxTiles int                 `json:"max_tiles"`

	in, out beam.Counter
	seed    maphash.Seed
	workers []*tileWorker
	tiles   atomic.Int64 // tiles the workers hold
}

// tileWorker folds the events of its entities into their TileSets.
type tileWorker struct {
	jobs    chan tileJob
	pending []schemas.Event // the next batch, filled by the bundle
}

// tileJob is events to fold in, or, with flush set, a request to encode
// every set, send them on flush and forget them.
type tileJob struct {
	events []schemas.Event
	flush  chan<- flushedSets
}

type flushedSets struct {
	keys []string
	encs [][]byte
	err  error
}

func (fn *bundleTilesFn) Setup() {
	fn.in = beam.NewCounter(transforms.MetricsNamespace, fn.Set.Name+"_events_in_range")
	fn.out = beam.NewCounter(transforms.MetricsNamespace, fn.Set.Name+"_events_out_of_range")
	fn.seed = maphash.MakeSeed()
}

func (fn *bundleTilesFn) StartBundle(_ func(string, []byte)) {
	fn.stop() // the workers of a bundle that failed
	n := min(runtime.GOMAXPROCS(0), maxTileWorkers)
	fn.workers = make([]*tileWorker, n)
	for i := range fn.workers {
		w := &tileWorker{jobs: make(chan tileJob, 4)}
		fn.workers[i] = w
		go w.run(fn.Set, &fn.tiles)
	}
}

func (fn *bundleTilesFn) ProcessElement(ctx context.Context, e schemas.Event, emit func(string, []byte)) error {
	if e.Time < fn.From || e.Time >= fn.To {
		fn.out.Inc(ctx, 1)
		return nil
	}
	fn.in.Inc(ctx, 1)
	w := fn.workers[maphash.String(fn.seed, e.Key)%uint64(len(fn.workers))]
	w.pending = append(w.pending, e)
	if len(w.pending) < tileBatch {
		return nil
	}
	w.jobs <- tileJob{events: w.pending}
	w.pending = make([]schemas.Event, 0, tileBatch)
	if fn.tiles.Load() >= int64(fn.MaxTiles) {
		return fn.flush(emit)
	}
	return nil
}

func (fn *bundleTilesFn) FinishBundle(emit func(string, []byte)) error {
	err := fn.flush(emit)
	fn.stop()
	return err
}

func (fn *bundleTilesFn) Teardown() { fn.stop() }

// flush has every worker fold its pending events, encode its sets and hand
// them over, and emits them.
func (fn *bundleTilesFn) flush(emit func(string, []byte)) error {
	results := make(chan flushedSets, len(fn.workers))
	for _, w := range fn.workers {
		if len(w.pending) > 0 {
			w.jobs <- tileJob{events: w.pending}
			w.pending = make([]schemas.Event, 0, tileBatch)
		}
		w.jobs <- tileJob{flush: results}
	}
	var err error
	for range fn.workers {
		r := <-results
		if r.err != nil {
			err = r.err
			continue
		}
		for i, k := range r.keys {
			emit(k, r.encs[i])
		}
	}
	return err
}

// stop ends the workers, if any.
func (fn *bundleTilesFn) stop() {
	for _, w := range fn.workers {
		close(w.jobs)
	}
	fn.workers = nil
	fn.tiles.Store(0)
}

func (w *tileWorker) run(set *schemas.FeatureSet, tiles *atomic.Int64) {
	sets := make(map[string]*transforms.TileSet)
	for job := range w.jobs {
		if job.flush != nil {
			job.flush <- encodeSets(set, sets, tiles)
			continue
		}
		added := 0
		for _, e := range job.events {
			ts, ok := sets[e.Key]
			if !ok {
				ts = transforms.NewTileSet()
				sets[e.Key] = ts
			}
			n := len(ts.Tiles)
			ts.Add(set, e)
			added += len(ts.Tiles) - n
		}
		tiles.Add(int64(added))
	}
}

// encodeSets encodes the sets, empties the map and takes their tiles off
// the count.
func encodeSets(set *schemas.FeatureSet, sets map[string]*transforms.TileSet, tiles *atomic.Int64) flushedSets {
	out := flushedSets{keys: make([]string, 0, len(sets)), encs: make([][]byte, 0, len(sets))}
	n := 0
	for k, ts := range sets {
		b, err := ts.MarshalBinary()
		if err != nil {
			return flushedSets{err: fmt.Errorf("tiles of %s/%s: %w", set.Name, k, err)}
		}
		out.keys = append(out.keys, k)
		out.encs = append(out.encs, b)
		n += len(ts.Tiles)
		delete(sets, k) // its memory can go while the others are encoded
	}
	tiles.Add(-int64(n))
	return out
}

// rowsFn turns the encoded TileSets of an entity into row mutations.
type rowsFn struct {
	Set    *schemas.FeatureSet `json:"set"`
	Family string              `json:"family"`
}

func (fn *rowsFn) ProcessElement(entity string, sets func(*[]byte) bool, emit func(transforms.RowMutation)) error {
	var encs [][]byte
	var enc []byte
	for sets(&enc) {
		encs = append(encs, enc)
	}
	var tiles []transforms.EncodedTile
	var err error
	if len(encs) == 1 {
		tiles, err = transforms.SplitEncoded(encs[0])
	} else {
		tiles, err = transforms.MergeEncoded(encs...)
	}
	if err != nil {
		return fmt.Errorf("tiles of %s/%s: %w", fn.Set.Name, entity, err)
	}
	return transforms.EmitEncodedRows(fn.Set, fn.Family, entity, tiles, MaxRowCells, emit)
}
