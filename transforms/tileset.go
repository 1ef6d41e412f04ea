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
// event time and whose filter keeps it (schemas.Feature.Keeps); a feature
// whose filter drops e gets no tile from it.
func (ts *TileSet) Add(set *schemas.FeatureSet, e schemas.Event) {
	for i := range set.Features {
		f := &set.Features[i]
		if !f.Keeps(e) {
			continue
		}
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
	slices.SortFunc(ids, compareIDs)
	return ids
}

// compareIDs orders tile IDs by feature, then start.
func compareIDs(a, b TileID) int {
	if a.Feature != b.Feature {
		return a.Feature - b.Feature
	}
	return int(min(max(a.Start-b.Start, -1), 1))
}

// MarshalBinary encodes the set: a count, then per tile the feature index,
// the start and the length-prefixed partial encoding, in IDs order.
func (ts *TileSet) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 32*len(ts.Tiles)+binary.MaxVarintLen64)
	b = binary.AppendUvarint(b, uint64(len(ts.Tiles)))
	var enc []byte // each partial's encoding, in one reused buffer
	for _, id := range ts.IDs() {
		b = binary.AppendUvarint(b, uint64(id.Feature))
		b = binary.AppendVarint(b, id.Start)
		var err error
		if enc, err = ts.Tiles[id].AppendBinary(enc[:0]); err != nil {
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

// EncodedTile is one tile of an encoded TileSet: its ID and the encoding of
// its partial aggregate.
type EncodedTile struct {
	ID      TileID
	Partial []byte
}

// SplitEncoded returns the tiles of a TileSet encoding (MarshalBinary), in
// its order, without decoding the partials; they share enc's memory.
func SplitEncoded(enc []byte) ([]EncodedTile, error) {
	n, k := binary.Uvarint(enc)
	if k <= 0 || n > uint64(len(enc)) {
		return nil, fmt.Errorf("decode tile set: bad count")
	}
	enc = enc[k:]
	tiles := make([]EncodedTile, 0, n)
	for range n {
		f, k1 := binary.Uvarint(enc)
		if k1 <= 0 || f > 1<<31 {
			return nil, fmt.Errorf("decode tile set: bad feature index")
		}
		enc = enc[k1:]
		start, k2 := binary.Varint(enc)
		if k2 <= 0 {
			return nil, fmt.Errorf("decode tile set: bad tile start")
		}
		enc = enc[k2:]
		l, k3 := binary.Uvarint(enc)
		if k3 <= 0 || l > uint64(len(enc)-k3) {
			return nil, fmt.Errorf("decode tile set: bad partial length")
		}
		enc = enc[k3:]
		tiles = append(tiles, EncodedTile{ID: TileID{Feature: int(f), Start: start}, Partial: enc[:l:l]})
		enc = enc[l:]
	}
	if len(enc) != 0 {
		return nil, fmt.Errorf("decode tile set: %d trailing bytes", len(enc))
	}
	return tiles, nil
}

// MergeEncoded merges TileSet encodings (MarshalBinary) of one entity and
// returns the tiles of the merge in IDs order. Only a tile that several
// encodings hold is decoded, merged and encoded again; the others keep
// their encodings, shared with the inputs. Sets built from disjoint time
// ranges, such as the bundles of a batch run over time-ordered files, share
// few tiles, so merging them costs little more than reading them.
func MergeEncoded(encs ...[]byte) ([]EncodedTile, error) {
	var all []EncodedTile
	for _, enc := range encs {
		tiles, err := SplitEncoded(enc)
		if err != nil {
			return nil, err
		}
		all = append(all, tiles...)
	}
	slices.SortStableFunc(all, func(a, b EncodedTile) int { return compareIDs(a.ID, b.ID) })
	out := all[:0]
	for i := 0; i < len(all); {
		j := i + 1
		for j < len(all) && all[j].ID == all[i].ID {
			j++
		}
		if j == i+1 {
			out = append(out, all[i])
			i = j
			continue
		}
		p, err := aggregate.Decode(all[i].Partial)
		if err != nil {
			return nil, fmt.Errorf("decode tile %d@%d: %w", all[i].ID.Feature, all[i].ID.Start, err)
		}
		for _, t := range all[i+1 : j] {
			q, err := aggregate.Decode(t.Partial)
			if err != nil {
				return nil, fmt.Errorf("decode tile %d@%d: %w", t.ID.Feature, t.ID.Start, err)
			}
			if err := p.Merge(q); err != nil {
				return nil, fmt.Errorf("merge tile %d@%d: %w", t.ID.Feature, t.ID.Start, err)
			}
		}
		enc, err := p.AppendBinary(nil)
		if err != nil {
			return nil, fmt.Errorf("encode tile %d@%d: %w", all[i].ID.Feature, all[i].ID.Start, err)
		}
		out = append(out, EncodedTile{ID: all[i].ID, Partial: enc})
		i = j
	}
	return out, nil
}
