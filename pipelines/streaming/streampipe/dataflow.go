package streampipe

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/mtime"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/state"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/timers"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/pubsubio"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/transforms"
	"github.com/tandem-fp/tandem/transforms/pubsubread"
)

func init() {
	register.DoFn3x0[context.Context, *pubsubpb.PubsubMessage, func(pubsubread.Message)](&fromPubsubFn{})
	register.Emitter1[pubsubread.Message]()
	register.DoFn4x0[context.Context, pubsubread.Message, func(string, decodedMessage), func(transforms.DeadLetter)](&keyByEntityFn{})
	register.Emitter2[string, decodedMessage]()
	register.Emitter1[transforms.DeadLetter]()
	register.DoFn8x1[context.Context, beam.EventTime, state.Provider, timers.Provider, string, decodedMessage,
		func(beam.EventTime, string, seqMutation), func(transforms.DeadLetter), error](&entityTilesFn{})
	register.Emitter3[beam.EventTime, string, seqMutation]()
	register.DoFn2x1[context.Context, transforms.DeadLetter, error](&deadLetterFn{})
}

// buildDataflow reads with Beam's native Pub/Sub source (Dataflow only) and
// writes with WriteEntityTiles. Dead letters pass a Reshuffle, so only
// those of committed bundles are written.
func buildDataflow(s beam.Scope, o Options) {
	project, id := shortSubscription(o.Subscription)
	raw := pubsubio.Read(s, project, pubsubio.ReadOptions{
		Subscription:       id,
		IDAttribute:        o.IDAttribute,
		TimestampAttribute: o.TimestampAttribute,
		WithAttributes:     true,
	})
	msgs := beam.ParDo(s, &fromPubsubFn{Set: o.Set.Name, TimestampAttribute: o.TimestampAttribute}, raw)
	late, dead := WriteEntityTiles(s, o.Set, o.Bigtable, msgs)
	WriteDeadLetters(s, o.DeadLetter, beam.Reshuffle(s, beam.Flatten(s, late, dead)))
}

// fromPubsubFn turns the native source's messages into Messages. Dataflow
// acknowledges them itself, so AckID stays empty. The element keeps the
// timestamp the source gave it: the TimestampAttribute, or the publish
// time. A message that lacks a configured TimestampAttribute is counted
// (<set>_stream_no_timestamp_attribute); it is stamped with its publish
// time and then judged like every other message (see WriteEntityTiles).
type fromPubsubFn struct {
	Set                string `json:"set"`
	TimestampAttribute string `json:"timestamp_attribute"`

	noAttribute beam.Counter
}

func (fn *fromPubsubFn) Setup() {
	fn.noAttribute = beam.NewCounter(transforms.MetricsNamespace, fn.Set+"_stream_no_timestamp_attribute")
}

func (fn *fromPubsubFn) ProcessElement(ctx context.Context, m *pubsubpb.PubsubMessage, emit func(pubsubread.Message)) {
	if fn.TimestampAttribute != "" {
		if _, ok := m.GetAttributes()[fn.TimestampAttribute]; !ok {
			fn.noAttribute.Inc(ctx, 1)
		}
	}
	emit(pubsubread.Message{ID: m.GetMessageId(), Data: m.GetData(), PublishTime: m.GetPublishTime().AsTime().UnixMicro()})
}

// WriteEntityTiles keys messages by entity, folds them into full tiles held
// in Beam state (entityTilesFn, a stateful DoFn in the global window),
// and writes the tiles each bundle changed, after a Reshuffle, with
// conditional mutations that apply each entity's writes once and in order
// (tileWriterFn); streamMetaFn then writes the stream metadata. The element
// timestamp of a message (the timestamp attribute or the publish time,
// which the watermark follows) must agree with its event time within the
// allowed lateness; a message that does not, an undecodable one and an
// event later than the allowed lateness come out as dead letters (two
// outputs: late and disagreeing ones from the stateful DoFn, decode
// failures before it).
//
//	PCollection<pubsubread.Message> → PCollection<DeadLetter> (late), PCollection<DeadLetter> (decode)
func WriteEntityTiles(s beam.Scope, set *schemas.FeatureSet, bt bigtablestore.Config, msgs beam.PCollection) (late, undecodable beam.PCollection) {
	s = s.Scope("streampipe.WriteEntityTiles")
	if err := bt.Validate(); err != nil {
		panic(fmt.Sprintf("streampipe.WriteEntityTiles: %v", err))
	}
	keyed, dead := beam.ParDo2(s, &keyByEntityFn{Set: set}, msgs)
	muts, late := beam.ParDo2(s, newEntityTilesFn(set, bt), keyed)
	written := beam.ParDo(s, newTileWriterFn(set, bt), beam.Reshuffle(s, muts))
	beam.ParDo0(s, newStreamMetaFn(set, bt), written)
	return late, dead
}

// decodedMessage is a message keyByEntityFn decoded: the event and, for a
// dead letter later, the message's bytes. The stateful DoFn takes it as it
// is and does not decode the JSON again.
type decodedMessage struct {
	Event schemas.Event
	Raw   []byte
}

// keyByEntityFn decodes and checks each message once and keys it by its
// entity.
type keyByEntityFn struct {
	Set *schemas.FeatureSet `json:"set"`

	counter sinkCounters
}

func (fn *keyByEntityFn) Setup() {
	fn.counter = newSinkCounters(fn.Set.Name)
}

func (fn *keyByEntityFn) ProcessElement(ctx context.Context, m pubsubread.Message, emit func(string, decodedMessage), dead func(transforms.DeadLetter)) {
	e, dl, ok := decodeMessage(fn.Set, m, clock().UnixMicro())
	if !ok {
		fn.counter.count(ctx, dl)
		dead(dl)
		return
	}
	emit(e.Key, decodedMessage{Event: e, Raw: m.Data})
}

func newEntityTilesFn(set *schemas.FeatureSet, bt bigtablestore.Config) *entityTilesFn {
	return &entityTilesFn{
		Set:       set,
		Bigtable:  bt,
		Retention: bigtablestore.Retention([]*schemas.FeatureSet{set}),
		State:     state.MakeValueState[*entityState]("entity"),
		GC:        timers.InEventTime("gc"),
	}
}

func newStreamMetaFn(set *schemas.FeatureSet, bt bigtablestore.Config) *streamMetaFn {
	return &streamMetaFn{Set: set, Bigtable: bt, MetaEvery: time.Second, MetaStep: time.Second,
		State: state.MakeValueState[metaState]("meta"), Tick: timers.InEventTime("tick")}
}

// entityTilesFn holds one entity's full live tiles in Beam state (one
// entityState value) and emits, when a bundle finishes, one seqMutation per
// entity the bundle changed: the whole value of each changed tile. It never
// writes to Bigtable itself: Dataflow commits a bundle's state changes,
// timers and outputs together, and tileWriterFn applies only committed
// outputs, so a retried bundle starts again from the committed state and
// what it emits replaces what the failed attempt computed.
//
// Time: tiles follow the event time in the JSON body; lateness and GC
// follow the element timestamp, which the watermark and event-time timers
// follow. A message whose two times differ by more than the allowed
// lateness L is dead-lettered (stage decode), so an accepted event's time
// is within L of its timestamp. An event whose timestamp is before the
// entity's horizon (the last GC firing minus L) is late. The GC timer
// fires at the earliest tile end + 2L (the tile can no longer be touched:
// an accepted event is within L of a timestamp at or after the horizon)
// and drops the tiles that ended at or before the horizon minus L. An
// entity with no tiles left keeps a tombstone (horizon, chain) until
// Retention after its last tile (then nothing of it is left in state); an
// entity without state is judged against the newest GC firing this DoFn
// instance has seen (a lower bound of the watermark).
//
// A tile first touched in the entity's state is seeded from its stored
// cell; a changed definition (another SetFingerprint) seeds the touched
// tiles it does not hold again.
type entityTilesFn struct {
	Set       *schemas.FeatureSet  `json:"set"`
	Bigtable  bigtablestore.Config `json:"bigtable"`
	Retention time.Duration        `json:"retention"`

	State state.Value[*entityState]
	GC    timers.EventTime

	table   *sharedTable
	keys    featureKeys
	byIndex []featureKey
	setFP   uint64
	// bundle holds the entities of the current bundle, decoded once.
	bundle map[string]*bundleEntity
	// firedUpTo is the newest GC timer time this instance fired (µs): the
	// watermark is past it.
	firedUpTo int64
	counter   sinkCounters
	dropped   beam.Counter
}

// bundleEntity is one entity in the current bundle.
type bundleEntity struct {
	st    *entityState // nil: no state
	et    *entityTiles
	cells map[transforms.TileID][]byte // changed tiles, encoded
	minTS beam.EventTime
}

func (fn *entityTilesFn) Setup(ctx context.Context) error {
	t, err := acquireTable(ctx, fn.Bigtable)
	if err != nil {
		return err
	}
	fn.table = t
	fn.keys, fn.byIndex = keysOf(fn.Set)
	fn.setFP = setFingerprint(fn.Set)
	fn.counter = newSinkCounters(fn.Set.Name)
	fn.dropped = beam.NewCounter(transforms.MetricsNamespace, fn.Set.Name+"_stream_state_tiles_dropped")
	return nil
}

func (fn *entityTilesFn) Teardown() error {
	if fn.table == nil {
		return nil
	}
	err := fn.table.release()
	fn.table = nil
	return err
}

func (fn *entityTilesFn) StartBundle(context.Context, func(beam.EventTime, string, seqMutation), func(transforms.DeadLetter)) {
	fn.bundle = map[string]*bundleEntity{}
}

// load returns entity's state, read once per bundle.
func (fn *entityTilesFn) load(ctx context.Context, sp state.Provider, entity string) (*bundleEntity, error) {
	if b := fn.bundle[entity]; b != nil {
		return b, nil
	}
	b := &bundleEntity{minTS: mtime.MaxTimestamp, cells: map[transforms.TileID][]byte{}}
	st, ok, err := fn.State.Read(sp)
	if err != nil {
		return nil, fmt.Errorf("read state of %s/%s: %w", fn.Set.Name, entity, err)
	}
	if ok && st != nil {
		ts, dropped, err := st.tiles(fn.keys)
		if err != nil {
			return nil, fmt.Errorf("state of %s/%s: %w", fn.Set.Name, entity, err)
		}
		if dropped > 0 {
			fn.dropped.Inc(ctx, int64(dropped))
		}
		b.st = st
		b.et = &entityTiles{Tiles: ts, SeededFrom: st.SeededFrom, Newest: st.Newest}
	}
	fn.bundle[entity] = b
	return b, nil
}

func micros(ts beam.EventTime) int64 { return mtime.Time(ts).ToTime().UnixMicro() }

func (fn *entityTilesFn) ProcessElement(ctx context.Context, ts beam.EventTime, sp state.Provider, tp timers.Provider, entity string, m decodedMessage,
	_ func(beam.EventTime, string, seqMutation), dead func(transforms.DeadLetter)) error {
	set := fn.Set
	lateness := set.AllowedLateness.Microseconds()
	e := m.Event
	stamp := micros(ts)
	if d := stamp - e.Time; d > lateness || d < -lateness {
		fn.counter.decode.Inc(ctx, 1)
		dead(transforms.DeadLetter{Set: set.Name, Stage: transforms.StageDecode, Raw: m.Raw,
			Reason: fmt.Sprintf("message timestamp %s (its timestamp attribute, or its publish time) and event time %s differ by %s, more than the allowed lateness %s: the watermark cannot judge it",
				time.UnixMicro(stamp).UTC().Format(time.RFC3339Nano), e.EventTime().Format(time.RFC3339Nano), time.Duration(d)*time.Microsecond, schemas.FormatDuration(set.AllowedLateness))})
		return nil
	}
	b, err := fn.load(ctx, sp, entity)
	if err != nil {
		return err
	}
	horizon := fn.firedUpTo - lateness
	if b.st != nil {
		horizon = max(horizon, b.st.Horizon)
	}
	if stamp < horizon {
		fn.counter.late.Inc(ctx, 1)
		dead(transforms.DeadLetter{Set: set.Name, Stage: transforms.StageLate, Raw: m.Raw,
			Reason: fmt.Sprintf("message timestamp %s (event time %s) is before %s, the watermark minus the allowed lateness %s, for its entity",
				time.UnixMicro(stamp).UTC().Format(time.RFC3339Nano), e.EventTime().Format(time.RFC3339Nano),
				time.UnixMicro(horizon).UTC().Format(time.RFC3339Nano), schemas.FormatDuration(set.AllowedLateness))})
		return nil
	}
	events := []schemas.Event{e}
	if b.st == nil {
		// A new chain: seed every tile the event touches from Bigtable, and
		// take the row's ~chain cell as the condition of the first write.
		from := earliestTile(set, events)
		stored, err := readStored(ctx, fn.table.table, set, []string{entity}, from)
		if err != nil {
			return err
		}
		b.st = &entityState{Chain: newChain(), SetFingerprint: fn.setFP}
		b.et = &entityTiles{Tiles: transforms.NewTileSet(), SeededFrom: noSeed}
		if r := stored[entity]; r != nil {
			b.st.Prev = r.seq
		}
		b.et.seed(stored[entity], from, nil)
		fn.counter.seeds.Inc(ctx, 1)
	} else if b.st.SetFingerprint != fn.setFP {
		// The definition changed: read the touched tiles not held again.
		from := earliestTile(set, events)
		stored, err := readStored(ctx, fn.table.table, set, []string{entity}, from)
		if err != nil {
			return err
		}
		b.et.SeededFrom = noSeed
		b.et.seed(stored[entity], from, nil)
		b.st.SetFingerprint = fn.setFP
		fn.counter.seeds.Inc(ctx, 1)
	} else if from, ids := b.et.missing(set, events); ids != nil {
		stored, err := readStored(ctx, fn.table.table, set, []string{entity}, from)
		if err != nil {
			return err
		}
		b.et.seed(stored[entity], from, ids)
		fn.counter.seeds.Inc(ctx, 1)
	}
	if len(b.cells) == 0 {
		b.st.Seq++ // this bundle's mutation
	}
	dirty := map[transforms.TileID]bool{}
	b.et.add(set, events, dirty)
	b.minTS = min(b.minTS, ts)
	b.st.Newest, b.st.SeededFrom = b.et.Newest, b.et.SeededFrom
	if err := b.st.setTiles(b.et.Tiles, fn.byIndex, dirty); err != nil {
		return fmt.Errorf("state of %s/%s: %w", set.Name, entity, err)
	}
	for _, t := range b.st.Tiles {
		if id := (transforms.TileID{Feature: fn.keys[featureKey{t.Qualifier, t.Fingerprint}], Start: t.Start}); dirty[id] {
			b.cells[id] = t.Partial
		}
	}
	fn.setGC(tp, b.st, b.et)
	fn.counter.events.Inc(ctx, 1)
	return fn.State.Write(sp, b.st)
}

// newChain draws a chain identifier.
func newChain() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:]) | 1
}

// setGC sets the timer at the earliest tile end plus twice the allowed
// lateness, or, with no tiles left, at the end of the tombstone.
func (fn *entityTilesFn) setGC(tp timers.Provider, st *entityState, et *entityTiles) {
	at := noSeed
	for id := range et.Tiles.Tiles {
		at = min(at, id.Start+fn.Set.Features[id.Feature].Tile.Microseconds())
	}
	if at == noSeed {
		at = st.Horizon + fn.Retention.Microseconds()
	} else {
		at += 2 * fn.Set.AllowedLateness.Microseconds()
	}
	if st.GCAt == at {
		return
	}
	fn.GC.Set(tp, time.UnixMicro(at), timers.WithNoOutputTimestamp())
	st.GCAt = at
}

func (fn *entityTilesFn) OnTimer(ctx context.Context, sp state.Provider, tp timers.Provider, entity string, _ timers.Context,
	_ func(beam.EventTime, string, seqMutation), _ func(transforms.DeadLetter)) error {
	b, err := fn.load(ctx, sp, entity)
	if err != nil || b.st == nil || b.st.GCAt == 0 {
		return err
	}
	st := b.st
	fired := st.GCAt
	fn.firedUpTo = max(fn.firedUpTo, fired)
	st.GCAt = 0
	if len(b.et.Tiles.Tiles) == 0 {
		// The tombstone ends: forget the entity.
		b.st, b.et = nil, nil
		delete(fn.bundle, entity)
		return fn.State.Clear(sp)
	}
	lateness := fn.Set.AllowedLateness.Microseconds()
	st.Horizon = max(st.Horizon, fired-lateness)
	b.et.gc(fn.Set, st.Horizon-lateness)
	st.SeededFrom = b.et.SeededFrom
	if err := st.setTiles(b.et.Tiles, fn.byIndex, map[transforms.TileID]bool{}); err != nil {
		return fmt.Errorf("state of %s/%s: %w", fn.Set.Name, entity, err)
	}
	fn.setGC(tp, st, b.et)
	return fn.State.Write(sp, st)
}

func (fn *entityTilesFn) FinishBundle(_ context.Context, emit func(beam.EventTime, string, seqMutation), _ func(transforms.DeadLetter)) error {
	for entity, b := range fn.bundle {
		if len(b.cells) == 0 || b.st == nil {
			continue
		}
		m := seqMutation{Chain: b.st.Chain, Seq: b.st.Seq, Origin: b.st.Prev, Newest: b.st.Newest, Cells: make([]transforms.Cell, 0, len(b.cells))}
		m.Prev = m.Origin
		if m.Seq > 1 {
			m.Prev = encodeSeq(m.Chain, m.Seq-1)
		}
		for id, v := range b.cells {
			m.Cells = append(m.Cells, transforms.Cell{Family: schemas.FamilyStream, Qualifier: fn.byIndex[id.Feature].qualifier, Timestamp: id.Start, Value: v})
		}
		emit(b.minTS, entity, m)
	}
	fn.bundle = nil
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
