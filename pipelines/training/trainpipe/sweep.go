package trainpipe

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms/aggregate"
)

// Query asks for the features of one entity at one instant: those of one
// spine row.
type Query struct {
	ID string // the spine row's
	At int64  // the row's instant, Unix microseconds
	// Row is the spine row's values when the run has a single feature set,
	// so that the sweep emits whole output rows and no join by ID is needed;
	// nil otherwise.
	Row []schemas.Value
}

// Sweep computes the features feats (output indexes, schemas.FeatureSet.Output:
// stored features and derived ones) of one
// entity at the instant of every query, from the entity's events, under
// the window contract: the value at `at` aggregates the events with time
// in Feature.Span(at) = [TileStart(at) − Window, at).
//
// It computes it the way the server reads it, so that the two agree bit
// for bit: per feature, the events are folded into whole tiles with the
// aggregation algebra, each tile's partial goes through its storage
// encoding (as a Bigtable cell does), and the value is aggregate.For(f)
// merged with the head partial (the events in [TileStart(at), at)) and then
// with the whole tiles from the newest down to TileStart(at) − Window, the
// order in which Bigtable returns a column's cells.
//
// The work is a sort and one sweep per feature: events and queries are
// sorted by time, each event is added to its tile once and to at most one
// head partial; each query merges at most Window/Tile + 1 partials. Memory
// is the entity's events plus the tiles of one window per feature.
//
// Events are ordered by time and, among equal times, by their values, so
// the result does not depend on the order they come in. emit receives, per
// query (in order of time), its values, one per feature of feats, a null
// Value where the server says NOT_FOUND. A derived feature is computed from
// the values of its inputs at the same instant by the server's evaluator,
// schemas.FeatureSet.EvalDerived.
func Sweep(set *schemas.FeatureSet, feats []int, events []schemas.Event, queries []Query, emit func(q Query, vals []schemas.Value)) error {
	slices.SortFunc(events, compareEvents)
	slices.SortStableFunc(queries, func(a, b Query) int { return cmp.Compare(a.At, b.At) })
	out := make([][]schemas.Value, len(queries))
	for i := range out {
		out[i] = make([]schemas.Value, len(feats))
	}
	stored := feats
	var all [][]schemas.Value // per query, every output (see EvalDerived), when feats has derived ones
	if slices.ContainsFunc(feats, func(o int) bool { return o >= len(set.Features) }) {
		stored = set.StoredInputs(feats)
		all = make([][]schemas.Value, len(queries))
		for i := range all {
			all[i] = make([]schemas.Value, set.Outputs())
		}
	}
	for slot, fi := range stored {
		put := func(qi int, v schemas.Value) { out[qi][slot] = v }
		if all != nil {
			put = func(qi int, v schemas.Value) { all[qi][fi] = v }
		}
		if err := sweepFeature(set.Features[fi], events, queries, put); err != nil {
			return fmt.Errorf("feature %s.%s: %w", set.Name, set.Features[fi].Name, err)
		}
	}
	for i, q := range queries {
		if all != nil {
			set.EvalDerived(all[i], nil)
			for slot, o := range feats {
				out[i][slot] = all[i][o]
			}
		}
		emit(q, out[i])
	}
	return nil
}

// tilePartial is one whole tile of a feature, as the server decodes it.
type tilePartial struct {
	start int64
	p     aggregate.Partial
}

// sweepFeature computes feature f at every query (sorted by time) from
// events (sorted by time) and calls set(query index, value).
func sweepFeature(f schemas.Feature, events []schemas.Event, queries []Query, set func(int, schemas.Value)) error {
	window := f.Window.Microseconds()
	empty, emptyOK := aggregate.For(f).Result()
	value := func(e schemas.Event) schemas.Value {
		if f.FieldIndex < 0 {
			return schemas.Value{}
		}
		return e.Values[f.FieldIndex]
	}
	var (
		tiles     []tilePartial // whole tiles, oldest first; tiles[first:] are live
		first     int
		next      int               // the first event not yet in a whole tile
		cur       aggregate.Partial // the tile being filled, of start curStart
		curStart  int64
		head      aggregate.Partial // events[headFrom:headNext] of the head tile
		headStart int64
		headNext  int
	)
	closeTile := func() error {
		if cur == nil {
			return nil
		}
		p, err := roundTrip(cur)
		if err != nil {
			return fmt.Errorf("tile at %d: %w", curStart, err)
		}
		tiles = append(tiles, tilePartial{curStart, p})
		cur = nil
		return nil
	}
	headStart = -1 << 63
	for qi, q := range queries {
		h := schemas.TileStart(q.At, f.Tile)
		// Whole tiles: every event before the head tile.
		for ; next < len(events) && events[next].Time < h; next++ {
			e := events[next]
			if !f.Keeps(e) {
				continue
			}
			s := schemas.TileStart(e.Time, f.Tile)
			if cur != nil && s != curStart {
				if err := closeTile(); err != nil {
					return err
				}
			}
			if cur == nil {
				cur, curStart = aggregate.For(f), s
			}
			cur.Add(value(e), e.Time)
		}
		if err := closeTile(); err != nil { // it ends at or before h: whole
			return err
		}
		oldest := h - window
		for first < len(tiles) && tiles[first].start < oldest {
			tiles[first] = tilePartial{}
			first++
		}
		if first > 1024 && first > len(tiles)/2 {
			tiles = append(tiles[:0], tiles[first:]...)
			first = 0
		}
		// The head: the events in [h, at), added in time order; a later
		// query in the same tile goes on from where this one stopped.
		if h != headStart {
			head, headStart, headNext = nil, h, next
		}
		for ; headNext < len(events) && events[headNext].Time < q.At; headNext++ {
			e := events[headNext]
			if !f.Keeps(e) {
				continue
			}
			if head == nil {
				head = aggregate.For(f)
			}
			head.Add(value(e), e.Time)
		}
		// The server's merge: newest cell first.
		var acc aggregate.Partial
		if head != nil {
			p, err := roundTrip(head)
			if err != nil {
				return fmt.Errorf("head tile at %d: %w", h, err)
			}
			acc = aggregate.For(f)
			if err := acc.Merge(p); err != nil {
				return err
			}
		}
		for k := len(tiles) - 1; k >= first && tiles[k].start >= oldest; k-- {
			if acc == nil {
				acc = aggregate.For(f)
			}
			if err := acc.Merge(tiles[k].p); err != nil {
				return err
			}
		}
		v, ok := empty, emptyOK
		if acc != nil {
			v, ok = acc.Result()
		}
		if !ok {
			v = schemas.Value{}
		}
		set(qi, v)
	}
	return nil
}

// roundTrip returns p as the server reads it back from its cell.
func roundTrip(p aggregate.Partial) (aggregate.Partial, error) {
	b, err := aggregate.Encode(p)
	if err != nil {
		return nil, err
	}
	return aggregate.Decode(b)
}

// compareEvents orders events by time, then by their values.
func compareEvents(a, b schemas.Event) int {
	if c := cmp.Compare(a.Time, b.Time); c != 0 {
		return c
	}
	for i := range min(len(a.Values), len(b.Values)) {
		if c := compareValues(a.Values[i], b.Values[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a.Values), len(b.Values))
}

// compareValues is a total order on values: by type, then by value (floats
// by cmp.Compare, which orders NaN first).
func compareValues(a, b schemas.Value) int {
	if c := cmp.Compare(a.Type, b.Type); c != 0 {
		return c
	}
	switch a.Type {
	case schemas.String:
		return strings.Compare(a.Str, b.Str)
	case schemas.Float64:
		return cmp.Compare(a.Float, b.Float)
	}
	return cmp.Compare(a.Int, b.Int)
}
