// Package pubsubread provides Tandem's Pub/Sub source for the runners on
// which Beam's pubsubio does not work (prism, the local default): an
// unbounded splittable DoFn on the Pub/Sub v2 client that pulls with unary
// Pull in large batches, stamps each message with the event time of the
// feature-set event it carries, estimates a watermark from those event times
// (advancing with processing time while the subscription is idle), and
// flags messages later than the allowed lateness.
//
// The source does not acknowledge anything: it tracks every message it
// pulls in the process's Acker, which keeps the message's ack deadline
// extended until a downstream stage has made the message's effect durable
// and acknowledges it (Acker.Ack). Bundle finalization is not used: on Beam
// v2.77 it runs only for a plan's first bundle, and on prism before the
// downstream writes.
//
// The source reads with a single restriction that only ever checkpoints (it
// refuses dynamic splits), so in one process one bundle at a time reads a
// subscription; pull throughput comes from batch size, not parallelism.
// A source given a Config.Name can be drained (Drain) and reports how far
// it has read (Complete) to the stages fused with it.
package pubsubread

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/mtime"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/sdf"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms"
)

func init() {
	register.DoFn5x2[context.Context, *watermarkEstimator, *sdf.LockRTracker, []byte, func(beam.EventTime, Message), sdf.ProcessContinuation, error](&readFn{})
	register.Emitter2[beam.EventTime, Message]()
	beam.RegisterType(reflect.TypeOf(Message{}))
	beam.RegisterType(reflect.TypeOf(Restriction{}))
	beam.RegisterType(reflect.TypeOf(WatermarkState{}))
}

// Message is one Pub/Sub message as a Tandem pipeline sees it.
type Message struct {
	ID    string `json:"id"`
	AckID string `json:"ack_id,omitempty"` // "" when the runner acknowledges (Dataflow)
	Data  []byte `json:"data"`
	// PublishTime is when Pub/Sub received the message, Unix microseconds.
	PublishTime int64 `json:"publish_time"`
	// EventTime is the event time of the event the message carries, Unix
	// microseconds; 0 if the message does not decode (it is then stamped
	// with the watermark and does not move it).
	EventTime int64 `json:"event_time"`
	// Late reports that EventTime was before Watermark minus the allowed
	// lateness when the message was read.
	Late bool `json:"late,omitempty"`
	// Watermark is the source's watermark when the message was read, Unix
	// microseconds (0 before the first event).
	Watermark int64 `json:"watermark"`
}

// Defaults of Config.
const (
	DefaultPullSize       = 1000
	DefaultBundleSize     = 5000
	DefaultBundleWait     = 100 * time.Millisecond
	DefaultMaxOutstanding = 20000
	DefaultIdleAdvance    = 2 * time.Second
	DefaultAckExtension   = 30 * time.Second
	// pollInterval is the pause between empty pulls.
	pollInterval = 10 * time.Millisecond
	// idleBundle is how long a bundle waits for a first message before it
	// checkpoints, so that the runner sees the watermark move while idle.
	idleBundle = time.Second
)

// Config configures Read.
type Config struct {
	Subscription Subscription `json:"subscription"`
	Endpoint     Endpoint     `json:"endpoint"`
	// PullSize is the MaxMessages of one Pull.
	PullSize int `json:"pull_size"`
	// BundleSize and BundleWait end a bundle: after BundleSize messages, or
	// BundleWait after its first message. Downstream stages flush per
	// bundle, so BundleWait bounds the time a message waits to be written.
	BundleSize int           `json:"bundle_size"`
	BundleWait time.Duration `json:"bundle_wait"`
	// MaxOutstanding bounds the messages pulled and not yet acknowledged;
	// the source stops pulling while there are that many. It bounds memory
	// and the messages counted twice after a crash.
	MaxOutstanding int `json:"max_outstanding"`
	// MaxIdle, when positive, stops the source after that long without a
	// message; MaxMessages, when positive, after that many messages. The
	// source then returns Stop, the watermark goes to +inf and a pipeline
	// whose only unbounded input this is finishes.
	MaxIdle     time.Duration `json:"max_idle"`
	MaxMessages int64         `json:"max_messages"`
	// AllowedLateness: a message whose event time is before the watermark
	// minus this is Late.
	AllowedLateness time.Duration `json:"allowed_lateness"`
	// IdleAdvance: once no message has come for this long, the watermark
	// advances with processing time from the newest event time seen.
	IdleAdvance time.Duration `json:"idle_advance"`
	// AckExtension is the ack deadline set while messages are in flight.
	AckExtension time.Duration `json:"ack_extension"`
	// Name, when set, names the source in this process: Drain(Name) stops
	// it and Complete(Name) reports how far it has read.
	Name string `json:"name,omitempty"`
}

func (c *Config) defaults() {
	if c.PullSize <= 0 {
		c.PullSize = DefaultPullSize
	}
	if c.BundleSize <= 0 {
		c.BundleSize = DefaultBundleSize
	}
	if c.BundleWait <= 0 {
		c.BundleWait = DefaultBundleWait
	}
	if c.MaxOutstanding <= 0 {
		c.MaxOutstanding = DefaultMaxOutstanding
	}
	if c.IdleAdvance <= 0 {
		c.IdleAdvance = DefaultIdleAdvance
	}
	if c.AckExtension <= 0 {
		c.AckExtension = DefaultAckExtension
	}
}

// Read reads the JSON events of set from a Pub/Sub subscription as an
// unbounded collection, each message stamped with its event time.
//
//	Impulse → PCollection<Message>
func Read(s beam.Scope, set *schemas.FeatureSet, cfg Config) beam.PCollection {
	s = s.Scope("pubsubread.Read")
	if _, _, err := cfg.Subscription.Parse(); err != nil {
		panic(fmt.Sprintf("pubsubread.Read: %v", err))
	}
	if cfg.AllowedLateness < 0 || cfg.MaxIdle < 0 || cfg.MaxMessages < 0 {
		panic(fmt.Sprintf("pubsubread.Read: negative allowed lateness %s, max idle %s or max messages %d", cfg.AllowedLateness, cfg.MaxIdle, cfg.MaxMessages))
	}
	cfg.defaults()
	return beam.ParDo(s, &readFn{Set: set, Config: cfg}, beam.Impulse(s))
}

// Drain asks the sources named name (Config.Name) in this process to stop
// pulling: each finishes its bundle and returns Stop.
func Drain(name string) {
	named.Lock()
	s := named.source(name)
	s.drain = true
	named.Unlock()
}

// Started returns a channel closed once a source named name (Config.Name)
// has been set up in this process: its pipeline has been submitted and
// runs. A caller that starts several local pipelines at once waits on it
// between starts: prism (v2.77) stages a job's artifacts into one map
// without a lock, and two jobs staged at once can end the process with
// "concurrent map writes".
func Started(name string) <-chan struct{} {
	named.Lock()
	defer named.Unlock()
	return named.source(name).started
}

// Complete is the time up to which the source named name (Config.Name) in
// this process had read its subscription when its last bundle ended, Unix
// microseconds: the later of its watermark (the newest event time read,
// moving on while idle) and the last moment a pull found the subscription
// empty (everything published before it had been read). 0 before either.
// Every message of that bundle and of the bundles before it has been
// emitted: a stage fused with the source that reads Complete in
// FinishBundle, after handling the bundle's messages, has handled
// everything the source read up to it (one bundle at a time: the source
// reads one restriction).
func Complete(name string) int64 {
	named.Lock()
	defer named.Unlock()
	return named.source(name).complete
}

// named holds what Drain, Complete and Started share with the sources, by
// name.
var named = namedSources{m: map[string]*namedSource{}}

type namedSources struct {
	sync.Mutex
	m map[string]*namedSource
}

type namedSource struct {
	drain     bool
	complete  int64
	started   chan struct{} // closed by the first Setup
	setUpOnce sync.Once
}

// source returns the entry of name, made on first use; the caller holds
// the lock.
func (n *namedSources) source(name string) *namedSource {
	s, ok := n.m[name]
	if !ok {
		s = &namedSource{started: make(chan struct{})}
		n.m[name] = s
	}
	return s
}

func draining(name string) bool {
	if name == "" {
		return false
	}
	named.Lock()
	defer named.Unlock()
	return named.source(name).drain
}

// setUp records that a source named name has been set up.
func setUp(name string) {
	if name == "" {
		return
	}
	named.Lock()
	s := named.source(name)
	named.Unlock()
	s.setUpOnce.Do(func() { close(s.started) })
}

// publishComplete records, as a bundle of the source named name ends, its
// watermark and the last moment (Unix microseconds, 0 for none) a pull
// found the subscription empty.
func publishComplete(name string, w *watermarkEstimator, emptyAt int64) {
	if name == "" {
		return
	}
	c := emptyAt
	if w.state.Seen {
		c = max(c, w.state.Watermark)
	}
	named.Lock()
	defer named.Unlock()
	s := named.source(name)
	s.complete = max(s.complete, c)
}

type readFn struct {
	Set    *schemas.FeatureSet `json:"set"`
	Config Config              `json:"config"`

	acker *Acker
	// idleSince is when the source last saw a message (or started), for
	// MaxIdle; it lives in the DoFn because the restriction is read by one
	// bundle at a time.
	idleSince time.Time

	pulled beam.Counter
	late   beam.Counter
}

func (fn *readFn) Setup(ctx context.Context) error {
	a, err := AckerFor(ctx, fn.Config.Endpoint, fn.Config.Subscription, fn.Config.AckExtension)
	if err != nil {
		return err
	}
	fn.acker = a
	fn.idleSince = time.Now()
	fn.pulled = beam.NewCounter(transforms.MetricsNamespace, "pubsub_messages_pulled")
	fn.late = beam.NewCounter(transforms.MetricsNamespace, "pubsub_messages_late")
	setUp(fn.Config.Name)
	return nil
}

func (fn *readFn) Teardown() error {
	if fn.acker == nil {
		return nil
	}
	err := fn.acker.Release()
	fn.acker = nil
	return err
}

// Restriction is the range of message positions [Start, End) a reader may
// still claim: one position per message read, so Start counts the messages
// read so far and End is MaxMessages (or unbounded).
type Restriction struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
}

func (fn *readFn) CreateInitialRestriction(_ []byte) Restriction {
	end := int64(math.MaxInt64)
	if fn.Config.MaxMessages > 0 {
		end = fn.Config.MaxMessages
	}
	return Restriction{Start: 0, End: end}
}

func (fn *readFn) SplitRestriction(_ []byte, r Restriction) []Restriction { return []Restriction{r} }

func (fn *readFn) RestrictionSize(_ []byte, r Restriction) float64 {
	return float64(min(r.End-r.Start, 1<<20))
}

func (fn *readFn) CreateTracker(r Restriction) *sdf.LockRTracker {
	return sdf.NewLockRTracker(&tracker{rest: r, claimed: r.Start - 1})
}

// TruncateRestriction ends reading when a pipeline is drained.
func (fn *readFn) TruncateRestriction(rt *sdf.LockRTracker, _ []byte) Restriction {
	start := rt.GetRestriction().(Restriction).Start
	return Restriction{Start: start, End: start}
}

// WatermarkState is the persisted state of the watermark estimator.
type WatermarkState struct {
	// Watermark and MaxEventTime are Unix microseconds; both are
	// meaningful only when Seen.
	Watermark    int64 `json:"watermark"`
	MaxEventTime int64 `json:"max_event_time"`
	// LastActive is when the last decodable message arrived, Unix
	// nanoseconds of processing time.
	LastActive int64 `json:"last_active"`
	Seen       bool  `json:"seen"`
}

// watermarkEstimator estimates the watermark as the newest event time seen;
// once the subscription has been idle for IdleAdvance it moves on with
// processing time, so that an idle input does not hold event-time timers
// and downstream windows for ever.
type watermarkEstimator struct {
	state       WatermarkState
	idleAdvance time.Duration
}

func (w *watermarkEstimator) CurrentWatermark() time.Time {
	if !w.state.Seen {
		return mtime.MinTimestamp.ToTime()
	}
	return time.UnixMicro(w.state.Watermark)
}

func (w *watermarkEstimator) observe(t int64, now time.Time) {
	if !w.state.Seen || t > w.state.MaxEventTime {
		w.state.MaxEventTime = t
	}
	w.state.Seen = true
	w.state.LastActive = now.UnixNano()
	w.state.Watermark = max(w.state.Watermark, w.state.MaxEventTime)
}

func (w *watermarkEstimator) idle(now time.Time) {
	if !w.state.Seen {
		return
	}
	quiet := now.Sub(time.Unix(0, w.state.LastActive)) - w.idleAdvance
	if quiet > 0 {
		w.state.Watermark = max(w.state.Watermark, w.state.MaxEventTime+quiet.Microseconds())
	}
}

func (fn *readFn) InitialWatermarkEstimatorState(_ beam.EventTime, _ Restriction, _ []byte) WatermarkState {
	return WatermarkState{}
}

func (fn *readFn) CreateWatermarkEstimator(s WatermarkState) *watermarkEstimator {
	return &watermarkEstimator{state: s, idleAdvance: fn.Config.IdleAdvance}
}

func (fn *readFn) WatermarkEstimatorState(w *watermarkEstimator) WatermarkState { return w.state }

func (fn *readFn) ProcessElement(ctx context.Context, we *watermarkEstimator, rt *sdf.LockRTracker, _ []byte, emit func(beam.EventTime, Message)) (sdf.ProcessContinuation, error) {
	cfg := &fn.Config
	var emptyAt int64 // when a pull last found the subscription empty
	defer func() { publishComplete(cfg.Name, we, emptyAt) }()
	pos := rt.GetRestriction().(Restriction).Start
	start := time.Now()
	var first time.Time // first message of this bundle
	n := 0
	backoff := 50 * time.Millisecond
	for {
		now := time.Now()
		we.idle(now)
		switch {
		case draining(cfg.Name), cfg.MaxIdle > 0 && now.Sub(fn.idleSince) >= cfg.MaxIdle:
			rt.TryClaim(int64(math.MaxInt64)) // ends the restriction
			return sdf.StopProcessing(), nil
		case n >= cfg.BundleSize, n > 0 && now.Sub(first) >= cfg.BundleWait:
			return sdf.ResumeProcessingIn(0), nil
		case n == 0 && now.Sub(start) >= idleBundle:
			return sdf.ResumeProcessingIn(0), nil
		}
		room := min(cfg.PullSize, cfg.BundleSize-n, cfg.MaxOutstanding-fn.acker.InFlight())
		if room <= 0 {
			if n > 0 {
				return sdf.ResumeProcessingIn(0), nil
			}
			sleep(ctx, pollInterval)
			continue
		}
		resp, err := fn.acker.Client().Pull(ctx, &pubsubpb.PullRequest{
			Subscription:      string(cfg.Subscription),
			MaxMessages:       int32(room),
			ReturnImmediately: true, //nolint:staticcheck // deprecated, but the fake's long poll costs 500ms
		})
		if err != nil {
			if ctx.Err() != nil || !transient(err) {
				return sdf.StopProcessing(), fmt.Errorf("pull from %s: %w", cfg.Subscription, err)
			}
			sleep(ctx, backoff)
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		msgs := resp.GetReceivedMessages()
		if len(msgs) == 0 {
			emptyAt = now.UnixMicro() // the pull started after now
			sleep(ctx, pollInterval)
			continue
		}
		ids := make([]string, len(msgs))
		for i, rm := range msgs {
			ids[i] = rm.GetAckId()
		}
		fn.acker.Track(ids)
		if n == 0 {
			first = now
		}
		fn.idleSince = now
		for i, rm := range msgs {
			if !rt.TryClaim(pos) {
				// MaxMessages reached: what was pulled beyond it is left
				// for Pub/Sub to redeliver.
				if err := fn.acker.Nack(ctx, ids[i:]); err != nil {
					return sdf.StopProcessing(), err
				}
				return sdf.StopProcessing(), nil
			}
			pos++
			n++
			m := rm.GetMessage()
			msg := Message{ID: m.GetMessageId(), AckID: rm.GetAckId(), Data: m.GetData(), PublishTime: m.GetPublishTime().AsTime().UnixMicro()}
			ts := fn.stamp(&msg, we, now)
			emit(ts, msg)
		}
		fn.pulled.Inc(ctx, int64(len(msgs)))
	}
}

// stamp sets the message's event time, lateness and watermark and returns
// its element timestamp.
func (fn *readFn) stamp(m *Message, we *watermarkEstimator, now time.Time) beam.EventTime {
	e, err := fn.Set.DecodeJSON(m.Data)
	if err == nil {
		err = transforms.CheckEventTime(e)
	}
	if err == nil && e.Time != 0 {
		m.EventTime = e.Time
		if we.state.Seen && e.Time < we.state.Watermark-fn.Config.AllowedLateness.Microseconds() {
			m.Late = true
		}
		we.observe(e.Time, now)
	}
	m.Watermark = we.state.Watermark
	if m.EventTime == 0 {
		if !we.state.Seen {
			return mtime.FromMilliseconds(m.PublishTime / 1000)
		}
		return mtime.FromMilliseconds(we.state.Watermark / 1000)
	}
	return transforms.EventTimestamp(e)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted, codes.Internal, codes.Unknown:
		return true
	}
	return false
}

// tracker claims message positions in [Start, End). It refuses dynamic
// splits and only checkpoints (TrySplit(0)), so a subscription is read by
// one bundle at a time.
type tracker struct {
	rest    Restriction
	claimed int64 // last claimed position, Start-1 before the first
	stopped bool
}

func (t *tracker) TryClaim(pos any) bool {
	p := pos.(int64)
	if t.stopped || p >= t.rest.End {
		t.stopped = true
		return false
	}
	t.claimed = p
	return true
}

func (t *tracker) GetError() error { return nil }

func (t *tracker) TrySplit(fraction float64) (primary, residual any, err error) {
	if fraction != 0 || t.stopped {
		return t.rest, nil, nil
	}
	next := t.claimed + 1
	res := Restriction{Start: next, End: t.rest.End}
	t.rest.End = next
	t.stopped = true
	return t.rest, res, nil
}

func (t *tracker) GetProgress() (done, remaining float64) {
	done = float64(t.claimed + 1 - t.rest.Start)
	return done, float64(min(t.rest.End-t.claimed-1, 1<<20))
}

func (t *tracker) IsDone() bool { return t.stopped || t.claimed+1 >= t.rest.End }

func (t *tracker) GetRestriction() any { return t.rest }

func (t *tracker) IsBounded() bool { return false }
