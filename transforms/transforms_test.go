package transforms

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/teststream"
	"github.com/google/go-cmp/cmp"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/schemastest"
	"github.com/tandem-fp/tandem/transforms/aggregate"
)

func TestMain(m *testing.M) { ptest.Main(m) }

func init() {
	register.DoFn2x1[Tile, func(string), error](&formatTileFn{})
	register.Function1x1[DeadLetter, string](formatDeadLetter)
	register.Emitter1[string]()
}

const testDef = `
name: cards
entity: {name: card, key: card_id}
event_time: ts
fields:
  card_id: string
  merchant: string
  amount: float64
  ts: timestamp
allowed_lateness: 10m
features:
  - {name: n_1h, op: count, window: 1h}
  - {name: amount_sum_1h, op: sum, field: amount, window: 1h}
  - {name: amount_max_24h, op: max, field: amount, window: 24h}
  - {name: merchants_7d, op: approx_count_distinct, field: merchant, window: 7d}
  - {name: last_merchant, op: last, field: merchant, window: 7d}
`

func testSet(t *testing.T) *schemas.FeatureSet {
	t.Helper()
	return schemastest.MustParse(t, testDef)
}

// formatTileFn renders a tile as "entity/feature/start=value" so that tiles
// computed by a pipeline compare with tiles computed directly, independent of
// float summation order in the encodings.
type formatTileFn struct {
	Set *schemas.FeatureSet `json:"set"`
}

func (fn *formatTileFn) ProcessElement(t Tile, emit func(string)) error {
	p, err := aggregate.Decode(t.Partial)
	if err != nil {
		return fmt.Errorf("decode tile %s/%s: %w", t.Entity, t.Feature, err)
	}
	emit(formatTile(t.Entity, t.Feature, t.Start, p))
	return nil
}

func formatTile(entity, feature string, start int64, p aggregate.Partial) string {
	v, ok := p.Result()
	val := "null"
	if ok {
		val = v.String()
		if v.Type == schemas.Float64 {
			val = fmt.Sprintf("%.9g", v.Float)
		}
	}
	return fmt.Sprintf("%s/%s/%s=%s", entity, feature, time.UnixMicro(start).UTC().Format(time.RFC3339), val)
}

func formatDeadLetter(d DeadLetter) string { return d.Stage + ": " + string(d.Raw) }

// directTiles computes the expected tiles straight from the algebra.
func directTiles(set *schemas.FeatureSet, events []schemas.Event) []string {
	byEntity := map[string]*TileSet{}
	for _, e := range events {
		ts, ok := byEntity[e.Key]
		if !ok {
			ts = NewTileSet()
			byEntity[e.Key] = ts
		}
		ts.Add(set, e)
	}
	var out []string
	for entity, ts := range byEntity {
		for _, id := range ts.IDs() {
			out = append(out, formatTile(entity, set.Features[id.Feature].Name, id.Start, ts.Tiles[id]))
		}
	}
	sort.Strings(out)
	return out
}

// t0 is the first event time of the tests. They decode and tile events in
// event time, without Bigtable or a clock.
var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC) // fixed date: see above

func jsonEvent(card, merchant string, amount float64, at time.Time) []byte {
	return fmt.Appendf(nil, `{"card_id":%q,"merchant":%q,"amount":%v,"ts":%q}`, card, merchant, amount, at.Format(time.RFC3339Nano))
}

// fixed dates: decoding and tiling only (no Bigtable, no clock).
func TestDecodeAndTile(t *testing.T) {
	set := testSet(t)
	var raw [][]byte
	var events []schemas.Event
	for i := range 200 {
		card := fmt.Sprintf("c_%d", 1000+i%7)
		at := t0.Add(time.Duration(i*97) * time.Second)
		b := jsonEvent(card, fmt.Sprintf("m_%d", i%13), float64(i)+0.25, at)
		raw = append(raw, b)
		e, err := set.DecodeJSON(b)
		if err != nil {
			t.Fatalf("DecodeJSON(%s) = %v", b, err)
		}
		events = append(events, e)
	}
	bad := [][]byte{
		[]byte(`{"card_id":"c_1","amount":"lots","ts":"2026-11-20T10:00:00Z"}`),
		[]byte(`{"merchant":"m_1","amount":1,"ts":"2026-11-20T10:00:00Z"}`),
		[]byte(`not json`),
	}

	p, s := beam.NewPipelineWithRoot()
	in := beam.CreateList(s, append(append([][]byte{}, raw...), bad...))
	decoded, dead := DecodeJSON(s, set, in)
	tiles := TileEvents(s, set, decoded)
	passert.Equals(s, beam.ParDo(s, &formatTileFn{Set: set}, tiles), toAny(directTiles(set, events))...)
	var wantDead []any
	for _, b := range bad {
		wantDead = append(wantDead, StageDecode+": "+string(b))
	}
	passert.Equals(s, beam.ParDo(s, formatDeadLetter, dead), wantDead...)
	ptest.RunAndValidate(t, p)
}

// fixed dates: decoding only: no clock is involved.
func TestDeadLetterReasons(t *testing.T) {
	set := testSet(t)
	tests := []struct {
		name, raw, reason string
	}{
		{"wrong type", `{"card_id":"c_1","amount":"lots","ts":"2026-11-20T10:00:00Z"}`, "amount"},
		{"missing key", `{"amount":1,"ts":"2026-11-20T10:00:00Z"}`, "card_id"},
		{"bad time", `{"card_id":"c_1","ts":"yesterday"}`, "ts"},
		{"not json", `{`, "JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := set.DecodeJSON([]byte(tc.raw))
			if err == nil || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("DecodeJSON(%q) = %v, want an error naming %q", tc.raw, err, tc.reason)
			}
		})
	}
}

func TestToMutations(t *testing.T) {
	set := testSet(t)
	f, _ := set.Feature("n_1h")
	p := aggregate.For(f)
	p.Add(schemas.Value{}, t0.UnixMicro())
	enc, err := aggregate.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	tile := Tile{Set: set.Name, Entity: "c_1", Feature: "n_1h", Start: t0.UnixMicro(), Partial: enc}
	got, err := TileMutation(set, schemas.FamilyStream, tile)
	if err != nil {
		t.Fatalf("TileMutation = %v", err)
	}
	want := RowMutation{RowKey: "cards#c_1", Cells: []Cell{{Family: "stream", Qualifier: "n_1h@1m", Timestamp: t0.UnixMicro(), Value: enc}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("TileMutation mismatch (-want +got):\n%s", diff)
	}
	if _, err := TileMutation(set, schemas.FamilyBatch, Tile{Feature: "nope"}); err == nil {
		t.Errorf("TileMutation(unknown feature) = nil error, want error")
	}
}

func TestTileSetEncoding(t *testing.T) {
	set := testSet(t)
	ts := NewTileSet()
	for i := range 50 {
		e, err := set.DecodeJSON(jsonEvent("c_1", fmt.Sprintf("m_%d", i%5), float64(i), t0.Add(time.Duration(i)*time.Minute)))
		if err != nil {
			t.Fatal(err)
		}
		ts.Add(set, e)
	}
	b, err := ts.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back TileSet
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatalf("UnmarshalBinary = %v", err)
	}
	b2, err := back.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(b, b2); diff != "" {
		t.Errorf("re-encoding differs:\n%s", diff)
	}
	for i := range len(b) {
		var x TileSet
		_ = x.UnmarshalBinary(b[:i]) // must not panic
	}
}

// TestStreamingTiles feeds events out of order and late through teststream
// into fixed windows of the tile size: out-of-order events within the
// allowed lateness land in their tiles; an event behind the watermark by more
// than the allowed lateness is dropped by the window (the streaming pipeline
// sends such events to dead-letter before windowing).
//
// fixed dates: tiling in event time with teststream (no Bigtable, no clock).
func TestStreamingTiles(t *testing.T) {
	set := testSet(t)
	ms := func(t time.Time) int64 { return t.UnixMilli() }
	e1 := jsonEvent("c_1", "m_a", 1, t0.Add(30*time.Second))
	e2 := jsonEvent("c_1", "m_b", 2, t0.Add(90*time.Second))
	e3 := jsonEvent("c_1", "m_c", 4, t0.Add(10*time.Second)) // out of order, on time
	late := jsonEvent("c_1", "m_d", 8, t0.Add(20*time.Second))

	cfg := teststream.NewConfig()
	must(t, cfg.AddElements(ms(t0.Add(30*time.Second)), e1))
	must(t, cfg.AddElements(ms(t0.Add(90*time.Second)), e2))
	must(t, cfg.AddElements(ms(t0.Add(10*time.Second)), e3))
	must(t, cfg.AdvanceWatermark(ms(t0.Add(30*time.Minute))))
	must(t, cfg.AddElements(ms(t0.Add(20*time.Second)), late))
	must(t, cfg.AdvanceWatermarkToInfinity())

	p, s := beam.NewPipelineWithRoot()
	raw := teststream.Create(s, cfg)
	events, _ := DecodeJSON(s, set, raw)
	windowed := beam.WindowInto(s, window1m(), events, beam.AllowedLateness(set.AllowedLateness))
	tiles := TileEvents(s, set, windowed)
	n1h := beam.ParDo(s, &formatTileFn{Set: set}, beam.ParDo(s, &onlyFeatureFn{Feature: "n_1h"}, tiles))
	n1h = beam.WindowInto(s, window.NewGlobalWindows(), n1h)
	passert.Equals(s, n1h,
		"c_1/n_1h/2026-11-20T10:00:00Z=2",
		"c_1/n_1h/2026-11-20T10:01:00Z=1",
	)
	ptest.RunAndValidate(t, p)
}

type onlyFeatureFn struct{ Feature string }

func (fn *onlyFeatureFn) ProcessElement(t Tile, emit func(Tile)) {
	if t.Feature == fn.Feature {
		emit(t)
	}
}

func init() { register.DoFn2x0[Tile, func(Tile)](&onlyFeatureFn{}) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func window1m() *window.Fn { return window.NewFixedWindows(time.Minute) }
