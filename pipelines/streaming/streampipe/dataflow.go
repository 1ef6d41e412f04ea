package streampipe

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/bigtable"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/state"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/timers"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/pubsubio"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/transforms"
	"github.com/tandem-fp/tandem/transforms/bigtablewrite"
	"github.com/tandem-fp/tandem/transforms/pubsubread"
)

func init() {
	register.DoFn2x0[*pubsubpb.PubsubMessage, func(pubsubread.Message)](&fromPubsubFn{})
	register.Emitter1[pubsubread.Message]()
	register.DoFn4x0[context.Context, pubsubread.Message, func(string, pubsubread.Message), func(transforms.DeadLetter)](&keyByEntityFn{})
	register.Emitter2[string, pubsubread.Message]()
	register.Emitter1[transforms.DeadLetter]()
	register.DoFn6x1[context.Context, state.Provider, timers.Provider, string, pubsubread.Message, func(transforms.DeadLetter), error](&entityTilesFn{})
	register.DoFn2x1[context.Context, transforms.DeadLetter, error](&deadLetterFn{})
}

// buildDataflow reads with Beam's native Pub/Sub source (Dataflow only) and
// writes with the stateful entityTilesFn.
func buildDataflow(s beam.Scope, o Options) {
	project, id := shortSubscription(o.Subscription)
	raw := pubsubio.Read(s, project, pubsubio.ReadOptions{
		Subscription:       id,
		IDAttribute:        o.IDAttribute,
		TimestampAttribute: o.TimestampAttribute,
		WithAttributes:     true,
	})
	msgs := beam.ParDo(s, &fromPubsubFn{}, raw)
	tiles, dead := WriteEntityTiles(s, o.Set, o.Bigtable, msgs)
	WriteDeadLetters(s, o.DeadLetter, beam.Flatten(s, tiles, dead))
}

// fromPubsubFn turns the native source's messages into Messages. Dataflow
// acknowledges them itself, so AckID stays empty.
type fromPubsubFn struct{}

func (fn *fromPubsubFn) ProcessElement(m *pubsubpb.PubsubMessage, emit func(pubsubread.Message)) {
	emit(pubsubread.Message{ID: m.GetMessageId(), Data: m.GetData(), PublishTime: m.GetPublishTime().AsTime().UnixMicro()})
}

// WriteEntityTiles keys messages by entity and folds them into full tiles
// held in Beam state (a stateful DoFn in the global window), writing the
// tiles each bundle touched to the stream family when the bundle finishes.
// Undecodable messages and events later than the allowed lateness come out
// as dead letters (two outputs: late ones from the stateful DoFn, decode
// failures before it).
//
//	PCollection<pubsubread.Message> → PCollection<DeadLetter> (late), PCollection<DeadLetter> (decode)
func WriteEntityTiles(s beam.Scope, set *schemas.FeatureSet, bt bigtablestore.Config, msgs beam.PCollection) (late, undecodable beam.PCollection) {
	s = s.Scope("streampipe.WriteEntityTiles")
	if err := bt.Validate(); err != nil {
		panic(fmt.Sprintf("streampipe.WriteEntityTiles: %v", err))
	}
	keyed, dead := beam.ParDo2(s, &keyByEntityFn{Set: set}, msgs)
	late = beam.ParDo(s, &entityTilesFn{
		Set:      set,
		Bigtable: bt,
		Tiles:    state.MakeValueState[*transforms.TileSet]("tiles"),
		Seeded:   state.MakeValueState[int64]("seeded_from"),
		Horizon:  state.MakeValueState[int64]("horizon"),
		GCAt:     state.MakeValueState[int64]("gc_at"),
		GC:       timers.InEventTime("gc"),
	}, keyed)
	return late, dead
}

type keyByEntityFn struct {
	Set *schemas.FeatureSet `json:"set"`

	counter sinkCounters
}

func (fn *keyByEntityFn) Setup() {
	fn.counter = newSinkCounters(fn.Set.Name)
}

func (fn *keyByEntityFn) ProcessElement(ctx context.Context, m pubsubread.Message, emit func(string, pubsubread.Message), dead func(transforms.DeadLetter)) {
	e, dl, ok := decodeMessage(fn.Set, m, clock().UnixMicro())
	if !ok {
		fn.counter.count(ctx, dl)
		dead(dl)
		return
	}
	m.EventTime = e.Time
	emit(e.Key, m)
}

// entityTilesFn holds one entity's full live tiles in Beam state. An event
// older than the entity's horizon (the time up to which its tiles were
// dropped: a lower bound of watermark − allowed lateness) is late and
// dead-lettered; every other event is folded into its tiles, which are
// seeded from Bigtable when first touched. The tiles a bundle touched are
// written whole when it finishes, so a retried bundle rewrites the same
// values. An event-time timer at the earliest tile end + allowed lateness
// drops finished tiles and advances the horizon.
type entityTilesFn struct {
	Set      *schemas.FeatureSet  `json:"set"`
	Bigtable bigtablestore.Config `json:"bigtable"`

	Tiles   state.Value[*transforms.TileSet]
	Seeded  state.Value[int64]
	Newest  state.Value[int64]
	Horizon state.Value[int64]
	GCAt    state.Value[int64]
	GC      timers.EventTime

	client  *bigtable.Client
	table   *bigtable.Table
	pending map[string]*pendingRow // entity → what to write
	newest  int64                  // start of the newest tile this instance wrote
	// newestEvent is the newest event time this instance wrote, written as
	// the stream watermark: on Dataflow the DoFn does not see its input
	// watermark, so an idle stream's watermark stands still (and its values
	// turn STALE after the server's --stale_after).
	newestEvent int64
	latestTile  metaCell // schemas.QualifierStreamLatestTile
	watermark   metaCell // schemas.QualifierStreamWatermark
	counter     sinkCounters
}

func (fn *entityTilesFn) Setup(ctx context.Context) error {
	cl, err := fn.Bigtable.NewClient(ctx)
	if err != nil {
		return err
	}
	fn.client = cl
	fn.table = cl.Open(fn.Bigtable.Table)
	fn.counter = newSinkCounters(fn.Set.Name)
	return nil
}

func (fn *entityTilesFn) Teardown() error {
	if fn.client == nil {
		return nil
	}
	err := fn.client.Close()
	fn.client = nil
	return err
}

func (fn *entityTilesFn) StartBundle(context.Context, func(transforms.DeadLetter)) {
	fn.pending = map[string]*pendingRow{}
}

// pendingRow is what a bundle writes to one entity's row: the tiles it
// touched and the entity's newest event time.
type pendingRow struct {
	tiles  map[transforms.TileID][]byte
	newest int64
}

func (fn *entityTilesFn) ProcessElement(ctx context.Context, sp state.Provider, tp timers.Provider, entity string, m pubsubread.Message, dead func(transforms.DeadLetter)) error {
	set := fn.Set
	// keyByEntityFn checked the message already, so only a clock that
	// moved back could make it a dead letter now.
	e, dl, ok := decodeMessage(set, m, clock().UnixMicro())
	if !ok {
		dead(dl)
		return nil
	}
	horizon, _, err := fn.Horizon.Read(sp)
	if err != nil {
		return err
	}
	if e.Time < horizon {
		fn.counter.late.Inc(ctx, 1)
		dead(transforms.DeadLetter{Set: set.Name, Stage: transforms.StageLate, Raw: m.Data,
			Reason: fmt.Sprintf("event time %s is before %s, the watermark minus the allowed lateness %s, for its entity",
				e.EventTime().Format(time.RFC3339Nano), time.UnixMicro(horizon).UTC().Format(time.RFC3339Nano), schemas.FormatDuration(set.AllowedLateness))})
		return nil
	}
	et := entityTiles{SeededFrom: noSeed}
	ts, held, err := fn.Tiles.Read(sp)
	if err != nil {
		return err
	}
	if held {
		et.Tiles = ts
		if et.SeededFrom, _, err = fn.Seeded.Read(sp); err != nil {
			return err
		}
		if et.Newest, _, err = fn.Newest.Read(sp); err != nil {
			return err
		}
	} else {
		et.Tiles = transforms.NewTileSet()
	}
	events := []schemas.Event{e}
	from, ids := earliestTile(set, events), map[transforms.TileID]bool(nil)
	if held {
		from, ids = et.missing(set, events)
	}
	if !held || ids != nil {
		stored, err := readStored(ctx, fn.table, set, []string{entity}, from)
		if err != nil {
			return err
		}
		et.seed(stored[entity], from, ids)
		fn.counter.seeds.Inc(ctx, 1)
	}
	dirty := map[transforms.TileID]bool{}
	et.add(set, events, dirty)
	if err := fn.Tiles.Write(sp, et.Tiles); err != nil {
		return err
	}
	if err := fn.Seeded.Write(sp, et.SeededFrom); err != nil {
		return err
	}
	if err := fn.Newest.Write(sp, et.Newest); err != nil {
		return err
	}
	row := fn.pending[entity]
	if row == nil {
		row = &pendingRow{tiles: map[transforms.TileID][]byte{}}
		fn.pending[entity] = row
	}
	row.newest = et.Newest
	for id := range dirty {
		enc, err := et.Tiles.Tiles[id].AppendBinary(nil)
		if err != nil {
			return fmt.Errorf("encode tile %s/%s/%s@%d: %w", set.Name, entity, set.Features[id.Feature].Name, id.Start, err)
		}
		row.tiles[id] = enc
	}
	fn.newest = max(fn.newest, schemas.TileStart(e.Time, set.MinTile()))
	fn.newestEvent = max(fn.newestEvent, e.Time)
	fn.counter.events.Inc(ctx, 1)
	return fn.setGC(sp, tp, et.Tiles)
}

// setGC sets the timer at the earliest tile end plus the allowed lateness.
func (fn *entityTilesFn) setGC(sp state.Provider, tp timers.Provider, ts *transforms.TileSet) error {
	at := noSeed
	for id := range ts.Tiles {
		at = min(at, id.Start+fn.Set.Features[id.Feature].Tile.Microseconds())
	}
	at += fn.Set.AllowedLateness.Microseconds()
	cur, ok, err := fn.GCAt.Read(sp)
	if err != nil {
		return err
	}
	if ok && cur == at {
		return nil
	}
	fn.GC.Set(tp, time.UnixMicro(at), timers.WithNoOutputTimestamp())
	return fn.GCAt.Write(sp, at)
}

func (fn *entityTilesFn) OnTimer(ctx context.Context, sp state.Provider, tp timers.Provider, entity string, timer timers.Context, _ func(transforms.DeadLetter)) error {
	at, ok, err := fn.GCAt.Read(sp)
	if err != nil || !ok {
		return err
	}
	horizon := at - fn.Set.AllowedLateness.Microseconds()
	if err := fn.Horizon.Write(sp, horizon); err != nil {
		return err
	}
	ts, held, err := fn.Tiles.Read(sp)
	if err != nil {
		return err
	}
	if !held {
		return fn.GCAt.Clear(sp)
	}
	seeded, _, err := fn.Seeded.Read(sp)
	if err != nil {
		return err
	}
	et := entityTiles{Tiles: ts, SeededFrom: seeded}
	if et.gc(fn.Set, horizon) {
		// Nothing left: forget the entity (a later event seeds it afresh;
		// the horizon stays so that late events are still recognised).
		for _, err := range []error{fn.Tiles.Clear(sp), fn.Seeded.Clear(sp), fn.Newest.Clear(sp), fn.GCAt.Clear(sp)} {
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := fn.Tiles.Write(sp, et.Tiles); err != nil {
		return err
	}
	if err := fn.Seeded.Write(sp, et.SeededFrom); err != nil {
		return err
	}
	return fn.setGC(sp, tp, et.Tiles)
}

func (fn *entityTilesFn) FinishBundle(ctx context.Context, _ func(transforms.DeadLetter)) error {
	if len(fn.pending) == 0 {
		return nil
	}
	var batch bigtablewrite.Batch
	for entity, row := range fn.pending {
		m := transforms.RowMutation{RowKey: schemas.RowKey(fn.Set.Name, entity)}
		for id, v := range row.tiles {
			m.Cells = append(m.Cells, transforms.Cell{Family: schemas.FamilyStream, Qualifier: fn.Set.Features[id.Feature].Qualifier(), Timestamp: id.Start, Value: v})
		}
		m.Cells = append(m.Cells, NewestCell(row.newest))
		batch.Add(m)
		if batch.Rows() >= bigtablewrite.DefaultMaxRows {
			if err := fn.apply(ctx, &batch); err != nil {
				return err
			}
		}
	}
	if err := fn.apply(ctx, &batch); err != nil {
		return err
	}
	fn.pending = nil
	if err := fn.latestTile.write(ctx, fn.table, fn.Set.Name, schemas.QualifierStreamLatestTile, fn.newest, 0); err != nil {
		return err
	}
	return fn.watermark.write(ctx, fn.table, fn.Set.Name, schemas.QualifierStreamWatermark, fn.newestEvent, 0)
}

func (fn *entityTilesFn) apply(ctx context.Context, b *bigtablewrite.Batch) error {
	if b.Rows() == 0 {
		return nil
	}
	cells := b.Cells()
	if _, err := bigtablewrite.ApplyBulk(ctx, fn.table, b, bigtablewrite.DefaultAttempts); err != nil {
		return fmt.Errorf("write stream tiles of %s: %w", fn.Set.Name, err)
	}
	fn.counter.cells.Inc(ctx, int64(cells))
	b.Reset()
	return nil
}

// WriteDeadLetters writes dead letters as JSON-lines files under prefix
// (local path or gs://; "" for standard error), one file per bundle that
// has any.
//
//	PCollection<DeadLetter> → ()
func WriteDeadLetters(s beam.Scope, prefix string, dead beam.PCollection) {
	s = s.Scope("streampipe.WriteDeadLetters")
	beam.ParDo0(s, &deadLetterFn{Prefix: prefix}, dead)
}

type deadLetterFn struct {
	Prefix string `json:"prefix"`

	buf []transforms.DeadLetter
}

func (fn *deadLetterFn) StartBundle(context.Context) { fn.buf = fn.buf[:0] }

func (fn *deadLetterFn) ProcessElement(_ context.Context, d transforms.DeadLetter) error {
	fn.buf = append(fn.buf, d)
	return nil
}

func (fn *deadLetterFn) FinishBundle(ctx context.Context) error {
	if len(fn.buf) == 0 {
		return nil
	}
	return (&deadLetters{Prefix: fn.Prefix}).Write(ctx, fn.buf)
}
