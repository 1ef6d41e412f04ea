package streampipe_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigtable"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/google/go-cmp/cmp"

	"github.com/tandem-fp/tandem/pipelines/streaming/localstack"
	"github.com/tandem-fp/tandem/pipelines/streaming/streampipe"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/schemas/schemastest"
	"github.com/tandem-fp/tandem/transforms"
	"github.com/tandem-fp/tandem/transforms/aggregate"
	"github.com/tandem-fp/tandem/transforms/pubsubread"
)

func TestMain(m *testing.M) { ptest.Main(m) }

const testDef = `
name: cards
entity: {name: card, key: card_id}
event_time: ts
fields:
  card_id: string
  merchant: string
  amount: float64
  ts: timestamp
sources:
  stream: {pubsub: {subscription: projects/tandem-local/subscriptions/cards}}
allowed_lateness: 10m
features:
  - {name: n_1h, op: count, window: 1h}
  - {name: amount_sum_1h, op: sum, field: amount, window: 1h}
  - {name: amount_max_24h, op: max, field: amount, window: 24h}
  - {name: merchants_7d, op: approx_count_distinct, field: merchant, window: 7d}
  - {name: last_merchant, op: last, field: merchant, window: 7d, tile: 1h}
`

// t0 is 10:00 UTC two days ago: the tiles the tests write stay inside the
// table's max-age GC (8d), which the emulator applies against the wall
// clock, on any date.
var t0 = schemastest.DaysAgo(2).Add(10 * time.Hour)

func testSet(t testing.TB) *schemas.FeatureSet {
	t.Helper()
	return schemastest.MustParse(t, testDef)
}

func jsonEvent(card, merchant string, amount float64, at time.Time) []byte {
	return fmt.Appendf(nil, `{"card_id":%q,"merchant":%q,"amount":%v,"ts":%q}`, card, merchant, amount, at.Format(time.RFC3339Nano))
}

func startStack(t testing.TB, set *schemas.FeatureSet) *localstack.Stack {
	t.Helper()
	st, err := localstack.Start(context.Background(), localstack.Options{}, set)
	if err != nil {
		t.Fatalf("localstack.Start = %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// publish publishes raw messages to the set's topic on the in-process fake.
func publish(st *localstack.Stack, set *schemas.FeatureSet, msgs ...[]byte) {
	topic := localstack.Topic(pubsubread.Subscription(set.Sources.Stream.Subscription))
	for _, m := range msgs {
		st.PubSub.Publish(topic, m, nil)
	}
}

// waitAcked waits until every message published so far is acknowledged.
func waitAcked(t *testing.T, st *localstack.Stack, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		unacked := 0
		for _, m := range st.PubSub.Messages() {
			if m.Acks == 0 {
				unacked++
			}
		}
		if unacked == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still unacknowledged after %s", unacked, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func options(st *localstack.Stack, set *schemas.FeatureSet, deadLetter string) streampipe.Options {
	return streampipe.Options{
		Set:        set,
		Bigtable:   st.BigtableConfig,
		PubSub:     st.PubSubEndpoint,
		DeadLetter: deadLetter,
		MaxIdle:    3 * time.Second,
	}
}

// runAsync runs the pipeline and returns a channel with its outcome.
func runAsync(o streampipe.Options) <-chan runOutcome {
	ch := make(chan runOutcome, 1)
	go func() {
		r, err := streampipe.Run(context.Background(), o)
		ch <- runOutcome{r, err}
	}()
	return ch
}

type runOutcome struct {
	res streampipe.Result
	err error
}

func wait(t *testing.T, ch <-chan runOutcome, timeout time.Duration) streampipe.Result {
	t.Helper()
	select {
	case out := <-ch:
		if out.err != nil {
			t.Fatalf("Run = %v", out.err)
		}
		return out.res
	case <-time.After(timeout):
		t.Fatalf("pipeline still running after %s", timeout)
	}
	return streampipe.Result{}
}

// TestLocalEndToEnd publishes events in order, out of order, late and
// malformed, runs until idle, and compares the stream tiles in Bigtable
// with the tiles computed directly with the algebra from the on-time events.
func TestLocalEndToEnd(t *testing.T) {
	set := testSet(t)
	st := startStack(t, set)
	dl := filepath.Join(t.TempDir(), "dead", "cards")
	run := runAsync(options(st, set, dl))

	var onTime [][]byte
	// Phase 1: in order, over 8 minutes of event time (inside the allowed
	// lateness, since the fake delivers a backlog in random order), then
	// some out of order, and malformed ones.
	for i := range 400 {
		at := t0.Add(time.Duration(i) * 1200 * time.Millisecond)
		onTime = append(onTime, jsonEvent(fmt.Sprintf("c_%d", i%7), fmt.Sprintf("m_%d", i%11), float64(i)+0.25, at))
	}
	for i := range 20 {
		onTime = append(onTime, jsonEvent(fmt.Sprintf("c_%d", i%3), "m_ooo", 1.5, t0.Add(time.Duration(i)*17*time.Second)))
	}
	bad := [][]byte{
		fmt.Appendf(nil, `{"card_id":"c_1","amount":"lots","ts":%q}`, t0.Format(time.RFC3339)),
		fmt.Appendf(nil, `{"merchant":"m_1","amount":1,"ts":%q}`, t0.Format(time.RFC3339)),
		[]byte(`not json`),
	}
	publish(st, set, onTime...)
	publish(st, set, bad...)
	waitAcked(t, st, 30*time.Second)

	// Phase 2: the watermark moves to 10:30.
	mover := jsonEvent("c_9", "m_x", 3, t0.Add(30*time.Minute))
	onTime = append(onTime, mover)
	publish(st, set, mover)
	waitAcked(t, st, 30*time.Second)

	// Phase 3: one event 29 minutes behind (late: more than 10m behind the
	// watermark) and one 5 minutes behind (out of order, on time).
	late := jsonEvent("c_1", "m_late", 100, t0.Add(time.Minute))
	ooo := jsonEvent("c_1", "m_ooo2", 7, t0.Add(25*time.Minute))
	onTime = append(onTime, ooo)
	publish(st, set, late, ooo)
	published := time.Now()

	res := wait(t, run, 2*time.Minute)

	if diff := cmp.Diff(directTiles(t, set, onTime), storedTiles(t, st.BigtableConfig, set)); diff != "" {
		t.Errorf("stream tiles differ from the direct computation (-want +got):\n%s", diff)
	}
	got := deadLetterLines(t, dl)
	want := []string{"late: " + string(late)}
	for _, b := range bad {
		want = append(want, "decode: "+string(b))
	}
	sort.Strings(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dead letters (-want +got):\n%s", diff)
	}
	for name, want := range map[string]int64{
		"cards_stream_events":      int64(len(onTime)),
		"cards_dead_letter_decode": 3,
		"cards_dead_letter_late":   1,
		"pubsub_messages_pulled":   int64(len(onTime) + len(bad) + 1),
	} {
		if got := res.Counters[name]; got != want {
			t.Errorf("counter %s = %d, want %d (all: %v)", name, got, want, res.Counters)
		}
	}
	meta := readMeta(t, st.BigtableConfig, set)
	if want := t0.Add(30 * time.Minute); !meta.StreamLatestTile.Equal(want) {
		t.Errorf("stream latest tile = %s, want %s", meta.StreamLatestTile, want)
	}
	// The events are days old; once everything published was read, the
	// stream watermark is the moment the subscription was found empty.
	if w := meta.StreamWatermark; w.Before(published) || w.After(time.Now()) {
		t.Errorf("stream watermark = %s, want between the last publish %s and now", w, published.UTC())
	}
}

// TestStreamWatermarkMovesWhileIdle: the only event is an hour old and the
// subscription then stays empty; the stream watermark is not held back at
// the event's time but follows the moments the subscription is found empty,
// so a caught-up, idle stream does not look stale.
func TestStreamWatermarkMovesWhileIdle(t *testing.T) {
	set := testSet(t)
	st := startStack(t, set)
	publish(st, set, jsonEvent("c_1", "m_1", 1, time.Now().Add(-time.Hour)))
	o := options(st, set, "")
	o.MaxIdle = 4 * time.Second
	run := runAsync(o)
	waitAcked(t, st, 30*time.Second)
	acked := time.Now()
	wait(t, run, 2*time.Minute)
	if got := readMeta(t, st.BigtableConfig, set).StreamWatermark; got.Before(acked) || got.After(time.Now()) {
		t.Errorf("stream watermark = %s, want between the event's acknowledgement %s and now", got, acked.UTC())
	}
}

// TestRestartSeedsTiles runs the pipeline twice over events of the same
// tiles: the second run must add to the stored tiles, not overwrite them.
func TestRestartSeedsTiles(t *testing.T) {
	set := testSet(t)
	st := startStack(t, set)
	var all [][]byte
	for round := range 2 {
		var msgs [][]byte
		for i := range 150 {
			at := t0.Add(time.Duration(i*2+round) * time.Second)
			msgs = append(msgs, jsonEvent(fmt.Sprintf("c_%d", i%5), fmt.Sprintf("m_%d_%d", round, i%9), float64(i), at))
		}
		all = append(all, msgs...)
		publish(st, set, msgs...)
		o := options(st, set, "")
		o.MaxIdle = time.Second
		wait(t, runAsync(o), 2*time.Minute)
	}
	if diff := cmp.Diff(directTiles(t, set, all), storedTiles(t, st.BigtableConfig, set)); diff != "" {
		t.Errorf("after a restart, stream tiles differ from the direct computation (-want +got):\n%s", diff)
	}
}

// TestEntityTilesOnPrism checks the Dataflow variant's stateful writer on
// prism, with a bounded input stamped with the events' times.
func TestEntityTilesOnPrism(t *testing.T) {
	set := testSet(t)
	st := startStack(t, set)
	var raw [][]byte
	var msgs []any
	for i := range 300 {
		b := jsonEvent(fmt.Sprintf("c_%d", i%6), fmt.Sprintf("m_%d", i%13), float64(i)/3, t0.Add(time.Duration(i)*7*time.Second))
		raw = append(raw, b)
		msgs = append(msgs, pubsubread.Message{ID: fmt.Sprint(i), Data: b, PublishTime: t0.Add(time.Duration(i) * 7 * time.Second).UnixMicro()})
	}
	msgs = append(msgs, pubsubread.Message{ID: "bad", Data: []byte(`{"nope":1}`), PublishTime: t0.UnixMicro()})
	dl := filepath.Join(t.TempDir(), "dead")
	p, s := beam.NewPipelineWithRoot()
	late, dead := streampipe.WriteEntityTiles(s, set, st.BigtableConfig, beam.ParDo(s, &stampFn{}, beam.Create(s, msgs...)))
	streampipe.WriteDeadLetters(s, dl, beam.Flatten(s, late, dead))
	if _, err := beam.Run(context.Background(), streampipe.RunnerPrism, p); err != nil {
		t.Fatalf("run = %v", err)
	}
	if diff := cmp.Diff(directTiles(t, set, raw), storedTiles(t, st.BigtableConfig, set)); diff != "" {
		t.Errorf("stream tiles differ from the direct computation (-want +got):\n%s", diff)
	}
	letters, err := streampipe.ReadDeadLetters(dl)
	if err != nil || len(letters) != 1 || letters[0].Stage != transforms.StageDecode {
		t.Errorf("dead letters = %v, %v; want one decode failure", letters, err)
	}
}

// deadLetterLines reads the dead letters written under prefix as sorted
// "stage: raw" lines.
func deadLetterLines(t *testing.T, prefix string) []string {
	t.Helper()
	letters, err := streampipe.ReadDeadLetters(prefix)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range letters {
		out = append(out, l.Stage+": "+string(l.Raw))
	}
	sort.Strings(out)
	return out
}

// directTiles computes the expected tiles from raw events with the algebra,
// and each entity's ~newest cell: its newest event time.
func directTiles(t *testing.T, set *schemas.FeatureSet, raw [][]byte) []string {
	t.Helper()
	byEntity := map[string]*transforms.TileSet{}
	newest := map[string]int64{}
	for _, b := range raw {
		e, err := set.DecodeJSON(b)
		if err != nil {
			t.Fatalf("DecodeJSON(%s) = %v", b, err)
		}
		ts := byEntity[e.Key]
		if ts == nil {
			ts = transforms.NewTileSet()
			byEntity[e.Key] = ts
		}
		ts.Add(set, e)
		newest[e.Key] = max(newest[e.Key], e.Time)
	}
	var out []string
	for entity, n := range newest {
		out = append(out, formatNewest(entity, n))
	}
	for entity, ts := range byEntity {
		for _, id := range ts.IDs() {
			f := set.Features[id.Feature]
			out = append(out, formatTile(entity, f.Qualifier(), id.Start, ts.Tiles[id]))
		}
	}
	sort.Strings(out)
	return out
}

// storedTiles reads every stream tile of set from Bigtable.
func storedTiles(t *testing.T, cfg bigtablestore.Config, set *schemas.FeatureSet) []string {
	t.Helper()
	ctx := context.Background()
	cl, err := cfg.NewClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []string
	err = cl.Open(cfg.Table).ReadRows(ctx, bigtable.PrefixRange(set.Name+"#"), func(r bigtable.Row) bool {
		_, entity, _ := schemas.SplitRowKey(r.Key())
		for _, it := range r[schemas.FamilyStream] {
			if it.Column == schemas.FamilyStream+":"+schemas.QualifierChain {
				continue // the Dataflow variant's bookkeeping, not a tile
			}
			if it.Column == schemas.FamilyStream+":"+schemas.QualifierNewest {
				n, ok := schemas.DecodeNewest(it.Value)
				if !ok || int64(it.Timestamp) != n-n%1000 {
					t.Errorf("%s %s = %x at %d, want 8 bytes stamped with their time in ms", r.Key(), it.Column, it.Value, it.Timestamp)
					return false
				}
				out = append(out, formatNewest(entity, n))
				continue
			}
			p, err := aggregate.Decode(it.Value)
			if err != nil {
				t.Errorf("decode %s %s: %v", r.Key(), it.Column, err)
				return false
			}
			out = append(out, formatTile(entity, strings.TrimPrefix(it.Column, schemas.FamilyStream+":"), int64(it.Timestamp), p))
		}
		return true
	}, bigtable.RowFilter(bigtable.FamilyFilter(schemas.FamilyStream)))
	if err != nil {
		t.Fatalf("read stream tiles: %v", err)
	}
	sort.Strings(out)
	return out
}

func readMeta(t *testing.T, cfg bigtablestore.Config, set *schemas.FeatureSet) bigtablestore.Meta {
	t.Helper()
	ctx := context.Background()
	cl, err := cfg.NewClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	meta, err := bigtablestore.ReadMeta(ctx, cl.Open(cfg.Table), set.Name)
	if err != nil {
		t.Fatal(err)
	}
	return meta
}

func formatTile(entity, qualifier string, start int64, p aggregate.Partial) string {
	v, ok := p.Result()
	val := "null"
	if ok {
		val = v.String()
		if v.Type == schemas.Float64 {
			val = fmt.Sprintf("%.9g", v.Float)
		}
	}
	return fmt.Sprintf("%s/%s/%s=%s", entity, qualifier, time.UnixMicro(start).UTC().Format(time.RFC3339), val)
}

// formatNewest formats an entity's ~newest cell for a diff.
func formatNewest(entity string, t int64) string {
	return entity + "/" + schemas.QualifierNewest + "=" + time.UnixMicro(t).UTC().Format(time.RFC3339Nano)
}
