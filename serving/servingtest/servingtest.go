// Package servingtest provides what tests, examples and benchmarks of the
// serving API need without Beam: the in-process Bigtable emulator with
// Tandem's table, and a tile writer that folds events into tiles with the
// aggregation algebra and writes them in the layout of package schemas,
// exactly as the pipelines do (row schemas.RowKey, family batch or stream,
// qualifier Feature.Qualifier, cell timestamp = tile start, value =
// aggregate encoding).
package servingtest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"cloud.google.com/go/bigtable"
	"cloud.google.com/go/bigtable/bttest"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/transforms/aggregate"
)

// Emulator is the in-process Bigtable emulator holding Tandem's table.
type Emulator struct {
	stopOnce sync.Once

	Server *bttest.Server
	Config bigtablestore.Config
	Client *bigtable.Client
	Table  *bigtable.Table
}

// StartEmulator starts bttest on a loopback port, creates the table with
// the column families and GC policies of sets, and opens a client on it.
func StartEmulator(ctx context.Context, sets []*schemas.FeatureSet) (*Emulator, error) {
	srv, cfg, err := bigtablestore.StartEmulator()
	if err != nil {
		return nil, err
	}
	e := &Emulator{Server: srv, Config: cfg}
	if err := e.init(ctx, sets); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

func (e *Emulator) init(ctx context.Context, sets []*schemas.FeatureSet) error {
	ac, err := e.Config.NewAdminClient(ctx)
	if err != nil {
		return err
	}
	defer ac.Close()
	if _, err := bigtablestore.EnsureTable(ctx, ac, e.Config.Table, sets); err != nil {
		return err
	}
	if e.Client, err = e.Config.NewClient(ctx); err != nil {
		return err
	}
	e.Table = e.Client.Open(e.Config.Table)
	return nil
}

// Stop stops the emulator, leaving the client open (to test what a
// client sees when Bigtable goes away). It is idempotent.
func (e *Emulator) Stop() { e.stopOnce.Do(e.Server.Close) }

// Close closes the client and stops the emulator.
func (e *Emulator) Close() {
	if e.Client != nil {
		_ = e.Client.Close() // nothing to flush: reads and acknowledged writes only
	}
	e.Stop()
}

// Event builds an event of set with entity key, event time t and the given
// field values (the key and time fields are set from key and t; key is
// the entity key as schemas.EntityKey encodes it, its parts set the key
// fields not among fields).
func Event(set *schemas.FeatureSet, key string, t time.Time, fields map[string]schemas.Value) schemas.Event {
	e := schemas.Event{Key: key, Time: t.UnixMicro(), Values: make([]schemas.Value, len(set.Fields))}
	for name, v := range fields {
		i, ok := set.FieldIndex(name)
		if !ok {
			panic(fmt.Sprintf("servingtest.Event: feature set %s has no field %q", set.Name, name))
		}
		e.Values[i] = v
	}
	parts, ok := schemas.SplitEntityKey(key, len(set.Entity.Keys))
	if !ok {
		panic(fmt.Sprintf("servingtest.Event: %q is not an entity key of feature set %s (key %s)", key, set.Name, set.Entity.KeyName()))
	}
	for i, k := range set.KeyIndexes() {
		if _, given := fields[set.Fields[k].Name]; given {
			continue
		}
		switch set.Fields[k].Type {
		case schemas.String:
			e.Values[k] = schemas.StringValue(parts[i])
		case schemas.Int64:
			if n, err := strconv.ParseInt(parts[i], 10, 64); err == nil {
				e.Values[k] = schemas.Int64Value(n)
			}
		}
	}
	e.Values[set.TimeIndex()] = schemas.TimestampValue(t)
	return e
}

type tileID struct {
	entity  string
	feature int
	start   int64
}

// Tiles folds events into the tiles of a feature set, one partial
// aggregate per (entity, feature, tile start). It is not safe for
// concurrent use.
type Tiles struct {
	set    *schemas.FeatureSet
	parts  map[tileID]aggregate.Partial
	newest map[string]int64 // entity → newest event time added
}

// NewTiles returns an empty set of tiles of set.
func NewTiles(set *schemas.FeatureSet) *Tiles {
	return &Tiles{set: set, parts: make(map[tileID]aggregate.Partial), newest: make(map[string]int64)}
}

// Add folds e into the tile of every feature that contains e.Time.
func (t *Tiles) Add(events ...schemas.Event) {
	for _, e := range events {
		if n, ok := t.newest[e.Key]; !ok || e.Time > n {
			t.newest[e.Key] = e.Time
		}
		for i, f := range t.set.Features {
			if !f.Keeps(e) {
				continue // as the pipelines tile: a filtered-out event makes no tile
			}
			id := tileID{e.Key, i, schemas.TileStart(e.Time, f.Tile)}
			p, ok := t.parts[id]
			if !ok {
				p = aggregate.For(f)
				t.parts[id] = p
			}
			var v schemas.Value
			if f.FieldIndex >= 0 {
				v = e.Values[f.FieldIndex]
			}
			p.Add(v, e.Time)
		}
	}
}

// Len is the number of tiles.
func (t *Tiles) Len() int { return len(t.parts) }

// Mutations returns one mutation per entity row that writes its tiles into
// family, rows in key order; into the stream family also the entity's
// ~newest cell, as the streaming pipeline writes it.
func (t *Tiles) Mutations(family string) (keys []string, muts []*bigtable.Mutation, err error) {
	byRow := make(map[string]*bigtable.Mutation)
	for id, p := range t.parts {
		b, err := aggregate.Encode(p)
		if err != nil {
			return nil, nil, fmt.Errorf("encode tile %s/%s@%d: %w", id.entity, t.set.Features[id.feature].Name, id.start, err)
		}
		key := schemas.RowKey(t.set.Name, id.entity)
		m, ok := byRow[key]
		if !ok {
			m = bigtable.NewMutation()
			byRow[key] = m
			keys = append(keys, key)
		}
		m.Set(family, t.set.Features[id.feature].Qualifier(), bigtable.Timestamp(id.start), b)
	}
	if family == schemas.FamilyStream {
		for entity, n := range t.newest {
			m := byRow[schemas.RowKey(t.set.Name, entity)]
			m.DeleteCellsInColumn(family, schemas.QualifierNewest)
			m.Set(family, schemas.QualifierNewest, bigtable.Timestamp(schemas.TileStart(n, time.Millisecond)), schemas.EncodeNewest(n))
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		muts = append(muts, byRow[k])
	}
	return keys, muts, nil
}

// Write writes the tiles into family of tbl with bulk mutations of at most
// 1000 rows.
func (t *Tiles) Write(ctx context.Context, tbl *bigtable.Table, family string) error {
	keys, muts, err := t.Mutations(family)
	if err != nil {
		return err
	}
	return ApplyBulk(ctx, tbl, keys, muts)
}

// ApplyBulk applies mutations to rows in bulk requests of at most 1000 rows,
// returning the first row error.
func ApplyBulk(ctx context.Context, tbl *bigtable.Table, keys []string, muts []*bigtable.Mutation) error {
	const batch = 1000
	for i := 0; i < len(keys); i += batch {
		j := min(i+batch, len(keys))
		errs, err := tbl.ApplyBulk(ctx, keys[i:j], muts[i:j])
		if err != nil {
			return fmt.Errorf("write %d rows from %s: %w", j-i, keys[i], err)
		}
		for k, e := range errs {
			if e != nil {
				return fmt.Errorf("write row %s: %w", keys[i+k], e)
			}
		}
	}
	return nil
}

// WriteEvents folds events into tiles and writes them into family.
func WriteEvents(ctx context.Context, tbl *bigtable.Table, set *schemas.FeatureSet, family string, events ...schemas.Event) error {
	t := NewTiles(set)
	t.Add(events...)
	return t.Write(ctx, tbl, family)
}

// WriteFreshness writes a feature set's metadata: the batch watermark and
// the newest stream tile (each skipped when zero).
func WriteFreshness(ctx context.Context, tbl *bigtable.Table, set string, batchWatermark, streamLatestTile time.Time) error {
	if !batchWatermark.IsZero() {
		if err := bigtablestore.WriteMeta(ctx, tbl, set, schemas.QualifierBatchWatermark, batchWatermark); err != nil {
			return err
		}
	}
	if !streamLatestTile.IsZero() {
		if err := bigtablestore.WriteMeta(ctx, tbl, set, schemas.QualifierStreamLatestTile, streamLatestTile); err != nil {
			return err
		}
	}
	return nil
}
