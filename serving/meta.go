package serving

import (
	"context"
	"sync/atomic"
	"time"

	"cloud.google.com/go/bigtable"

	"github.com/tandem-fp/tandem/schemas/bigtablestore"
)

// Freshness is what a feature set's values are built from: the batch
// watermark T_b (batch tiles cover event time before it), the start of the
// newest tile the streaming pipeline has written, and the stream watermark
// (the time up to which the streaming pipeline has written what it read:
// the newest event time read, or the last moment it found its subscription
// empty). A zero time means the pipeline has not written it yet.
type Freshness struct {
	BatchWatermark   time.Time
	StreamLatestTile time.Time
	StreamWatermark  time.Time
}

// covered is the instant up to which the feature set's data is known to be
// current: the later of the batch watermark and the stream's progress,
// which is its watermark, or the start of its newest tile when a pipeline
// that does not write the watermark wrote the tile. It is the zero time
// when nothing was ever written.
func (f Freshness) covered() time.Time {
	stream := f.StreamWatermark
	if stream.IsZero() {
		stream = f.StreamLatestTile
	}
	if stream.After(f.BatchWatermark) {
		return stream
	}
	return f.BatchWatermark
}

// metaSnapshot is the metadata of every loaded feature set, as read at one
// moment.
type metaSnapshot struct {
	readAt time.Time // when its read started (monotonic)
	sets   map[string]Freshness
}

// metaCache keeps the feature sets' metadata in memory so that a request
// costs one Bigtable read, not two. A background loop re-reads it every
// refresh interval; a request that finds it older than maxAge (the loop is
// failing or has not run yet) reads it itself, one request at a time.
//
// Staleness: a response uses metadata read at most maxAge before it, and
// normally at most the refresh interval plus one read's latency. That delay
// cannot double-count or lose an event: batch and stream tiles are
// partitioned by whichever T_b the response uses, and both sides keep their
// tiles, so an older T_b only means that the stream's tiles in
// [old T_b, new T_b) are used instead of the batch's for that long. The
// freshness a response reports, and so its STALE status, lag Bigtable's by
// the same delay.
type metaCache struct {
	tbl     *bigtable.Table
	sets    []string
	maxAge  time.Duration
	timeout time.Duration // of one refresh by the background loop
	m       *metrics
	onError func(error)

	snap atomic.Pointer[metaSnapshot]
	sem  chan struct{} // held by the goroutine refreshing
}

func newMetaCache(tbl *bigtable.Table, sets []string, maxAge, timeout time.Duration, m *metrics, onError func(error)) *metaCache {
	return &metaCache{tbl: tbl, sets: sets, maxAge: maxAge, timeout: timeout, m: m, onError: onError, sem: make(chan struct{}, 1)}
}

// get returns the metadata of set, reading it first when the cached copy is
// missing or older than maxAge.
func (c *metaCache) get(ctx context.Context, set string) (Freshness, error) {
	if s := c.snap.Load(); s != nil && time.Since(s.readAt) <= c.maxAge {
		return s.sets[set], nil
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return Freshness{}, unavailable("wait for metadata", ctx.Err())
	}
	defer func() { <-c.sem }()
	if s := c.snap.Load(); s != nil && time.Since(s.readAt) <= c.maxAge {
		return s.sets[set], nil // another request refreshed it meanwhile
	}
	s, err := c.read(ctx)
	if err != nil {
		return Freshness{}, err
	}
	return s.sets[set], nil
}

// refresh re-reads the metadata unless another goroutine is doing so.
func (c *metaCache) refresh(ctx context.Context) {
	select {
	case c.sem <- struct{}{}:
	default:
		return
	}
	defer func() { <-c.sem }()
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if _, err := c.read(rctx); err != nil && ctx.Err() == nil {
		c.onError(err)
	}
}

// read reads every feature set's metadata row and stores the snapshot,
// unless a read that started later has stored its own meanwhile: reads by
// the loop and by requests overlap, and the slower, older one must not put
// back metadata that a newer read has replaced.
func (c *metaCache) read(ctx context.Context) (*metaSnapshot, error) {
	start := time.Now()
	s := &metaSnapshot{readAt: start, sets: make(map[string]Freshness, len(c.sets))}
	for _, set := range c.sets {
		m, err := bigtablestore.ReadMeta(ctx, c.tbl, set)
		if err != nil {
			c.m.bigtableError(opReadMeta)
			return nil, bigtableError("read metadata", err)
		}
		s.sets[set] = Freshness(m)
	}
	c.m.bigtableRead(opReadMeta, time.Since(start))
	for {
		old := c.snap.Load()
		if old != nil && old.readAt.After(start) {
			return old, nil
		}
		if c.snap.CompareAndSwap(old, s) {
			break
		}
	}
	for set, f := range s.sets {
		c.m.setFreshness(set, f)
	}
	return s, nil
}

// loop refreshes the metadata every interval until ctx is done.
func (c *metaCache) loop(ctx context.Context, interval time.Duration) {
	c.refresh(ctx)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.refresh(ctx)
		}
	}
}
