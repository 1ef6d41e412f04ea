package transforms

import (
	"fmt"
	"reflect"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/tandem-fp/tandem/schemas"
)

func init() {
	beam.RegisterCoder(reflect.TypeOf((*TileSet)(nil)), encodeTileSet, decodeTileSet)
	// Shims, so that the coder's functions are called without reflection.
	register.Function1x2[*TileSet, []byte, error](encodeTileSet)
	register.Function1x2[[]byte, *TileSet, error](decodeTileSet)
	register.Function1x2[schemas.Event, string, schemas.Event](keyByEntity)
	register.Combiner3[*TileSet, schemas.Event, *TileSet](&tileCombineFn{})
	register.DoFn3x1[string, *TileSet, func(Tile), error](&explodeTilesFn{})
	register.Emitter1[Tile]()
	register.DoFn2x1[Tile, func(RowMutation), error](&toMutationsFn{})
	register.Emitter1[RowMutation]()
}

func encodeTileSet(ts *TileSet) ([]byte, error) { return ts.MarshalBinary() }

func decodeTileSet(b []byte) (*TileSet, error) {
	ts := &TileSet{}
	if err := ts.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return ts, nil
}

// TileEvents folds events into tiles: one partial aggregate per (feature set,
// entity, feature, tile), computed by a CombineFn over the aggregation
// algebra, keyed by entity so that the partial combine before the shuffle
// ships one TileSet per entity and bundle rather than one value per feature.
// In a windowed collection it tiles each window separately.
//
//	PCollection<schemas.Event> → PCollection<Tile>
func TileEvents(s beam.Scope, set *schemas.FeatureSet, events beam.PCollection) beam.PCollection {
	s = s.Scope("transforms.TileEvents")
	keyed := beam.ParDo(s, keyByEntity, events)
	sets := beam.CombinePerKey(s, &tileCombineFn{Set: set}, keyed)
	return beam.ParDo(s, &explodeTilesFn{Set: set}, sets)
}

func keyByEntity(e schemas.Event) (string, schemas.Event) { return eventKey(e), e }

// tileCombineFn accumulates the events of one entity into a TileSet.
type tileCombineFn struct {
	Set *schemas.FeatureSet `json:"set"`
}

func (fn *tileCombineFn) CreateAccumulator() *TileSet { return NewTileSet() }

func (fn *tileCombineFn) AddInput(ts *TileSet, e schemas.Event) *TileSet {
	ts.Add(fn.Set, e)
	return ts
}

func (fn *tileCombineFn) MergeAccumulators(a, b *TileSet) *TileSet {
	if len(a.Tiles) < len(b.Tiles) {
		a, b = b, a
	}
	if err := a.Merge(b); err != nil {
		// Both sides were built by this CombineFn from one definition, so a
		// mismatch is a programming error, not bad input.
		panic(fmt.Sprintf("tandem: merge tiles of %s: %v", fn.Set.Name, err))
	}
	return a
}

func (fn *tileCombineFn) ExtractOutput(ts *TileSet) *TileSet { return ts }

// explodeTilesFn turns an entity's TileSet into one Tile per feature and tile.
type explodeTilesFn struct {
	Set *schemas.FeatureSet `json:"set"`
}

func (fn *explodeTilesFn) ProcessElement(entity string, ts *TileSet, emit func(Tile)) error {
	return EmitTiles(fn.Set, entity, ts, emit)
}

// EmitTiles encodes every tile of an entity's TileSet, in a stable order.
func EmitTiles(set *schemas.FeatureSet, entity string, ts *TileSet, emit func(Tile)) error {
	for _, id := range ts.IDs() {
		enc, err := ts.Tiles[id].AppendBinary(nil)
		if err != nil {
			return fmt.Errorf("encode tile %s/%s/%s@%d: %w", set.Name, entity, set.Features[id.Feature].Name, id.Start, err)
		}
		emit(Tile{Set: set.Name, Entity: entity, Feature: set.Features[id.Feature].Name, Start: id.Start, Partial: enc})
	}
	return nil
}

// EmitEncodedRows emits encoded tiles of an entity (SplitEncoded,
// MergeEncoded) as Bigtable mutations in family: the cells ToMutations makes
// of them (row schemas.RowKey, the feature's qualifier, cell timestamp = tile
// start, value = the partial's encoding, used as it is), but together, in
// the order given, at most maxCells cells a mutation: an entity with more
// tiles gets several mutations of its row. Writers then send one entry per
// row rather than one per tile.
func EmitEncodedRows(set *schemas.FeatureSet, family, entity string, tiles []EncodedTile, maxCells int, emit func(RowMutation)) error {
	if maxCells < 1 {
		return fmt.Errorf("emit rows of %s/%s: maxCells %d is not positive", set.Name, entity, maxCells)
	}
	quals := make([]string, len(set.Features))
	for i, f := range set.Features {
		quals[i] = f.Qualifier()
	}
	row := schemas.RowKey(set.Name, entity)
	for len(tiles) > 0 {
		n := min(len(tiles), maxCells)
		cells := make([]Cell, n)
		for i, t := range tiles[:n] {
			if t.ID.Feature < 0 || t.ID.Feature >= len(quals) {
				return fmt.Errorf("emit rows of %s/%s: tile of feature %d, the set has %d", set.Name, entity, t.ID.Feature, len(quals))
			}
			cells[i] = Cell{Family: family, Qualifier: quals[t.ID.Feature], Timestamp: t.ID.Start, Value: t.Partial}
		}
		emit(RowMutation{RowKey: row, Cells: cells})
		tiles = tiles[n:]
	}
	return nil
}

// ToMutations turns tiles into Bigtable mutations in the given column family
// (schemas.FamilyBatch or schemas.FamilyStream): one cell per tile, at the
// feature's qualifier, with cell timestamp = tile start. Writing a tile again
// overwrites its cell.
//
//	PCollection<Tile> → PCollection<RowMutation>
func ToMutations(s beam.Scope, set *schemas.FeatureSet, family string, tiles beam.PCollection) beam.PCollection {
	s = s.Scope("transforms.ToMutations")
	if family != schemas.FamilyBatch && family != schemas.FamilyStream {
		panic(fmt.Sprintf("transforms.ToMutations: family %q is not %q or %q", family, schemas.FamilyBatch, schemas.FamilyStream))
	}
	return beam.ParDo(s, &toMutationsFn{Set: set, Family: family}, tiles)
}

type toMutationsFn struct {
	Set    *schemas.FeatureSet `json:"set"`
	Family string              `json:"family"`
}

func (fn *toMutationsFn) ProcessElement(t Tile, emit func(RowMutation)) error {
	m, err := TileMutation(fn.Set, fn.Family, t)
	if err != nil {
		return err
	}
	emit(m)
	return nil
}

// TileMutation is the Bigtable mutation that stores tile t in family.
func TileMutation(set *schemas.FeatureSet, family string, t Tile) (RowMutation, error) {
	f, ok := set.Feature(t.Feature)
	if !ok {
		return RowMutation{}, fmt.Errorf("tile %s/%s: feature %q is not in feature set %q", t.Set, t.Entity, t.Feature, set.Name)
	}
	return RowMutation{
		RowKey: schemas.RowKey(set.Name, t.Entity),
		Cells:  []Cell{{Family: family, Qualifier: f.Qualifier(), Timestamp: t.Start, Value: t.Partial}},
	}, nil
}
