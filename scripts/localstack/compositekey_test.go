package localstack

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigtable"

	"github.com/tandem-fp/tandem/pipelines/batch/batchpipe"
	"github.com/tandem-fp/tandem/pipelines/streaming/streampipe"
	"github.com/tandem-fp/tandem/pipelines/training/trainpipe"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/schemastest"
	"github.com/tandem-fp/tandem/schemas/schemastest/brute"
	"github.com/tandem-fp/tandem/serving"
	"github.com/tandem-fp/tandem/transforms"
)

// compositeYAML is a feature set keyed by (user, merchant, terminal): two
// string parts, so that a naive join of the parts would be ambiguous, and
// an int64 part. Every op family the pipelines treat differently (count,
// integer and float sums, last, a list op, top_k) and two filters, one on
// a key part.
const compositeYAML = `
name: um_e2e
entity: {name: user_merchant_terminal, key: [user, merchant, terminal]}
event_time: ts
fields:
  user: string
  merchant: string
  terminal: int64
  amount: float64
  qty: int64
  channel: string
  approved: bool
  ts: timestamp
sources: {stream: {pubsub: {subscription: projects/tandem-local/subscriptions/um-e2e}}}
allowed_lateness: 3m
features:
  - {name: txn_count_10m, op: count, window: 10m, tile: 1m}
  - {name: txn_count_1h, op: count, window: 1h, tile: 1m}
  - {name: qty_sum_1h, op: sum, field: qty, window: 1h, tile: 1m}
  - {name: amount_sum_10m, op: sum, field: amount, window: 10m, tile: 1m}
  - {name: last_amount_1h, op: last, field: amount, window: 1h, tile: 1m}
  - {name: last3_channel_1h, op: last_k, field: channel, k: 3, window: 1h, tile: 1m}
  - {name: top2_channel_1h, op: top_k, field: channel, k: 2, window: 1h, tile: 1m}
  - {name: declined_count_1h, op: count, window: 1h, tile: 1m, where: not approved}
  - {name: big_count_10m, op: count, window: 10m, tile: 1m, where: 'amount > 100 and terminal >= 0'}
`

// ckTuple is one (user, merchant, terminal) entity of um_e2e, with the
// entity part of its row key written out by hand from the README's
// "Composite keys" (each part verbatim or in decimal, '\' and '#' inside
// a part escaped by a '\', joined by '#'), and how many of the history's
// and the live stream's events it gets (relative weights; 0: none).
type ckTuple struct {
	user, merchant string
	terminal       int64
	row            string
	hist, live     int
}

// ckTuples stress the row-key encoding: parts holding the separator and
// the escape; ("a#b", "c") and ("a", "b#c") are equal joined naively;
// (`7\`, "a#b") and (`7#a\`, "b") are equal if '#' were escaped but '\'
// not; the same text in NFC and NFD; URL-special characters and a space;
// int64 parts 0, negative, the smallest int64 and one above 2^53 (no
// float64 holds it). The last tuple has no events: a neighbour of the
// first that differs only in its int64 part.
var ckTuples = []ckTuple{
	{"a#b", "c", 0, `a\#b#c#0`, 8, 4},
	{"a", "b#c", 0, `a#b\#c#0`, 3, 2},
	{`7\`, "a#b", 1, `7\\#a\#b#1`, 3, 2},
	{`7#a\`, "b", 1, `7\#a\\#b#1`, 2, 2},
	{"#", "#", -5, `\##\##-5`, 0, 2}, // live only
	{`\`, `\`, 0, `\\#\\#0`, 2, 0},   // history only
	{"Z\u00fcrich", "café ☕", math.MinInt64, "Z\u00fcrich#café ☕#-9223372036854775808", 2, 1},
	{"Zu\u0308rich", "café ☕", math.MinInt64, "Zu\u0308rich#café ☕#-9223372036854775808", 1, 1},
	{"ユーザー", "a&b=c+d%2F/e? #", 9007199254740993, `ユーザー#a&b=c+d%2F/e? \##9007199254740993`, 2, 1},
	{"a", "b#c", -7, `a#b\#c#-7`, 1, 1},
	{"a#b", "c", 1, `a\#b#c#1`, 0, 0}, // no events
}

// ckEvent is an event of um_e2e as raw JSON, the way a producer writes it,
// and as the pipelines decode it (schemas.DecodeJSON: its entity key comes
// from the real decode path).
type ckEvent struct {
	raw   []byte
	ev    schemas.Event
	tuple int
}

// ckKeep is the `where:` of a feature of compositeYAML written out in Go,
// sharing no code with schemas' expressions (fields: user merchant
// terminal amount qty channel approved ts).
func ckKeep(feature string) func(schemas.Event) bool {
	switch feature {
	case "declined_count_1h": // not approved
		return func(e schemas.Event) bool { return e.Values[6].Type == schemas.Bool && e.Values[6].Int == 0 }
	case "big_count_10m": // amount > 100 and terminal >= 0
		return func(e schemas.Event) bool {
			return e.Values[3].Type == schemas.Float64 && e.Values[3].Float > 100 && e.Values[2].Int >= 0
		}
	}
	return nil
}

// ckRead is one read of every tuple over HTTP: the instant asked (zero:
// the server's now), the instant answered, and each tuple's features.
type ckRead struct {
	form  string // GET or POST
	asked time.Time
	at    time.Time
	tuple int
	feats map[string]featureJSON
}

// TestCompositeKeyEndToEnd runs a composite-key feature set through the
// whole platform: history through the batch pipeline (files, prism,
// Bigtable emulator), live events stamped with the wall clock through the
// streaming pipeline (Pub/Sub fake, prism), stopped and restarted midway
// (the new run seeds the tuples' tiles from their escaped rows), malformed
// events of both dead-lettered with the key part named, late ones as late,
// reads over real HTTP in both
// forms the API takes key parts (GET query parameters, POST key objects)
// at the server's now and at past instants on and off tile boundaries,
// each value checked against brute force over the raw events of its
// tuple, picked by the events' key fields; then the row keys in Bigtable
// against the documented encoding, and the training pipeline over the same
// events with the exact reads as its spine (zero skew).
func TestCompositeKeyEndToEnd(t *testing.T) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	set := schemastest.MustParse(t, compositeYAML)
	b, err := StartBackends(ctx, []*schemas.FeatureSet{set}, BackendOptions{}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(13, 4))

	channels := []string{"pos", "web", "app", "moto", "atm"}
	raw := func(tu ckTuple, at time.Time) map[string]any {
		m := map[string]any{
			"user": tu.user, "merchant": tu.merchant, "terminal": tu.terminal,
			"amount":   float64(rng.IntN(25000)) / 100,
			"qty":      rng.Int64N(12) - 3,
			"channel":  channels[min(rng.IntN(8), len(channels)-1)], // atm (the last) most often: top_k has a leader
			"approved": rng.IntN(4) > 0,
			"ts":       at.UTC().Format(time.RFC3339Nano),
		}
		if rng.IntN(25) == 0 {
			m[[]string{"amount", "qty", "channel", "approved"}[rng.IntN(4)]] = nil // a null now and then
		}
		return m
	}
	encode := func(m map[string]any) []byte {
		data, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	pick := func(weight func(ckTuple) int) int {
		total := 0
		for _, tu := range ckTuples {
			total += weight(tu)
		}
		n := rng.IntN(total)
		for i, tu := range ckTuples {
			if n -= weight(tu); n < 0 {
				return i
			}
		}
		panic("unreachable")
	}
	event := func(i int, at time.Time) ckEvent {
		data := encode(raw(ckTuples[i], at))
		ev, err := set.DecodeJSON(data)
		if err != nil {
			t.Fatalf("DecodeJSON(%s): %v", data, err)
		}
		return ckEvent{raw: data, ev: ev, tuple: i}
	}
	histTuple := func() int { return pick(func(tu ckTuple) int { return tu.hist }) }
	liveTuple := func() int { return pick(func(tu ckTuple) int { return tu.live }) }

	// History: the hour and minute before a batch watermark within
	// the allowed lateness of now, so that the stream takes over from it;
	// events on tile boundaries, at the same instant, and just before the
	// watermark. Two malformed lines: a key part missing, one empty.
	now0 := time.Now().UTC()
	asOf := batchpipe.AlignAsOf(set, now0.Add(-30*time.Second))
	var history []ckEvent
	for range 600 {
		at := asOf.Add(-time.Duration(rng.Int64N(int64(61*time.Minute))) - time.Microsecond)
		if rng.IntN(2) == 0 {
			at = at.Truncate(time.Millisecond)
		}
		history = append(history, event(histTuple(), at))
	}
	for _, at := range []time.Time{asOf.Add(-time.Microsecond), asOf.Add(-time.Minute), asOf.Add(-10 * time.Minute), asOf.Add(-30 * time.Minute), asOf.Add(-60 * time.Minute)} {
		i := histTuple()
		history = append(history, event(i, at), event(i, at), event(histTuple(), at)) // ties for last
	}
	batchBad := [][]byte{
		encode(map[string]any{"user": "a#b", "terminal": 0, "amount": 1.5, "ts": asOf.Add(-time.Minute).Format(time.RFC3339Nano)}),
		encode(map[string]any{"user": "a", "merchant": "", "terminal": 0, "amount": 1.5, "ts": asOf.Add(-time.Minute).Format(time.RFC3339Nano)}),
	}
	histFile := filepath.Join(dir, "history.jsonl")
	writeFile(t, histFile, func(w *bufio.Writer) error {
		for i, e := range history {
			w.Write(append(e.raw, '\n'))
			if i == 100 || i == 400 {
				w.Write(append(batchBad[i/400], '\n'))
			}
		}
		return nil
	})
	res, err := batchpipe.Run(ctx, batchpipe.Config{
		Set: set, Source: schemas.BatchSource{Files: histFile}, AsOf: asOf,
		Bigtable: b.Bigtable, DeadLetter: filepath.Join(dir, "batch-dead"),
	})
	if err != nil {
		t.Fatalf("batch: %v", err)
	}
	if !res.Committed || res.Events != int64(len(history)) || res.OutOfRange != 0 || res.DeadLetters != 2 {
		t.Fatalf("batch: committed %v, %d events (%d out of range), %d dead letters; want true, %d (0), 2", res.Committed, res.Events, res.OutOfRange, res.DeadLetters, len(history))
	}
	checkDeadLetters(t, "batch", batchDeadLetters(t, filepath.Join(dir, "batch-dead.jsonl")), map[string]deadWant{
		string(batchBad[0]): {transforms.StageDecode, `missing entity key part "merchant"`},
		string(batchBad[1]): {transforms.StageDecode, `empty entity key part "merchant"`},
	})

	st := b.StartStream(ctx, set, StreamOptions{DeadLetter: filepath.Join(dir, "stream-dead")})
	srv, err := b.NewServer(serving.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()

	var live []ckEvent
	publish := func(msgs ...[]byte) {
		t.Helper()
		if err := b.Publish(ctx, set.Name, msgs...); err != nil {
			t.Fatal(err)
		}
		if err := b.WaitAcked(ctx); err != nil {
			t.Fatal(err)
		}
	}
	publishEvents := func(evs []ckEvent) {
		t.Helper()
		msgs := make([][]byte, len(evs))
		for i, e := range evs {
			msgs[i] = e.raw
		}
		publish(msgs...)
		live = append(live, evs...)
	}
	// The gap between the watermark and now, first: on the seam and after.
	gap := []ckEvent{event(liveTuple(), asOf), event(liveTuple(), asOf), event(liveTuple(), asOf.Add(time.Microsecond))}
	for range 25 {
		gap = append(gap, event(liveTuple(), asOf.Add(time.Duration(rng.Int64N(int64(now0.Sub(asOf)))))))
	}
	publishEvents(gap)

	// Live: bursts of events stamped as they are made, each followed, once
	// written and acknowledged, by real-time reads of every tuple at the
	// server's now, in both forms. Malformed events after the second, a
	// restart after its reads, late events after the fourth.
	nowTS := func() string { return time.Now().UTC().Format(time.RFC3339Nano) }
	streamBad := [][]byte{
		[]byte(`{"user":"a#b","terminal":0,"amount":2.5,"approved":true,"ts":"` + nowTS() + `"}`),
		[]byte(`{"user":"","merchant":"c","terminal":0,"amount":2.5,"approved":true,"ts":"` + nowTS() + `"}`),
		[]byte(`{"user":"a","merchant":"b#c","amount":2.5,"ts":"` + nowTS() + `"}`),
		[]byte(`{"user":"a","merchant":"b#c","terminal":null,"amount":2.5,"ts":"` + nowTS() + `"}`),
	}
	var streamLate [][]byte
	var reads []ckRead
	var runs []map[string]int64 // each stream run's counters
	stop := func() {
		t.Helper()
		r, err := st.Stop(ctx)
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		t.Logf("stream run %d counters: %v", len(runs)+1, r.Counters)
		runs = append(runs, r.Counters)
	}
	for round := range 6 {
		var burst []ckEvent
		for range 15 + rng.IntN(15) {
			burst = append(burst, event(liveTuple(), time.Now()))
			if rng.IntN(6) == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		publishEvents(burst)
		switch round {
		case 1:
			publish(streamBad...)
		case 3:
			// Late: more than the allowed lateness behind the newest
			// event; dead letters, counted nowhere.
			for _, i := range []int{0, 2} {
				e := event(i, time.Now().Add(-10*time.Minute))
				streamLate = append(streamLate, e.raw)
			}
			publish(streamLate...)
		}
		reads = append(reads, readTuples(t, hs.URL, set, time.Time{}, round)...)
		if round == 1 {
			// Stop the stream, queue events, restart it: the new run
			// catches up, seeding each tuple's tiles from its stored row
			// (its escaped key) rather than overwriting them.
			stop()
			var queued []ckEvent
			msgs := [][]byte{}
			for range 20 {
				e := event(liveTuple(), time.Now())
				queued, msgs = append(queued, e), append(msgs, e.raw)
			}
			if err := b.Publish(ctx, set.Name, msgs...); err != nil {
				t.Fatal(err)
			}
			live = append(live, queued...)
			st = b.StartStream(ctx, set, StreamOptions{DeadLetter: filepath.Join(dir, "stream-dead2")})
			if err := b.WaitAcked(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	stop()
	if runs[1][set.Name+"_stream_entities_seeded"] == 0 {
		t.Errorf("the restarted stream seeded no tuple's tiles from Bigtable: %v", runs[1])
	}
	sres := map[string]int64{}
	for _, r := range runs {
		for k, v := range r {
			sres[k] += v
		}
	}
	if got := sres[set.Name+"_dead_letter_decode"]; got != int64(len(streamBad)) {
		t.Errorf("stream decode dead letters = %d, want %d", got, len(streamBad))
	}
	if got := sres[set.Name+"_stream_events"]; got != int64(len(live)) {
		t.Errorf("stream events = %d, want %d: events lost or counted twice", got, len(live))
	}
	if got := sres[set.Name+"_dead_letter_"+transforms.StageLate]; got != int64(len(streamLate)) {
		t.Errorf("stream late dead letters = %d, want %d", got, len(streamLate))
	}
	if got := sres[set.Name+"_dead_letter_"+transforms.StageFuture]; got != 0 {
		t.Errorf("stream future dead letters = %d, want 0", got)
	}
	var streamDead []transforms.DeadLetter
	for _, prefix := range []string{"stream-dead", "stream-dead2"} {
		letters, err := streampipe.ReadDeadLetters(filepath.Join(dir, prefix))
		if err != nil {
			t.Fatal(err)
		}
		streamDead = append(streamDead, letters...)
	}
	wantDead := map[string]deadWant{
		string(streamBad[0]): {transforms.StageDecode, `missing entity key part "merchant"`},
		string(streamBad[1]): {transforms.StageDecode, `empty entity key part "user"`},
		string(streamBad[2]): {transforms.StageDecode, `missing entity key part "terminal"`},
		string(streamBad[3]): {transforms.StageDecode, `missing entity key part "terminal"`},
	}
	for _, raw := range streamLate {
		wantDead[string(raw)] = deadWant{transforms.StageLate, "more than the allowed lateness 3m behind the watermark"}
	}
	checkDeadLetters(t, "stream", streamDead, wantDead)

	// Reads of the past, on and off tile boundaries, on both sides of the
	// seam; real time last (an explicit now and the server's).
	newestLive := live[len(live)-1].ev.EventTime()
	histEv, liveEv := history[77].ev.EventTime(), live[len(live)/2].ev.EventTime()
	past := []time.Time{
		asOf.Add(-40 * time.Minute),                       // batch only, on a tile boundary
		asOf.Add(-37*time.Minute - 2500*time.Millisecond), // batch only, mid-tile
		histEv, histEv.Add(time.Microsecond), // on a history event, 1 µs after it
		asOf.Add(-time.Microsecond), // just before the seam
		asOf,                        // on the seam
		asOf.Add(20*time.Second + 123*time.Microsecond), // both sides in the windows
		liveEv, liveEv.Add(time.Microsecond), // on a live event, 1 µs after it
		newestLive.Truncate(time.Minute), // the newest tile's start
		newestLive.Add(time.Microsecond), // 1 µs after the newest event: real time
		time.Now().UTC(),                 // now
	}
	for i, at := range past {
		reads = append(reads, readTuples(t, hs.URL, set, at, i)...)
	}
	reads = append(reads, readTuples(t, hs.URL, set, time.Time{}, 0)...)

	// Every value against brute force over its tuple's raw events, picked
	// by their key fields.
	all := append(slices.Clone(history), live...)
	byTuple := make([][]schemas.Event, len(ckTuples))
	newest := make([]time.Time, len(ckTuples))
	for _, e := range all {
		v := e.ev.Values
		for i, tu := range ckTuples {
			if v[0].Str == tu.user && v[1].Str == tu.merchant && v[2].Int == tu.terminal {
				byTuple[i] = append(byTuple[i], e.ev)
				if e.ev.EventTime().After(newest[i]) {
					newest[i] = e.ev.EventTime()
				}
			}
		}
	}
	checked, asOfs, realTime := 0, 0, 0
	nonEmpty := map[string]int{}
	var exactReads []ckRead
	for _, r := range reads {
		tu := ckTuples[r.tuple]
		where := fmt.Sprintf("%s %q/%q/%d at %s", r.form, tu.user, tu.merchant, tu.terminal, r.at.Format(time.RFC3339Nano))
		exactRead := true
		for _, f := range set.Features {
			fj, present := r.feats[f.Name]
			if !present {
				t.Errorf("%s: %s missing from the response", where, f.Name)
				continue
			}
			// As TestOracle: exact at at, or at its as_of, the head tile's
			// start, strictly before at; a real-time read (at or after
			// T_b and after every event of the tuple) is always exact.
			exact := r.at
			if fj.AsOf != "" {
				asOfs++
				exactRead = false
				a, err := time.Parse(time.RFC3339Nano, fj.AsOf)
				if err != nil || !a.Equal(floorTo(r.at, f.Tile)) || !a.Before(r.at) {
					t.Errorf("%s %s: as_of %q, want the start of the tile holding at, before at", where, f.Name, fj.AsOf)
					continue
				}
				if !r.at.Before(asOf) && r.at.After(newest[r.tuple]) {
					t.Errorf("%s %s: a real-time read has as_of %s", where, f.Name, fj.AsOf)
				}
				exact = a
			}
			want, ok := brute.At(f, byTuple[r.tuple], "", exact.UnixMicro(), ckKeep(f.Name))
			checked++
			if ok && string(fj.Value) != "0" && string(fj.Value) != "[]" {
				nonEmpty[f.Name]++
			}
			if msg := compareValue(f, want, ok, fj); msg != "" {
				t.Errorf("%s %s: %s", where, f.Name, msg)
			}
		}
		if exactRead {
			exactReads = append(exactReads, r)
			if r.at.After(newest[r.tuple]) && !r.at.Before(asOf) {
				realTime++
			}
		}
	}
	for _, f := range set.Features {
		if nonEmpty[f.Name] == 0 {
			t.Errorf("%s was never other than empty: the test does not reach the op", f.Name)
		}
	}
	if asOfs == 0 || realTime == 0 {
		t.Errorf("%d values came with as_of, %d reads were real time: the reads do not reach both rules", asOfs, realTime)
	}
	// The tuples equal joined naively got their own values.
	differ := 0
	for _, r := range reads {
		if r.tuple != 0 {
			continue
		}
		for _, o := range reads {
			if o.tuple == 1 && o.form == r.form && o.asked.Equal(r.asked) && o.at.Equal(r.at) &&
				string(o.feats["txn_count_1h"].Value) != string(r.feats["txn_count_1h"].Value) {
				differ++
			}
		}
	}
	if differ == 0 {
		t.Errorf(`("a#b", "c", 0) and ("a", "b#c", 0) never had different counts: the test cannot tell them apart`)
	}
	t.Logf("checked %d values of %d tuple reads (%d real time, %d values exact at as_of): %d history events, %d live; dead letters: %d batch, %d stream (%d key parts, %d late)",
		checked, len(reads), realTime, asOfs, len(history), len(live), len(batchBad), len(streamBad)+len(streamLate), len(streamBad), len(streamLate))

	checkRowKeys(t, ctx, b, set, byTuple, history, live)
	checkCompositeTraining(t, ctx, set, dir, append(slices.Clone(history), live...), exactReads)
	t.Logf("end to end in %s", time.Since(start).Round(time.Millisecond))
}

// readTuples reads every tuple of ckTuples at `at` (zero: the server's
// now) over HTTP: a GET per tuple, the parts as query parameters, and one
// POST of them all as key objects. variant varies the spelling: spaces
// escaped as + or %20, the int64 part as a JSON number or a string.
func readTuples(t *testing.T, base string, set *schemas.FeatureSet, at time.Time, variant int) []ckRead {
	t.Helper()
	var out []ckRead
	atText := ""
	if !at.IsZero() {
		atText = at.UTC().Format(time.RFC3339Nano)
	}
	esc := url.QueryEscape
	if variant%2 == 1 {
		esc = func(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }
	}
	for i, tu := range ckTuples {
		q := "user=" + esc(tu.user) + "&merchant=" + esc(tu.merchant) + "&terminal=" + esc(strconv.FormatInt(tu.terminal, 10))
		if atText != "" {
			q += "&at=" + esc(atText)
		}
		var body struct {
			Entity   map[string]json.RawMessage `json:"entity"`
			At       time.Time                  `json:"at"`
			Features map[string]featureJSON     `json:"features"`
		}
		httpJSON(t, "GET", base+"/v1/features/"+set.Name+"?"+q, nil, &body)
		checkEntityParts(t, "GET "+q, tu, body.Entity)
		out = append(out, ckRead{form: "GET", asked: at, at: body.At, tuple: i, feats: body.Features})
	}
	var ents []string
	for i, tu := range ckTuples {
		u, _ := json.Marshal(tu.user)
		m, _ := json.Marshal(tu.merchant)
		term := strconv.FormatInt(tu.terminal, 10)
		if (i+variant)%2 == 1 {
			term = strconv.Quote(term) // a string holding the integer
		}
		ents = append(ents, fmt.Sprintf(`{"merchant": %s, "terminal": %s, "user": %s}`, m, term, u))
	}
	req := `{"entities": [` + strings.Join(ents, ", ") + `]`
	if atText != "" {
		req += `, "at": "` + atText + `"`
	}
	req += "}"
	var body struct {
		At      time.Time `json:"at"`
		Results []struct {
			Entity   map[string]json.RawMessage `json:"entity"`
			Features map[string]featureJSON     `json:"features"`
		} `json:"results"`
	}
	httpJSON(t, "POST", base+"/v1/features/"+set.Name, []byte(req), &body)
	if len(body.Results) != len(ckTuples) {
		t.Fatalf("POST %s: %d results, want %d", req, len(body.Results), len(ckTuples))
	}
	for i, r := range body.Results {
		checkEntityParts(t, "POST", ckTuples[i], r.Entity)
		out = append(out, ckRead{form: "POST", asked: at, at: body.At, tuple: i, feats: r.Features})
	}
	if !at.IsZero() {
		for _, r := range out {
			if !r.at.Equal(at) {
				t.Fatalf("%s at %s answered for %s", r.form, atText, r.at.Format(time.RFC3339Nano))
			}
		}
	}
	return out
}

// httpJSON makes a request and decodes its 200 response (numbers as
// json.Number) into out.
func httpJSON(t *testing.T, method, target string, body []byte, out any) {
	t.Helper()
	req, err := http.NewRequest(method, target, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: status %d, %s %v", method, target, resp.StatusCode, raw, err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
}

// checkEntityParts checks that a response's entity is the tuple's parts,
// the int64 part as an exact JSON integer.
func checkEntityParts(t *testing.T, where string, tu ckTuple, ent map[string]json.RawMessage) {
	t.Helper()
	var user, merchant string
	if json.Unmarshal(ent["user"], &user) != nil || json.Unmarshal(ent["merchant"], &merchant) != nil ||
		user != tu.user || merchant != tu.merchant || string(ent["terminal"]) != strconv.FormatInt(tu.terminal, 10) {
		t.Errorf("%s: entity %s/%s/%s, want the parts %q %q %d", where, ent["user"], ent["merchant"], ent["terminal"], tu.user, tu.merchant, tu.terminal)
	}
}

// batchDeadLetters reads the batch pipeline's dead-letter file: JSON
// lines whose raw is the record as a string (batchpipe.WriteDeadLetters).
func batchDeadLetters(t *testing.T, file string) []transforms.DeadLetter {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []transforms.DeadLetter
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var d struct{ Set, Stage, Reason, Raw string }
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("batch dead letter %q: %v", line, err)
		}
		out = append(out, transforms.DeadLetter{Set: d.Set, Stage: d.Stage, Reason: d.Reason, Raw: []byte(d.Raw)})
	}
	return out
}

// deadWant is a dead letter's stage and a text its reason must hold.
type deadWant struct{ stage, reason string }

// checkDeadLetters checks that letters are exactly the records of want
// (raw record → its stage and reason), each once.
func checkDeadLetters(t *testing.T, what string, letters []transforms.DeadLetter, want map[string]deadWant) {
	t.Helper()
	got := map[string]int{}
	for _, d := range letters {
		w, ok := want[string(d.Raw)]
		switch {
		case !ok:
			t.Errorf("%s dead letter of %s (%s): not one of the malformed records", what, d.Raw, d.Reason)
		case d.Stage != w.stage || !strings.Contains(d.Reason, w.reason):
			t.Errorf("%s dead letter of %s: stage %s reason %q, want %s and %q", what, d.Raw, d.Stage, d.Reason, w.stage, w.reason)
		}
		got[string(d.Raw)]++
	}
	for raw := range want {
		if got[raw] != 1 {
			t.Errorf("%s dead letters hold %s %d times, want once", what, raw, got[raw])
		}
	}
}

// checkRowKeys reads the set's rows back with the Bigtable client: one
// row per tuple with events, keyed as the README documents (the hand-written
// ckTuple.row), with a batch family when it had history and a stream family
// when it had live events; and nothing else.
func checkRowKeys(t *testing.T, ctx context.Context, b *Backends, set *schemas.FeatureSet, byTuple [][]schemas.Event, history, live []ckEvent) {
	t.Helper()
	inHist, inLive := map[int]bool{}, map[int]bool{}
	for _, e := range history {
		inHist[e.tuple] = true
	}
	for _, e := range live {
		inLive[e.tuple] = true
	}
	want := map[string]int{}
	for i, tu := range ckTuples {
		if len(byTuple[i]) > 0 {
			want[set.Name+"#"+tu.row] = i
		}
		if k := schemas.RowKey(set.Name, schemas.EntityKey(tu.user, tu.merchant, strconv.FormatInt(tu.terminal, 10))); k != set.Name+"#"+tu.row {
			t.Errorf("schemas.EntityKey of %q %q %d = %q, the README's encoding is %q", tu.user, tu.merchant, tu.terminal, k, set.Name+"#"+tu.row)
		}
	}
	seen := map[string]bool{}
	err := b.Table.ReadRows(ctx, bigtable.PrefixRange(set.Name+"#"), func(r bigtable.Row) bool {
		key := r.Key()
		seen[key] = true
		i, ok := want[key]
		if !ok {
			t.Errorf("row %q: not the documented key of a tuple with events", key)
			return true
		}
		tu := ckTuples[i]
		_, entity, _ := schemas.SplitRowKey(key)
		parts, ok := schemas.SplitEntityKey(entity, 3)
		if !ok || parts[0] != tu.user || parts[1] != tu.merchant || parts[2] != strconv.FormatInt(tu.terminal, 10) {
			t.Errorf("row %q splits into %q (%v), want the parts %q %q %d", key, parts, ok, tu.user, tu.merchant, tu.terminal)
		}
		if got := len(r[schemas.FamilyBatch]) > 0; got != inHist[i] {
			t.Errorf("row %q: batch family %v, want %v (history events)", key, got, inHist[i])
		}
		if got := len(r[schemas.FamilyStream]) > 0; got != inLive[i] {
			t.Errorf("row %q: stream family %v, want %v (live events)", key, got, inLive[i])
		}
		return true
	})
	if err != nil {
		t.Fatalf("read rows: %v", err)
	}
	for key := range want {
		if !seen[key] {
			t.Errorf("no row %q", key)
		}
	}
	t.Logf("row keys: %d rows, each the documented encoding of its tuple", len(seen))
}

// checkCompositeTraining runs the training pipeline over the events (the
// raw records, as a batch source holds them) with the exact reads (no
// as_of) as its spine, one key column per part, and checks every value
// equals the served one exactly: zero skew for a composite key.
func checkCompositeTraining(t *testing.T, ctx context.Context, set *schemas.FeatureSet, dir string, events []ckEvent, reads []ckRead) {
	t.Helper()
	eventsPath := filepath.Join(dir, "events.jsonl")
	writeFile(t, eventsPath, func(w *bufio.Writer) error {
		for _, e := range events {
			w.Write(append(e.raw, '\n'))
		}
		return nil
	})
	spinePath := filepath.Join(dir, "spine.jsonl")
	writeFile(t, spinePath, func(w *bufio.Writer) error {
		for i, r := range reads {
			tu := ckTuples[r.tuple]
			line, _ := json.Marshal(map[string]any{"user": tu.user, "merchant": tu.merchant, "terminal": tu.terminal, "ts": r.at.Format(time.RFC3339Nano), "read": i})
			w.Write(append(line, '\n'))
		}
		return nil
	})
	out := filepath.Join(dir, "training.jsonl")
	res, err := trainpipe.Run(ctx, &trainpipe.Config{
		Requests:   []trainpipe.Request{{Set: set, Source: schemas.BatchSource{Files: eventsPath}}},
		SpineGlob:  spinePath,
		SpineTime:  "ts",
		Output:     trainpipe.Output{Path: out},
		DeadLetter: filepath.Join(dir, "training-dead"),
	})
	if err != nil {
		t.Fatalf("training: %v", err)
	}
	if res.Rows != int64(len(reads)) || res.DeadRows != 0 {
		t.Fatalf("training wrote %d rows (%d dead), want %d", res.Rows, res.DeadRows, len(reads))
	}
	compared, nonZero := 0, 0
	for _, row := range readJSONLines(t, out) {
		i, err := row["read"].(json.Number).Int64()
		if err != nil || i < 0 || int(i) >= len(reads) {
			t.Fatalf("training row %v: bad read index", row)
		}
		r := reads[i]
		tu := ckTuples[r.tuple]
		if row["user"] != tu.user || row["merchant"] != tu.merchant || fmt.Sprint(row["terminal"]) != strconv.FormatInt(tu.terminal, 10) {
			t.Errorf("training row %d: key %v %v %v, want %q %q %d (spine columns carried through)", i, row["user"], row["merchant"], row["terminal"], tu.user, tu.merchant, tu.terminal)
		}
		for _, f := range set.Features {
			served, trained := r.feats[f.Name], row[set.Name+"__"+f.Name]
			compared++
			if msg := sameExactly(f, served, trained); msg != "" {
				t.Errorf("read %d %s %q/%q/%d %s at %s: served %s %s, training %v: %s", i, r.form, tu.user, tu.merchant, tu.terminal, f.Name, r.at.Format(time.RFC3339Nano), served.Value, served.Status, trained, msg)
			} else if string(served.Value) != "0" && string(served.Value) != "null" {
				nonZero++
			}
		}
	}
	if compared == 0 || nonZero < compared/3 {
		t.Errorf("training: %d of %d values non-empty: the spine misses the data", nonZero, compared)
	}
	t.Logf("zero skew: %d values of %d exact reads equal in serving and training", compared, len(reads))
}
