package serving

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/bigtable"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms/aggregate"
)

// The read path. A request for features F of entities E at instant `at` is
// one Bigtable read: ReadRow for one entity, ReadRows over the row list of E
// for many. Its filter is the interleave of two branches:
//
//   - the tiles: a chain of
//     1. a timestamp (tile start) range [min over F of first, at]: first is
//     the oldest tile of a feature's window, WindowTiles(at) = (first,
//     head), the window contract of schemas.Feature.Span; no tile that
//     starts after `at` belongs to any window, since head ≤ at;
//     2. a per-column limit of the N newest cells, N = max over F of
//     Window/Tile + 1: a feature's window holds at most Window/Tile whole
//     tiles and the head tile, and they are the newest cells of its column
//     up to `at`;
//     3. when F is not every feature of the set, column ranges selecting
//     the qualifiers of F (one range per run of requested qualifiers that
//     are adjacent in sorted order, in each of the two data families);
//   - the entity's stream:~newest cell (schemas.QualifierNewest), one cell.
//
// So a read touches at most
//
//	2 · N cells per requested feature + 1, N = max over F of Window/Tile + 1 ≤ schemas.MaxTilesPerWindow + 1
//
// (N on each of the batch and the stream side; exactly 2·(Window/Tile + 1)
// when F shares one window and tile size), and only cells within the
// longest requested window and its head tile; when F is every feature,
// also up to 2·N cells of each qualifier the definition no longer has (a
// feature whose tile size changed), until GC removes them. The filter uses
// no regular expression, which keeps it cheap on Bigtable and on the
// emulator alike.
//
// The merge takes, for each feature, the cells of its own window
// [first, head]: from the batch family those with start < T_b and from the
// stream family those with start >= T_b, where T_b is the feature set's
// batch watermark (no batch cell at all when it was never written); it
// decodes each with aggregate.Decode and merges them into
// aggregate.For(feature), whose Result is the value, in a fixed order: from
// the newest tile (the head) to the oldest, as the training pipeline does,
// so that float results agree bit for bit. The whole tiles
// [first, head) always count. The head tile counts only when it cannot hold
// an event at or after `at`:
//
//   - at == head (on a tile boundary): the head has no events before at; the
//     tile is left out and the value is exact at `at`;
//   - the head tile is a stream tile (head >= T_b) and the row's ~newest,
//     written in the same row mutation as its tiles, is before `at`: the
//     tile is the head, and the value is exact at `at` (every real-time
//     read);
//   - otherwise (a batch head tile, a stream head tile that may hold later
//     events, or data written before ~newest existed) the tile is left out:
//     the value is the window's value at `head`, exact at that instant,
//     which the response says as the value's as_of. Never a later event.
//
// No head tile at all means the entity has no stored event in it: the
// value is exact at `at`.

// setState is a loaded feature set and what the server derives from it
// once: lookups, the definition's JSON, the read plan of all features.
type setState struct {
	fs          *schemas.FeatureSet
	json        []byte         // GET /v1/featuresets/{name}
	byQualifier map[string]int // qualifier → feature index
	byRank      []int          // position in sorted qualifier order → feature index
	prefix      [][]byte       // feature index → `"name":{"value":`
	empty       []schemas.Value
	emptyOK     []bool
	all         *readShape
}

// newSetState derives the state of fs. The definition's JSON gets
// "fresh_for": freshFor, the freshness expectation this server judges STALE
// by (FeatureSet.FreshFor with its --stale_after), so that a client can
// apply the status rule to a set's freshness.
func newSetState(fs *schemas.FeatureSet, exposeSources bool, freshFor time.Duration) (*setState, error) {
	st := &setState{fs: fs, byQualifier: make(map[string]int, len(fs.Features))}
	pub := *fs
	pub.File = "" // a server path, not part of the definition
	if !exposeSources {
		pub.Sources = schemas.Sources{} // the deployment's tables, paths and subscriptions
	}
	b, err := pub.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encode feature set %s: %w", fs.Name, err)
	}
	b = append(b[:len(b)-1], `,"fresh_for":`...) // b is a JSON object: replace its closing brace
	b = appendString(b, schemas.FormatDuration(freshFor))
	st.json = append(b, "}\n"...)
	n := len(fs.Features)
	st.byRank = make([]int, n)
	st.prefix = make([][]byte, n)
	st.empty, st.emptyOK = make([]schemas.Value, n), make([]bool, n)
	for i, f := range fs.Features {
		q := f.Qualifier()
		if _, dup := st.byQualifier[q]; dup {
			return nil, fmt.Errorf("feature set %s: two features with qualifier %q", fs.Name, q)
		}
		st.byQualifier[q] = i
		st.byRank[i] = i
		st.prefix[i] = append(appendString(nil, f.Name), `:{"value":`...)
		st.empty[i], st.emptyOK[i] = aggregate.For(f).Result()
	}
	slices.SortFunc(st.byRank, func(a, b int) int {
		return strings.Compare(fs.Features[a].Qualifier(), fs.Features[b].Qualifier())
	})
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	st.all = st.shape(all)
	return st, nil
}

// readShape is the at-independent part of a read plan: which features, in
// which order, and the column ranges of the filter.
type readShape struct {
	feats    []int         // feature indexes in response order
	slot     []int         // feature index → position in feats, or -1
	maxWin   time.Duration // the longest Window + Tile of feats: how far back a read goes
	maxTiles int           // N: the largest Window/Tile + 1 of feats
	columns  []columnRange // nil when feats is every feature
}

// columnRange selects the qualifiers [lo, hi).
type columnRange struct{ lo, hi string }

// shape plans a read of the given features (indexes, no duplicates).
func (st *setState) shape(feats []int) *readShape {
	sh := &readShape{feats: feats, slot: make([]int, len(st.fs.Features))}
	for i := range sh.slot {
		sh.slot[i] = -1
	}
	for pos, fi := range feats {
		sh.slot[fi] = pos
		f := st.fs.Features[fi]
		sh.maxWin = max(sh.maxWin, f.Window+f.Tile)
		sh.maxTiles = max(sh.maxTiles, f.Tiles()+1)
	}
	if len(feats) == len(st.fs.Features) {
		return sh
	}
	// Walk the qualifiers in sorted order, cutting a run wherever the next
	// qualifier is not requested.
	open := false
	for _, fi := range st.byRank {
		if sh.slot[fi] < 0 {
			open = false
			continue
		}
		q := st.fs.Features[fi].Qualifier()
		if open {
			sh.columns[len(sh.columns)-1].hi = q + "\x00"
			continue
		}
		sh.columns = append(sh.columns, columnRange{lo: q, hi: q + "\x00"})
		open = true
	}
	return sh
}

// plan is a read of some features of a feature set at one instant.
type plan struct {
	st          *setState
	shape       *readShape
	at          time.Time
	atMicros    int64
	first, head []int64 // per slot: the window's first tile start and its head tile start
	filter      bigtable.Filter
}

// newestColumn is the stream family's ~newest column as a ReadItem names it.
const newestColumn = schemas.FamilyStream + ":" + schemas.QualifierNewest

func (st *setState) plan(sh *readShape, at time.Time) *plan {
	p := &plan{st: st, shape: sh, at: at, atMicros: at.UnixMicro(), first: make([]int64, len(sh.feats)), head: make([]int64, len(sh.feats))}
	oldest := int64(math.MaxInt64)
	for pos, fi := range sh.feats {
		p.first[pos], p.head[pos] = st.fs.Features[fi].WindowTiles(at)
		oldest = min(oldest, p.first[pos])
	}
	// Bigtable timestamps in filters have millisecond granularity (the
	// client truncates them); tile starts are whole seconds, so "start ≤ at"
	// is "start < at truncated to the millisecond + 1ms".
	end := bigtable.Time(at).TruncateToMilliseconds() + 1000
	chain := []bigtable.Filter{
		bigtable.TimestampRangeFilterMicros(bigtable.Timestamp(oldest), end),
		bigtable.LatestNFilter(sh.maxTiles),
	}
	if sh.columns != nil {
		ranges := make([]bigtable.Filter, 0, 2*len(sh.columns))
		for _, fam := range [...]string{schemas.FamilyBatch, schemas.FamilyStream} {
			for _, c := range sh.columns {
				ranges = append(ranges, bigtable.ColumnRangeFilter(fam, c.lo, c.hi))
			}
		}
		chain = append(chain, bigtable.InterleaveFilters(ranges...))
	}
	p.filter = bigtable.InterleaveFilters(
		bigtable.ChainFilters(chain...),
		bigtable.ChainFilters(
			bigtable.ColumnRangeFilter(schemas.FamilyStream, schemas.QualifierNewest, schemas.QualifierNewest+"\x00"),
			bigtable.LatestNFilter(1),
		),
	)
	return p
}

// result is one feature's merged value.
type result struct {
	v    schemas.Value
	ok   bool  // false: the op has no value over the window (NOT_FOUND)
	asOf int64 // 0: exact at the read's at; else the earlier instant (Unix µs) it is exact at
}

// merge folds the cells of row into one result per requested feature,
// written to out (len(shape.feats)). A nil row is an entity without data.
func (p *plan) merge(row bigtable.Row, fresh Freshness, out []result) error {
	st, sh := p.st, p.shape
	hasTb := !fresh.BatchWatermark.IsZero()
	tb := fresh.BatchWatermark.UnixMicro()
	// The row's ~newest sorts after every feature column of the stream
	// family: read it first, so that each head tile is judged when met.
	newest, hasNewest := int64(0), false
	stream := row[schemas.FamilyStream]
	for i := len(stream) - 1; i >= 0 && stream[i].Column == newestColumn; i-- {
		if newest, hasNewest = schemas.DecodeNewest(stream[i].Value); !hasNewest {
			return fmt.Errorf("decode %s of %s: %d bytes, want 8", stream[i].Column, stream[i].Row, len(stream[i].Value))
		}
	}
	headOK := hasNewest && newest < p.atMicros // a stream head tile holds no event at or after at
	for pos := range sh.feats {
		out[pos] = result{}
	}
	var accs []aggregate.Partial
	// Stream, then batch, each column newest cell first: every feature's
	// tiles are merged from the newest (the head) to the oldest, a fixed
	// order that the training pipeline follows too, so floats agree bit
	// for bit.
	for _, fam := range [...]string{schemas.FamilyStream, schemas.FamilyBatch} {
		batch := fam == schemas.FamilyBatch
		var prevCol string
		var prevTS bigtable.Timestamp
		for _, it := range row[fam] {
			if it.Column == prevCol && it.Timestamp == prevTS {
				continue // a cell that two filter branches both returned
			}
			prevCol, prevTS = it.Column, it.Timestamp
			if len(it.Column) <= len(fam) || it.Column == newestColumn {
				continue
			}
			fi, ok := st.byQualifier[it.Column[len(fam)+1:]]
			if !ok {
				continue
			}
			pos := sh.slot[fi]
			ts := int64(it.Timestamp)
			if pos < 0 || ts < p.first[pos] || ts > p.head[pos] || ts == p.atMicros {
				continue // outside the window, or a head tile after a boundary `at`
			}
			if batch && (!hasTb || ts >= tb) || !batch && hasTb && ts < tb {
				continue
			}
			if ts == p.head[pos] && (batch || !headOK) {
				// A head tile that may hold an event at or after at: the
				// value is the window's at the tile's start.
				out[pos].asOf = ts
				continue
			}
			part, err := aggregate.Decode(it.Value)
			if err != nil {
				return fmt.Errorf("decode tile %s %s@%d: %w", it.Row, it.Column, ts, err)
			}
			if accs == nil {
				accs = make([]aggregate.Partial, len(sh.feats))
			}
			if accs[pos] == nil {
				accs[pos] = aggregate.For(st.fs.Features[fi])
			}
			if err := accs[pos].Merge(part); err != nil {
				return fmt.Errorf("merge tile %s %s@%d: %w", it.Row, it.Column, ts, err)
			}
		}
	}
	for pos, fi := range sh.feats {
		if accs == nil || accs[pos] == nil {
			out[pos].v, out[pos].ok = st.empty[fi], st.emptyOK[fi]
			continue
		}
		out[pos].v, out[pos].ok = accs[pos].Result()
	}
	return nil
}

// bounded runs f and returns its error, or returns early with ErrUnavailable
// when ctx is done first: the Bigtable client can overrun a deadline by a
// retry's backoff, and a 503 must reach the client within the request
// deadline. f keeps running until the client returns (soon, as ctx is done),
// so after an early return the caller must not touch what f writes.
func bounded(ctx context.Context, op string, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return unavailable(op, ctx.Err())
	}
}

// readOne reads and merges one entity.
func (s *Server) readOne(ctx context.Context, p *plan, entity string, fresh Freshness, out []result) error {
	key := schemas.RowKey(p.st.fs.Name, entity)
	start := time.Now()
	row, err := s.tbl.ReadRow(ctx, key, bigtable.RowFilter(p.filter))
	if err != nil {
		s.m.bigtableError(opReadRow)
		return bigtableError(fmt.Sprintf("read tiles of %s", key), err)
	}
	s.m.bigtableRead(opReadRow, time.Since(start))
	return p.merge(row, fresh, out)
}

// minChunk is the fewest rows readMany gives one of its parallel reads.
const minChunk = 25

// readMany reads and merges entities (unique) with ReadRows over their row
// list: one read, or up to Config.ReadParallelism reads of at least
// minChunk rows each, over contiguous ranges of the sorted keys, run in
// parallel. out[i] receives entity i's results.
func (s *Server) readMany(ctx context.Context, p *plan, entities []string, fresh Freshness, out [][]result) error {
	keys := make([]string, len(entities))
	index := make(map[string]int, len(entities))
	for i, e := range entities {
		keys[i] = schemas.RowKey(p.st.fs.Name, e)
		index[keys[i]] = i
	}
	slices.Sort(keys)
	n := min(s.cfg.ReadParallelism, (len(keys)+minChunk-1)/minChunk)
	if n <= 1 {
		return s.readRows(ctx, p, keys, index, fresh, out)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for c := range n {
		part := keys[c*len(keys)/n : (c+1)*len(keys)/n]
		wg.Go(func() {
			if errs[c] = s.readRows(ctx, p, part, index, fresh, out); errs[c] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return errors.Join(errs...)
}

// readRows reads and merges the rows keys (a subset of index's keys).
func (s *Server) readRows(ctx context.Context, p *plan, keys []string, index map[string]int, fresh Freshness, out [][]result) error {
	seen := make(map[string]bool, len(keys))
	var mergeErr error
	start := time.Now()
	err := s.tbl.ReadRows(ctx, bigtable.RowList(keys), func(row bigtable.Row) bool {
		k := row.Key()
		i, ok := index[k]
		if !ok || seen[k] {
			return true
		}
		seen[k] = true
		mergeErr = p.merge(row, fresh, out[i])
		return mergeErr == nil
	}, bigtable.RowFilter(p.filter))
	if err != nil {
		s.m.bigtableError(opReadRows)
		return bigtableError(fmt.Sprintf("read tiles of %d entities of %s", len(keys), p.st.fs.Name), err)
	}
	if mergeErr != nil {
		return mergeErr
	}
	s.m.bigtableRead(opReadRows, time.Since(start))
	for _, k := range keys {
		if !seen[k] {
			if err := p.merge(nil, fresh, out[index[k]]); err != nil {
				return err
			}
		}
	}
	return nil
}

// ReadFilter returns the Bigtable row filter that the server sends to read
// the given features of fs (all when features is empty) at instant at: the
// cells a bare Bigtable client must read to compute the same values. It
// returns a *RequestError for an unknown feature.
func ReadFilter(fs *schemas.FeatureSet, features []string, at time.Time) (bigtable.Filter, error) {
	st, err := newSetState(fs, false, 0)
	if err != nil {
		return nil, err
	}
	sh, err := st.shapeFor(features)
	if err != nil {
		return nil, err
	}
	return st.plan(sh, at).filter, nil
}
