package transforms

import (
	"fmt"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/google/go-cmp/cmp"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms/aggregate"
)

// encodedEvents returns events of one card over a few hours.
func encodedEvents(t *testing.T, set *schemas.FeatureSet, n int) []schemas.Event {
	t.Helper()
	var out []schemas.Event
	for i := range n {
		e, err := set.DecodeJSON(jsonEvent("c_1", fmt.Sprintf("m_%d", i%7), float64(i)+0.5, t0.Add(time.Duration(i*331)*time.Second)))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func tileSetOf(set *schemas.FeatureSet, events []schemas.Event) *TileSet {
	ts := NewTileSet()
	for _, e := range events {
		ts.Add(set, e)
	}
	return ts
}

// formatEncoded renders encoded tiles as formatTile does.
func formatEncoded(t *testing.T, set *schemas.FeatureSet, tiles []EncodedTile) []string {
	t.Helper()
	var out []string
	for _, et := range tiles {
		p, err := aggregate.Decode(et.Partial)
		if err != nil {
			t.Fatalf("decode tile %v: %v", et.ID, err)
		}
		out = append(out, formatTile("c_1", set.Features[et.ID.Feature].Name, et.ID.Start, p))
	}
	return out
}

func TestSplitEncoded(t *testing.T) {
	set := testSet(t)
	ts := tileSetOf(set, encodedEvents(t, set, 40))
	enc, err := ts.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	tiles, err := SplitEncoded(enc)
	if err != nil {
		t.Fatalf("SplitEncoded = %v", err)
	}
	ids := ts.IDs()
	if len(tiles) != len(ids) {
		t.Fatalf("SplitEncoded gave %d tiles, want %d", len(tiles), len(ids))
	}
	for i, id := range ids {
		want, err := ts.Tiles[id].AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		if tiles[i].ID != id || string(tiles[i].Partial) != string(want) {
			t.Errorf("tile %d = %v %x, want %v %x", i, tiles[i].ID, tiles[i].Partial, id, want)
		}
	}
	for i := range len(enc) {
		if _, err := SplitEncoded(enc[:i]); err == nil {
			t.Errorf("SplitEncoded(first %d of %d bytes) = nil error, want an error", i, len(enc))
		}
	}
}

// TestMergeEncoded checks that merging the encodings of a split of the
// events gives the tiles of all of them, whatever the split.
func TestMergeEncoded(t *testing.T) {
	set := testSet(t)
	events := encodedEvents(t, set, 60)
	want := formatEncoded(t, set, mustSplit(t, tileSetOf(set, events)))
	tests := []struct {
		name  string
		parts [][]schemas.Event
	}{
		{"one", [][]schemas.Event{events}},
		{"disjoint in time", [][]schemas.Event{events[:20], events[20:45], events[45:]}},
		{"interleaved", [][]schemas.Event{evens(events), odds(events)}},
		{"with an empty set", [][]schemas.Event{events[:30], nil, events[30:]}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var encs [][]byte
			for _, part := range tc.parts {
				enc, err := tileSetOf(set, part).MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				encs = append(encs, enc)
			}
			merged, err := MergeEncoded(encs...)
			if err != nil {
				t.Fatalf("MergeEncoded = %v", err)
			}
			if diff := cmp.Diff(want, formatEncoded(t, set, merged)); diff != "" {
				t.Errorf("MergeEncoded mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func mustSplit(t *testing.T, ts *TileSet) []EncodedTile {
	t.Helper()
	enc, err := ts.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	tiles, err := SplitEncoded(enc)
	if err != nil {
		t.Fatal(err)
	}
	return tiles
}

func evens(es []schemas.Event) (out []schemas.Event) {
	for i := 0; i < len(es); i += 2 {
		out = append(out, es[i])
	}
	return out
}

func odds(es []schemas.Event) (out []schemas.Event) {
	for i := 1; i < len(es); i += 2 {
		out = append(out, es[i])
	}
	return out
}

// TestEmitEncodedRows checks that the rows hold the cells ToMutations makes
// of the same tiles, at most maxCells a mutation.
func TestEmitEncodedRows(t *testing.T) {
	set := testSet(t)
	ts := tileSetOf(set, encodedEvents(t, set, 50))
	tiles := mustSplit(t, ts)
	var want []Cell
	for _, et := range tiles {
		m, err := TileMutation(set, schemas.FamilyBatch, Tile{Set: set.Name, Entity: "c_1", Feature: set.Features[et.ID.Feature].Name, Start: et.ID.Start, Partial: et.Partial})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, m.Cells...)
	}
	for _, maxCells := range []int{1, 7, len(tiles), 10_000} {
		t.Run(fmt.Sprint(maxCells), func(t *testing.T) {
			var got []Cell
			err := EmitEncodedRows(set, schemas.FamilyBatch, "c_1", tiles, maxCells, func(m RowMutation) {
				if m.RowKey != "cards#c_1" {
					t.Errorf("row key %q, want cards#c_1", m.RowKey)
				}
				if len(m.Cells) == 0 || len(m.Cells) > maxCells {
					t.Errorf("mutation of %d cells, want 1 to %d", len(m.Cells), maxCells)
				}
				got = append(got, m.Cells...)
			})
			if err != nil {
				t.Fatalf("EmitEncodedRows = %v", err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("cells mismatch (-want +got):\n%s", diff)
			}
		})
	}
	bad := []EncodedTile{{ID: TileID{Feature: len(set.Features)}, Partial: tiles[0].Partial}}
	if err := EmitEncodedRows(set, schemas.FamilyBatch, "c_1", bad, 10, func(RowMutation) {}); err == nil {
		t.Errorf("EmitEncodedRows(unknown feature) = nil error, want an error")
	}
}

// TestDecodeJSONLines checks that DecodeJSON takes text lines as it takes
// bytes.
//
// fixed dates: decoding and tiling only (no Bigtable, no clock).
func TestDecodeJSONLines(t *testing.T) {
	set := testSet(t)
	good := string(jsonEvent("c_1", "m_1", 2.5, t0))
	p, s := beam.NewPipelineWithRoot()
	events, dead := DecodeJSON(s, set, beam.Create(s, good, `{"card_id":"c_1"`))
	passert.Equals(s, beam.ParDo(s, &formatTileFn{Set: set}, TileEvents(s, set, events)),
		"c_1/n_1h/2026-11-20T10:00:00Z=1",
		"c_1/amount_sum_1h/2026-11-20T10:00:00Z=2.5",
		"c_1/amount_max_24h/2026-11-20T10:00:00Z=2.5",
		"c_1/merchants_7d/2026-11-20T09:00:00Z=1",
		"c_1/last_merchant/2026-11-20T09:00:00Z=m_1",
	)
	passert.Equals(s, beam.ParDo(s, formatDeadLetter, dead), `decode: {"card_id":"c_1"`)
	ptest.RunAndValidate(t, p)
}
