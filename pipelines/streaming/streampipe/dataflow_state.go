package streampipe

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"reflect"
	"slices"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms"
	"github.com/tandem-fp/tandem/transforms/aggregate"
)

func init() {
	beam.RegisterCoder(reflect.TypeOf((*entityState)(nil)), encodeEntityState, decodeEntityState)
}

// entityState is everything entityTilesFn keeps for one entity, in one
// state cell, so that an event costs one state read (the first of its
// entity in a bundle) and one write.
//
// Tiles are keyed by the feature's qualifier (name@tile) and fingerprint
// (op, field, field type and any op parameters), never by the feature's
// position in the definition: a pipeline updated with reordered, removed
// or changed features keeps the tiles of the features that stayed the
// same and drops the others, and the tiles of new or changed features are
// seeded from Bigtable (SetFingerprint tells that the definition changed).
type entityState struct {
	Tiles []stateTile
	// SetFingerprint is the fingerprint of the definition SeededFrom was
	// established under.
	SetFingerprint uint64
	// SeededFrom and Newest are entityTiles' (see there).
	SeededFrom int64
	Newest     int64
	// Horizon is the element timestamp (µs) before which an event of this
	// entity is late: the last GC firing minus the allowed lateness.
	Horizon int64
	// GCAt is the time the event-time timer is set for (µs); 0 if none.
	GCAt int64
	// Chain and Seq identify the entity's writes (see seqMutation): Chain
	// is drawn when the state is created, Seq counts the mutations emitted.
	// Prev is the entity's stream:~chain cell as read from Bigtable when the
	// chain started (nil: none), the condition of the chain's first write.
	Chain uint64
	Seq   int64
	Prev  []byte
}

// stateTile is one tile held in state.
type stateTile struct {
	Qualifier   string
	Fingerprint uint64
	Start       int64
	Partial     []byte // aggregate encoding
}

// featureFingerprint identifies what a feature's tiles contain: everything
// of its definition but its name, window and position (the qualifier
// carries the name and tile size; the window does not change a tile).
func featureFingerprint(f schemas.Feature) uint64 {
	h := fnv.New64a()
	b, _ := json.Marshal(f) // name, op, field and any op parameters
	h.Write(b)
	fmt.Fprintf(h, "|%s|%s", f.FieldType, schemas.FormatDuration(f.Tile))
	return h.Sum64()
}

// setFingerprint identifies a definition's features, in any order.
func setFingerprint(set *schemas.FeatureSet) uint64 {
	fps := make([]string, len(set.Features))
	for i, f := range set.Features {
		fps[i] = fmt.Sprintf("%s/%x", f.Qualifier(), featureFingerprint(f))
	}
	slices.Sort(fps)
	h := fnv.New64a()
	for _, s := range fps {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// featureKeys maps qualifier and fingerprint to the feature's index in a
// definition.
type featureKeys map[featureKey]int

type featureKey struct {
	qualifier   string
	fingerprint uint64
}

func keysOf(set *schemas.FeatureSet) (featureKeys, []featureKey) {
	m := make(featureKeys, len(set.Features))
	byIndex := make([]featureKey, len(set.Features))
	for i, f := range set.Features {
		k := featureKey{f.Qualifier(), featureFingerprint(f)}
		m[k] = i
		byIndex[i] = k
	}
	return m, byIndex
}

// tiles decodes the tiles of the features that set still defines, unchanged,
// and reports how many it dropped.
func (st *entityState) tiles(keys featureKeys) (*transforms.TileSet, int, error) {
	ts := transforms.NewTileSet()
	dropped := 0
	for _, t := range st.Tiles {
		i, ok := keys[featureKey{t.Qualifier, t.Fingerprint}]
		if !ok {
			dropped++
			continue
		}
		p, err := aggregate.Decode(t.Partial)
		if err != nil {
			return nil, 0, fmt.Errorf("decode tile %s@%d held in state: %w", t.Qualifier, t.Start, err)
		}
		ts.Tiles[transforms.TileID{Feature: i, Start: t.Start}] = p
	}
	return ts, dropped, nil
}

// setTiles stores ts in st, encoding only the tiles in changed (all when
// changed is nil) and reusing the encodings of the others.
func (st *entityState) setTiles(ts *transforms.TileSet, byIndex []featureKey, changed map[transforms.TileID]bool) error {
	old := make(map[transforms.TileID][]byte, len(st.Tiles))
	if changed != nil {
		index := make(map[featureKey]int, len(byIndex))
		for i, k := range byIndex {
			index[k] = i
		}
		for _, t := range st.Tiles {
			if i, ok := index[featureKey{t.Qualifier, t.Fingerprint}]; ok {
				old[transforms.TileID{Feature: i, Start: t.Start}] = t.Partial
			}
		}
	}
	out := st.Tiles[:0]
	for _, id := range ts.IDs() {
		enc, ok := old[id]
		if !ok || changed[id] {
			var err error
			if enc, err = ts.Tiles[id].AppendBinary(nil); err != nil {
				return fmt.Errorf("encode tile %s@%d: %w", byIndex[id.Feature].qualifier, id.Start, err)
			}
		}
		out = append(out, stateTile{Qualifier: byIndex[id.Feature].qualifier, Fingerprint: byIndex[id.Feature].fingerprint, Start: id.Start, Partial: enc})
	}
	st.Tiles = out
	return nil
}

// stateVersion is the first byte of an encoded entityState.
const stateVersion = 1

func encodeEntityState(st *entityState) ([]byte, error) {
	b := []byte{stateVersion}
	b = binary.AppendUvarint(b, st.SetFingerprint)
	for _, v := range []int64{st.SeededFrom, st.Newest, st.Horizon, st.GCAt, st.Seq} {
		b = binary.AppendVarint(b, v)
	}
	b = binary.AppendUvarint(b, st.Chain)
	b = appendBytes(b, st.Prev, st.Prev != nil)
	b = binary.AppendUvarint(b, uint64(len(st.Tiles)))
	for _, t := range st.Tiles {
		b = appendBytes(b, []byte(t.Qualifier), true)
		b = binary.AppendUvarint(b, t.Fingerprint)
		b = binary.AppendVarint(b, t.Start)
		b = appendBytes(b, t.Partial, true)
	}
	return b, nil
}

// appendBytes appends a length-prefixed value; length 0 is nil (absent),
// length n+1 is n bytes.
func appendBytes(b, v []byte, present bool) []byte {
	if !present {
		return binary.AppendUvarint(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(v))+1)
	return append(b, v...)
}

type stateDecoder struct {
	b   []byte
	err error
}

func (d *stateDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *stateDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *stateDecoder) bytes() []byte {
	n := d.uvarint()
	if n == 0 || d.err != nil {
		return nil
	}
	if n-1 > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := slices.Clone(d.b[:n-1])
	d.b = d.b[n-1:]
	return v
}

func (d *stateDecoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("decode entity state: truncated")
	}
}

func decodeEntityState(b []byte) (*entityState, error) {
	if len(b) == 0 || b[0] != stateVersion {
		return nil, fmt.Errorf("decode entity state: version %v, want %d", b[:min(len(b), 1)], stateVersion)
	}
	d := &stateDecoder{b: b[1:]}
	st := &entityState{SetFingerprint: d.uvarint()}
	for _, p := range []*int64{&st.SeededFrom, &st.Newest, &st.Horizon, &st.GCAt, &st.Seq} {
		*p = d.varint()
	}
	st.Chain = d.uvarint()
	st.Prev = d.bytes()
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		t := stateTile{Qualifier: string(d.bytes()), Fingerprint: d.uvarint(), Start: d.varint(), Partial: d.bytes()}
		st.Tiles = append(st.Tiles, t)
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("decode entity state: %d trailing bytes", len(d.b))
	}
	return st, d.err
}
