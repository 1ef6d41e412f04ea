package streampipe

import (
	"context"
	"fmt"
	"strings"
	"time"

	"cloud.google.com/go/bigtable"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms"
	"github.com/tandem-fp/tandem/transforms/aggregate"
)

// entityTiles is what the streaming pipeline holds for one entity: the full
// value of each live tile (never a partial one: a tile first touched in
// this run is seeded from its stored cell), so that writing a tile writes
// its whole value and a repeated write is harmless.
//
// SeededFrom is how far back the set is known complete: a tile that starts
// at or after SeededFrom and is not in Tiles has no cell in Bigtable. A tile
// that starts before it is read from Bigtable before it is first added to.
//
// Newest is the newest event time in the entity's stored stream tiles,
// written with them as the row's schemas.QualifierNewest cell. It only
// moves forward: seeded from the stored cell, raised by every event added.
type entityTiles struct {
	Tiles      *transforms.TileSet
	SeededFrom int64
	Newest     int64
}

// storedRow is what readStored found of one entity: its stream tiles and
// the newest event time they hold (0 when no ~newest cell was read).
type storedRow struct {
	tiles  map[transforms.TileID]aggregate.Partial
	newest int64
	seq    []byte // the Dataflow variant's stream:~chain cell, nil if none
}

// noSeed is the SeededFrom of an entity never read from Bigtable.
const noSeed = int64(1<<63 - 1)

// earliestTile returns the earliest start of a tile that the events touch.
func earliestTile(set *schemas.FeatureSet, events []schemas.Event) int64 {
	first := noSeed
	for _, e := range events {
		for _, f := range set.Features {
			first = min(first, schemas.TileStart(e.Time, f.Tile))
		}
	}
	return first
}

// readStored reads the stream tiles of the given entities that start at or
// after from, decoded, and their ~newest cell when it is stamped at or after
// from (an older one is older than any event that touches a tile from
// `from` on, so it cannot raise Newest).
func readStored(ctx context.Context, tbl *bigtable.Table, set *schemas.FeatureSet, entities []string, from int64) (map[string]*storedRow, error) {
	if len(entities) == 0 {
		return nil, nil
	}
	byQualifier := make(map[string]int, len(set.Features))
	for i, f := range set.Features {
		byQualifier[schemas.FamilyStream+":"+f.Qualifier()] = i
	}
	keys := make(bigtable.RowList, len(entities))
	for i, e := range entities {
		keys[i] = schemas.RowKey(set.Name, e)
	}
	out := make(map[string]*storedRow, len(entities))
	newestColumn := schemas.FamilyStream + ":" + schemas.QualifierNewest
	seqColumn := schemas.FamilyStream + ":" + schemas.QualifierChain
	var decodeErr error
	filter := bigtable.InterleaveFilters(
		bigtable.ChainFilters(
			bigtable.FamilyFilter(schemas.FamilyStream),
			bigtable.TimestampRangeFilterMicros(bigtable.Timestamp(from), 0),
		),
		// The ~chain cell whatever its time (only the Dataflow variant writes it).
		bigtable.ChainFilters(bigtable.FamilyFilter(schemas.FamilyStream), bigtable.ColumnFilter(schemas.QualifierChain), bigtable.LatestNFilter(1)),
	)
	err := tbl.ReadRows(ctx, keys, func(r bigtable.Row) bool {
		_, entity, _ := strings.Cut(r.Key(), "#")
		row := &storedRow{tiles: map[transforms.TileID]aggregate.Partial{}}
		out[entity] = row
		for _, it := range r[schemas.FamilyStream] {
			if it.Column == newestColumn {
				t, ok := schemas.DecodeNewest(it.Value)
				if !ok {
					decodeErr = fmt.Errorf("decode stored %s of %s: %d bytes, want 8", it.Column, r.Key(), len(it.Value))
					return false
				}
				row.newest = max(row.newest, t)
				continue
			}
			if it.Column == seqColumn {
				row.seq = it.Value
				continue
			}
			fi, ok := byQualifier[it.Column]
			if !ok {
				continue // a feature no longer defined, or an old tile size
			}
			p, err := aggregate.Decode(it.Value)
			if err != nil {
				decodeErr = fmt.Errorf("decode stored tile %s %s@%d: %w", r.Key(), it.Column, it.Timestamp, err)
				return false
			}
			row.tiles[transforms.TileID{Feature: fi, Start: int64(it.Timestamp)}] = p
		}
		return true
	}, bigtable.RowFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("read stored stream tiles of %d %s entities (first %q): %w", len(entities), set.Name, entities[0], err)
	}
	return out, decodeErr
}

// missing returns the tiles that events touch and that must be read from
// Bigtable before they are added to: those et does not hold that start
// before SeededFrom, and the earliest start among them (noSeed if none).
func (et *entityTiles) missing(set *schemas.FeatureSet, events []schemas.Event) (from int64, ids map[transforms.TileID]bool) {
	from = noSeed
	for _, e := range events {
		for i, f := range set.Features {
			id := transforms.TileID{Feature: i, Start: schemas.TileStart(e.Time, f.Tile)}
			if id.Start >= et.SeededFrom {
				continue
			}
			if _, ok := et.Tiles.Tiles[id]; ok {
				continue
			}
			if ids == nil {
				ids = map[transforms.TileID]bool{}
			}
			ids[id] = true
			from = min(from, id.Start)
		}
	}
	return from, ids
}

// seed folds stored tiles into et. With ids nil (an entity first seen) it
// takes every stored tile from `from` on and sets SeededFrom to from;
// otherwise only the tiles in ids. It never replaces a tile et holds: that
// one is already complete.
func (et *entityTiles) seed(stored *storedRow, from int64, ids map[transforms.TileID]bool) {
	if stored == nil {
		stored = &storedRow{}
	}
	et.Newest = max(et.Newest, stored.newest)
	for id, p := range stored.tiles {
		if id.Start < from || id.Start >= et.SeededFrom || (ids != nil && !ids[id]) {
			continue
		}
		if _, ok := et.Tiles.Tiles[id]; !ok {
			et.Tiles.Tiles[id] = p
		}
	}
	if ids == nil {
		et.SeededFrom = min(et.SeededFrom, from)
	}
}

// add folds events into et and records the tiles they touch in dirty.
func (et *entityTiles) add(set *schemas.FeatureSet, events []schemas.Event, dirty map[transforms.TileID]bool) {
	for _, e := range events {
		et.Tiles.Add(set, e)
		et.Newest = max(et.Newest, e.Time)
		for i, f := range set.Features {
			dirty[transforms.TileID{Feature: i, Start: schemas.TileStart(e.Time, f.Tile)}] = true
		}
	}
}

// gc drops the tiles that ended at or before horizon (no event can reach
// them any more) and raises SeededFrom past them, so that a tile dropped
// and touched again is read back from Bigtable. It reports whether et is
// now empty.
func (et *entityTiles) gc(set *schemas.FeatureSet, horizon int64) bool {
	for id := range et.Tiles.Tiles {
		if id.Start+set.Features[id.Feature].Tile.Microseconds() <= horizon {
			delete(et.Tiles.Tiles, id)
			et.SeededFrom = max(et.SeededFrom, id.Start+1)
		}
	}
	return len(et.Tiles.Tiles) == 0
}

// mutation is the write of et's dirty tiles to the stream family, with the
// entity's ~newest cell in the same row mutation.
func (et *entityTiles) mutation(set *schemas.FeatureSet, entity string, dirty map[transforms.TileID]bool) (transforms.RowMutation, error) {
	m := transforms.RowMutation{RowKey: schemas.RowKey(set.Name, entity), Cells: make([]transforms.Cell, 0, len(dirty))}
	for id := range dirty {
		p := et.Tiles.Tiles[id]
		enc, err := p.AppendBinary(nil)
		if err != nil {
			return m, fmt.Errorf("encode tile %s/%s/%s@%d: %w", set.Name, entity, set.Features[id.Feature].Name, id.Start, err)
		}
		m.Cells = append(m.Cells, transforms.Cell{
			Family:    schemas.FamilyStream,
			Qualifier: set.Features[id.Feature].Qualifier(),
			Timestamp: id.Start,
			Value:     enc,
		})
	}
	if len(dirty) > 0 {
		m.Cells = append(m.Cells, NewestCell(et.Newest))
	}
	return m, nil
}

// NewestCell is the stream family's schemas.QualifierNewest cell of an
// entity whose newest event time is t (Unix microseconds): stamped t
// truncated to the millisecond, replacing the previous one.
func NewestCell(t int64) transforms.Cell {
	return transforms.Cell{
		Family:    schemas.FamilyStream,
		Qualifier: schemas.QualifierNewest,
		Timestamp: schemas.TileStart(t, time.Millisecond),
		Value:     schemas.EncodeNewest(t),
		Replace:   true,
	}
}
