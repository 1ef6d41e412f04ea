package transforms

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms/aggregate"
)

// TileID names one tile of one feature of an entity: the feature's index in
// its feature set and the tile start (Unix microseconds).
type TileID struct {
	Feature int
	Start   int64
}

// TileSet holds the partial aggregates of every feature of one entity, one
// per tile touched. The batch CombineFn accumulates into it and the streaming
// pipeline keeps one per entity in state; both fold events in with Add and
// combine sets with Merge, so both compute the same tiles.
type TileSet struct {
	Tiles map[TileID]aggregate.Partial
}

// NewTileSet returns an empty TileSet.
func NewTileSet() *TileSet { return &TileSet{Tiles: make(map[TileID]aggregate.Partial)} }

// Add folds event e into the tile of every feature of set that contains its
// event time.
func (ts *TileSet) Add(set *schemas.FeatureSet, e schemas.Event) {
	for i := range set.Features {
		f := &set.Features[i]
		id := TileID{Feature: i, Start: schemas.TileStart(e.Time, f.Tile)}
		p, ok := ts.Tiles[id]
		if !ok {
			p = aggregate.For(*f)
			ts.Tiles[id] = p
		}
		var v schemas.Value
		if f.FieldIndex >= 0 {
			v = e.Values[f.FieldIndex]
		}
		p.Add(v, e.Time)
	}
}

// Merge folds other into ts. other is left unchanged only if ts does not
// share its partials; callers hand over ownership of other.
func (ts *TileSet) Merge(other *TileSet) error {
	for id, p := range other.Tiles {
		if mine, ok := ts.Tiles[id]; ok {
			if err := mine.Merge(p); err != nil {
				return fmt.Errorf("merge tile %d@%d: %w", id.Feature, id.Start, err)
			}
			continue
		}
		ts.Tiles[id] = p
	}
	return nil
}

// IDs returns the tile IDs in a stable order (feature, then start).
func (ts *TileSet) IDs() []TileID {
	ids := make([]TileID, 0, len(ts.Tiles))
	for id := range ts.Tiles {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b TileID) int {
		if a.Feature != b.Feature {
			return a.Feature - b.Feature
		}
		return int(min(max(a.Start-b.Start, -1), 1))
	})
	return ids
}

// MarshalBinary encodes the set: a count, then per tile the feature index,
// the start and the length-prefixed partial encoding, in IDs order.
func (ts *TileSet) MarshalBinary() ([]byte, error) {
	b := binary.AppendUvarint(nil, uint64(len(ts.Tiles)))
	for _, id := range ts.IDs() {
		b = binary.AppendUvarint(b, uint64(id.Feature))
		b = binary.AppendVarint(b, id.Start)
		enc, err := ts.Tiles[id].AppendBinary(nil)
		if err != nil {
			return nil, fmt.Errorf("encode tile %d@%d: %w", id.Feature, id.Start, err)
		}
		b = binary.AppendUvarint(b, uint64(len(enc)))
		b = append(b, enc...)
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary produced.
func (ts *TileSet) UnmarshalBinary(b []byte) error {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return fmt.Errorf("decode tile set: bad count")
	}
	b = b[k:]
	ts.Tiles = make(map[TileID]aggregate.Partial, n)
	for range n {
		f, k1 := binary.Uvarint(b)
		if k1 <= 0 {
			return fmt.Errorf("decode tile set: bad feature index")
		}
		b = b[k1:]
		start, k2 := binary.Varint(b)
		if k2 <= 0 {
			return fmt.Errorf("decode tile set: bad tile start")
		}
		b = b[k2:]
		l, k3 := binary.Uvarint(b)
		if k3 <= 0 || l > uint64(len(b)-k3) {
			return fmt.Errorf("decode tile set: bad partial length")
		}
		b = b[k3:]
		p, err := aggregate.Decode(b[:l])
		if err != nil {
			return fmt.Errorf("decode tile set: tile %d@%d: %w", f, start, err)
		}
		b = b[l:]
		ts.Tiles[TileID{Feature: int(f), Start: start}] = p
	}
	if len(b) != 0 {
		return fmt.Errorf("decode tile set: %d trailing bytes", len(b))
	}
	return nil
}
