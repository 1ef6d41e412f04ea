package streampipe

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"cloud.google.com/go/bigtable"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/mtime"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/state"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/transforms"
	"github.com/tandem-fp/tandem/transforms/bigtablewrite"
	"github.com/tandem-fp/tandem/transforms/pubsubread"
)

func init() {
	register.DoFn3x1[context.Context, pubsubread.Message, func(beam.EventTime, string, int64), error](&localSinkFn{})
	register.Emitter3[beam.EventTime, string, int64]()
	register.DoFn4x1[context.Context, state.Provider, string, int64, error](&progressFn{})
}

// localSinkFn is the sink of the local (prism) streaming pipeline, fused
// with the source: it decodes each message, folds its event into the full
// tiles of its entity, and at the end of the bundle writes, in order, the
// bundle's dead letters (synced to disk), its dirty tiles (bulk, to the
// stream family) and the newest-tile metadata, and only then acknowledges
// the bundle's messages. A message is therefore acknowledged only once its
// effect is durable; a crash in between makes Pub/Sub redeliver it, and a
// message whose tiles were written but not yet acknowledged is counted
// twice: duplicates are bounded by one bundle (Config.BundleSize) per crash.
// Last, with or without messages in the bundle, it writes how far the
// source had read (pubsubread.Complete: its watermark, or the last moment
// it found the subscription empty) as the stream watermark, about once a
// second: what was read up to it is now written.
//
// The tiles live in a process-wide cache (one per table and feature set)
// rather than in Beam state: per-key state on prism costs a state round
// trip per key and bundle and capped the pipeline near 8,000 keys/s, while
// the source reads with one restriction, so one bundle at a time writes
// and the process owns every entity. A tile first touched in a run is
// seeded from its stored cell, so a restart never overwrites a stored tile
// with a partial one.
type localSinkFn struct {
	Set          *schemas.FeatureSet     `json:"set"`
	Bigtable     bigtablestore.Config    `json:"bigtable"`
	Subscription pubsubread.Subscription `json:"subscription"`
	PubSub       pubsubread.Endpoint     `json:"pubsub"`
	AckExtension time.Duration           `json:"ack_extension"`
	DeadLetter   string                  `json:"dead_letter"`
	MetaEvery    time.Duration           `json:"meta_every"`
	// Run names the run; each run has its own tile cache.
	Run string `json:"run"`

	client *bigtable.Client
	table  *bigtable.Table
	acker  *pubsubread.Acker
	cache  *tileCache
	dead   *deadLetters

	// The bundle: events by entity, dead letters, ack IDs.
	events    map[string][]schemas.Event
	letters   []transforms.DeadLetter
	ackIDs    []string
	horizon   int64 // newest watermark seen minus the allowed lateness
	watermark int64 // newest watermark seen
	batch     bigtablewrite.Batch
	counters  sinkCounters
}

type sinkCounters struct {
	events, late, future, decode, cells, seeds beam.Counter
}

// count counts a dead letter under its stage.
func (c *sinkCounters) count(ctx context.Context, d transforms.DeadLetter) {
	switch d.Stage {
	case transforms.StageLate:
		c.late.Inc(ctx, 1)
	case transforms.StageFuture:
		c.future.Inc(ctx, 1)
	default:
		c.decode.Inc(ctx, 1)
	}
}

func newSinkCounters(set string) sinkCounters {
	return sinkCounters{
		events: beam.NewCounter(transforms.MetricsNamespace, set+"_stream_events"),
		late:   beam.NewCounter(transforms.MetricsNamespace, set+"_dead_letter_"+transforms.StageLate),
		future: beam.NewCounter(transforms.MetricsNamespace, set+"_dead_letter_"+transforms.StageFuture),
		decode: beam.NewCounter(transforms.MetricsNamespace, set+"_dead_letter_"+transforms.StageDecode),
		cells:  beam.NewCounter(transforms.MetricsNamespace, set+"_stream_cells_written"),
		seeds:  beam.NewCounter(transforms.MetricsNamespace, set+"_stream_entities_seeded"),
	}
}

func (fn *localSinkFn) Setup(ctx context.Context) error {
	cl, err := fn.Bigtable.NewClient(ctx)
	if err != nil {
		return err
	}
	fn.client = cl
	fn.table = cl.Open(fn.Bigtable.Table)
	if fn.acker, err = pubsubread.AckerFor(ctx, fn.PubSub, fn.Subscription, fn.AckExtension); err != nil {
		return err
	}
	fn.cache = cacheFor(fn.Run, fn.Bigtable, fn.Set)
	fn.dead = &deadLetters{Prefix: fn.DeadLetter}
	fn.counters = newSinkCounters(fn.Set.Name)
	return nil
}

func (fn *localSinkFn) Teardown() error {
	var errs []error
	if fn.cache != nil {
		fn.cache.release()
		fn.cache = nil
	}
	if fn.acker != nil {
		errs = append(errs, fn.acker.Release())
		fn.acker = nil
	}
	if fn.client != nil {
		errs = append(errs, fn.client.Close())
		fn.client = nil
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (fn *localSinkFn) StartBundle(context.Context, func(beam.EventTime, string, int64)) {
	fn.events = map[string][]schemas.Event{}
	fn.letters = fn.letters[:0]
	fn.ackIDs = fn.ackIDs[:0]
}

func (fn *localSinkFn) ProcessElement(ctx context.Context, m pubsubread.Message, _ func(beam.EventTime, string, int64)) error {
	fn.watermark = max(fn.watermark, m.Watermark)
	if m.AckID != "" {
		fn.ackIDs = append(fn.ackIDs, m.AckID)
	}
	fn.horizon = max(fn.horizon, m.Watermark-fn.Set.AllowedLateness.Microseconds())
	e, dl, ok := decodeMessage(fn.Set, m, clock().UnixMicro())
	if !ok {
		fn.letters = append(fn.letters, dl)
		return nil
	}
	fn.events[e.Key] = append(fn.events[e.Key], e)
	return nil
}

// clock is the streaming pipeline's processing time, against which events
// stamped in the future are judged; tests move it.
var clock = time.Now

// decodeMessage decodes a message's event, or says why it is a dead letter:
// undecodable, later than the allowed lateness, or stamped more than the
// set's max_future after now (Unix microseconds).
func decodeMessage(set *schemas.FeatureSet, m pubsubread.Message, now int64) (schemas.Event, transforms.DeadLetter, bool) {
	e, err := set.DecodeJSON(m.Data)
	if err == nil {
		err = transforms.CheckEventTime(e)
	}
	if err != nil {
		return e, transforms.DeadLetter{Set: set.Name, Stage: transforms.StageDecode, Reason: err.Error(), Raw: m.Data}, false
	}
	if m.Late {
		reason := fmt.Sprintf("event time %s is more than the allowed lateness %s behind the watermark %s",
			e.EventTime().Format(time.RFC3339Nano), schemas.FormatDuration(set.AllowedLateness),
			time.UnixMicro(m.Watermark).UTC().Format(time.RFC3339Nano))
		return e, transforms.DeadLetter{Set: set.Name, Stage: transforms.StageLate, Reason: reason, Raw: m.Data}, false
	}
	if err := transforms.CheckFuture(set, e, now); err != nil {
		return e, transforms.DeadLetter{Set: set.Name, Stage: transforms.StageFuture, Reason: err.Error(), Raw: m.Data}, false
	}
	return e, transforms.DeadLetter{}, true
}

func (fn *localSinkFn) FinishBundle(ctx context.Context, progress func(beam.EventTime, string, int64)) error {
	// 1. Dead letters, durable before their messages are acknowledged.
	if len(fn.letters) > 0 {
		if err := fn.dead.Write(ctx, fn.letters); err != nil {
			return err
		}
		for _, d := range fn.letters {
			fn.counters.count(ctx, d)
		}
	}
	// 2. Tiles, then the newest-tile metadata.
	if len(fn.events) > 0 {
		if err := fn.cache.write(ctx, fn.table, fn.events, &fn.batch, &fn.counters); err != nil {
			return err
		}
		if err := fn.cache.writeLatestTile(ctx, fn.table, fn.MetaEvery); err != nil {
			return err
		}
	}
	// 3. Only now acknowledge.
	if len(fn.ackIDs) > 0 {
		if err := fn.acker.Ack(ctx, fn.ackIDs); err != nil {
			return err
		}
	}
	// 4. The stream watermark: what the source had read when this bundle
	// ended is written.
	if err := fn.cache.writeWatermark(ctx, fn.table, pubsubread.Complete(fn.Run)); err != nil {
		return err
	}
	fn.cache.gc(fn.horizon)
	if n := len(fn.ackIDs); n > 0 {
		progress(mtime.FromMilliseconds(fn.watermark/1000), fn.Set.Name, int64(n))
	}
	return nil
}

// progressFn sums the messages the sink has finished (written and
// acknowledged) and logs the total every progressEvery.
//
// It also works around a prism (v2.77) busy loop: a stage with no output
// spins a core in its progress loop for as long as each bundle runs, and
// the source's bundles run up to a second while idle. Giving the sink's
// stage an output, consumed by this stateful (so separately staged) DoFn,
// makes prism wait for the bundle's end instead.
type progressFn struct {
	Total state.Value[int64]

	last time.Time
}

const progressEvery = 10 * time.Second

func (fn *progressFn) ProcessElement(ctx context.Context, sp state.Provider, set string, n int64) error {
	total, _, err := fn.Total.Read(sp)
	if err != nil {
		return err
	}
	total += n
	if err := fn.Total.Write(sp, total); err != nil {
		return err
	}
	if time.Since(fn.last) >= progressEvery {
		fn.last = time.Now()
		slog.Info("streaming progress", "feature_set", set, "messages_done", total)
	}
	return nil
}

// tileCache holds the full live tiles of every entity of one feature set
// that a process writes. One bundle at a time uses it (see localSinkFn);
// the mutex only guards against misuse.
type tileCache struct {
	key  string
	set  *schemas.FeatureSet
	refs int // guarded by caches

	mu         sync.Mutex
	entities   map[string]*entityTiles
	lastGC     time.Time
	newestTile int64 // start of the newest tile written (smallest tile size)

	// The metadata cells the cache writes.
	latestTile metaCell // schemas.QualifierStreamLatestTile
	watermark  metaCell // schemas.QualifierStreamWatermark
}

var caches = struct {
	sync.Mutex
	m map[string]*tileCache
}{m: map[string]*tileCache{}}

// cacheFor returns the tile cache of a run's feature set in a table,
// shared by the run's DoFn instances in this process until the last
// releases it. A new run starts empty and seeds from Bigtable, as after a
// restart.
func cacheFor(run string, cfg bigtablestore.Config, set *schemas.FeatureSet) *tileCache {
	key := run + "\x00" + cfg.String() + "\x00" + set.Name
	caches.Lock()
	defer caches.Unlock()
	c := caches.m[key]
	if c == nil {
		c = &tileCache{key: key, set: set, entities: map[string]*entityTiles{}}
		caches.m[key] = c
	}
	c.refs++
	return c
}

func (c *tileCache) release() {
	caches.Lock()
	defer caches.Unlock()
	if c.refs--; c.refs == 0 {
		delete(caches.m, c.key)
	}
}

// write folds the events into the cached tiles (seeding tiles first touched
// from Bigtable) and writes the tiles they touched.
func (c *tileCache) write(ctx context.Context, tbl *bigtable.Table, events map[string][]schemas.Event, batch *bigtablewrite.Batch, ctr *sinkCounters) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	set := c.set

	// Seed: entities first seen read every stored tile from their earliest
	// touched tile on; known entities read the old tiles they touch again.
	type seedReq struct {
		from int64
		ids  map[transforms.TileID]bool
	}
	reqs := map[string]seedReq{}
	var toRead []string
	readFrom := noSeed
	for entity, evs := range events {
		et := c.entities[entity]
		var r seedReq
		if et == nil {
			r.from = earliestTile(set, evs)
		} else if r.from, r.ids = et.missing(set, evs); r.ids == nil {
			continue
		}
		reqs[entity] = r
		toRead = append(toRead, entity)
		readFrom = min(readFrom, r.from)
	}
	stored, err := readStored(ctx, tbl, set, toRead, readFrom)
	if err != nil {
		return err
	}
	ctr.seeds.Inc(ctx, int64(len(toRead)))
	for entity, r := range reqs {
		et := c.entities[entity]
		if et == nil {
			et = &entityTiles{Tiles: transforms.NewTileSet(), SeededFrom: noSeed}
			c.entities[entity] = et
		}
		et.seed(stored[entity], r.from, r.ids)
	}

	// Add, then write every touched tile whole.
	batch.Reset()
	minTile := set.MinTile()
	newest := c.newestTile
	n := 0
	for entity, evs := range events {
		et := c.entities[entity]
		dirty := make(map[transforms.TileID]bool, len(set.Features))
		et.add(set, evs, dirty)
		m, err := et.mutation(set, entity, dirty)
		if err != nil {
			c.invalidate(events)
			return err
		}
		batch.Add(m)
		for _, e := range evs {
			newest = max(newest, schemas.TileStart(e.Time, minTile))
		}
		n += len(evs)
	}
	cells := batch.Cells()
	if _, err := bigtablewrite.ApplyBulk(ctx, tbl, batch, bigtablewrite.DefaultAttempts); err != nil {
		// The cache now holds tiles Bigtable may not: forget them, so that
		// the next touch reads them back.
		c.invalidate(events)
		return fmt.Errorf("write stream tiles of %d %s entities: %w", len(events), set.Name, err)
	}
	c.newestTile = newest
	ctr.events.Inc(ctx, int64(n))
	ctr.cells.Inc(ctx, int64(cells))
	return nil
}

func (c *tileCache) invalidate(events map[string][]schemas.Event) {
	for entity := range events {
		delete(c.entities, entity)
	}
}

// writeLatestTile writes the start of the newest tile written to the feature
// set's metadata row when it moved, at most once per every.
func (c *tileCache) writeLatestTile(ctx context.Context, tbl *bigtable.Table, every time.Duration) error {
	c.mu.Lock()
	tile := c.newestTile
	c.mu.Unlock()
	return c.latestTile.write(ctx, tbl, c.set.Name, schemas.QualifierStreamLatestTile, tile, every)
}

// watermarkEvery is how often the stream watermark is written while it
// moves. A reader calls the stream side behind when it trails the read time
// by the server's --stale_after (minutes), so a second is plenty.
const watermarkEvery = time.Second

// writeWatermark writes w (Unix microseconds) as the feature set's stream
// watermark when it moved, at most once per watermarkEvery.
func (c *tileCache) writeWatermark(ctx context.Context, tbl *bigtable.Table, w int64) error {
	return c.watermark.write(ctx, tbl, c.set.Name, schemas.QualifierStreamWatermark, w, watermarkEvery)
}

// gcEvery bounds how often the cache is swept.
const gcEvery = 5 * time.Second

// gc drops the tiles that ended before horizon (the watermark minus the
// allowed lateness: no on-time event can reach them), at most every gcEvery.
func (c *tileCache) gc(horizon int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if horizon <= 0 || time.Since(c.lastGC) < gcEvery {
		return
	}
	c.lastGC = time.Now()
	for entity, et := range c.entities {
		if et.gc(c.set, horizon) {
			delete(c.entities, entity)
		}
	}
}

// size is the number of entities and tiles held, for tests and logs.
func (c *tileCache) size() (entities, tiles int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, et := range c.entities {
		tiles += len(et.Tiles.Tiles)
	}
	return len(c.entities), tiles
}
