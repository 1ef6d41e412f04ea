package streampipe

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/schemastest"
	"github.com/tandem-fp/tandem/serving/servingtest"
	"github.com/tandem-fp/tandem/transforms"
	"github.com/tandem-fp/tandem/transforms/bigtablewrite"
)

const tilesDef = `
name: t
entity: {name: card, key: card_id}
event_time: ts
fields: {card_id: string, ts: timestamp}
allowed_lateness: 10m
features:
  - {name: n_1h, op: count, window: 1h}
  - {name: n_7d, op: count, window: 7d}
`

// TestEntityTilesLifecycle follows one entity's tiles through write, GC
// and a late touch of a dropped tile: the dropped tile must be read back
// from Bigtable, not restarted from zero, and a kept tile must not be read
// again (which would count it twice).
func TestEntityTilesLifecycle(t *testing.T) {
	ctx := context.Background()
	set := schemastest.MustParse(t, tilesDef)
	emu, err := servingtest.StartEmulator(ctx, []*schemas.FeatureSet{set})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	tbl := emu.Table

	t0 := schemastest.DaysAgo(2).Add(10 * time.Hour) // inside the 8d max-age GC on any date
	ev := func(at time.Time) schemas.Event {
		e, err := set.DecodeJSON(fmt.Appendf(nil, `{"card_id":"c","ts":%q}`, at.Format(time.RFC3339)))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	write := func(et *entityTiles, events ...schemas.Event) {
		t.Helper()
		dirty := map[transforms.TileID]bool{}
		et.add(set, events, dirty)
		m, err := et.mutation(set, "c", dirty)
		if err != nil {
			t.Fatal(err)
		}
		var b bigtablewrite.Batch
		b.Add(m)
		if _, err := bigtablewrite.ApplyBulk(ctx, tbl, &b, 1); err != nil {
			t.Fatal(err)
		}
	}
	count := func(et *entityTiles, feature int, at time.Time) int64 {
		t.Helper()
		p, ok := et.Tiles.Tiles[transforms.TileID{Feature: feature, Start: schemas.TileStart(at.UnixMicro(), set.Features[feature].Tile)}]
		if !ok {
			return 0
		}
		v, _ := p.Result()
		return v.Int
	}

	// Run 1: two events at 10:00:30, one at 10:05.
	et := &entityTiles{Tiles: transforms.NewTileSet(), SeededFrom: noSeed}
	a, b := t0.Add(30*time.Second), t0.Add(5*time.Minute)
	write(et, ev(a), ev(a), ev(b))

	// The watermark passes 10:20: the 1m tiles of 10:00 and 10:05 are
	// dropped, the 3h tile (n_7d) is kept.
	if et.gc(set, t0.Add(10*time.Minute).UnixMicro()) {
		t.Fatal("gc emptied the entity; the 3h tile should stay")
	}
	if got := count(et, 0, a); got != 0 {
		t.Errorf("1m tile of 10:00 still held after gc (count %d)", got)
	}

	// A late-but-allowed event touches the dropped 10:00 tile and the kept
	// 3h tile: only the dropped one is missing and read back.
	late := ev(t0.Add(45 * time.Second))
	from, ids := et.missing(set, []schemas.Event{late})
	if len(ids) != 1 || !ids[transforms.TileID{Feature: 0, Start: t0.UnixMicro()}] {
		t.Fatalf("missing = %v from %d; want only the 1m tile of 10:00", ids, from)
	}
	stored, err := readStored(ctx, tbl, set, []string{"c"}, from)
	if err != nil {
		t.Fatal(err)
	}
	et.seed(stored["c"], from, ids)
	write(et, late)
	if got := count(et, 0, a); got != 3 {
		t.Errorf("1m tile of 10:00 = %d after the late event, want 3 (2 stored + 1)", got)
	}
	if got := count(et, 1, a); got != 4 {
		t.Errorf("3h tile = %d, want 4 (kept, not read twice)", got)
	}

	// Run 2 (a restart): a fresh entity seeds everything from its earliest
	// touched tile.
	et2 := &entityTiles{Tiles: transforms.NewTileSet(), SeededFrom: noSeed}
	next := []schemas.Event{ev(b)}
	from = earliestTile(set, next)
	stored, err = readStored(ctx, tbl, set, []string{"c"}, from)
	if err != nil {
		t.Fatal(err)
	}
	et2.seed(stored["c"], from, nil)
	write(et2, next...)
	if got := count(et2, 0, b); got != 2 {
		t.Errorf("after restart, 1m tile of 10:05 = %d, want 2", got)
	}
	if got := count(et2, 1, b); got != 5 {
		t.Errorf("after restart, 3h tile = %d, want 5", got)
	}
}
