package localstack

import (
	"bufio"
	"bytes"
	"cmp"
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
	"strings"
	"testing"
	"time"

	"github.com/tandem-fp/tandem/pipelines/batch/batchpipe"
	"github.com/tandem-fp/tandem/pipelines/training/trainpipe"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/sample"
	"github.com/tandem-fp/tandem/schemas/schemastest/brute"
	"github.com/tandem-fp/tandem/serving"
	"github.com/tandem-fp/tandem/transforms/aggregate"
)

// servedRead is one real-time read made over HTTP while events streamed in.
type servedRead struct {
	entity string
	at     time.Time
	values map[string]featureJSON
}

// TestZeroSkew proves training equals serving. It runs the local platform
// (history through the batch pipeline, then events stamped with the wall
// clock through the streaming pipeline while they are published) and
// records real-time reads over HTTP, each at the server's "now", between
// bursts of events. Then it runs the training pipeline over the same events
// (all of them, as the batch source would hold them) with the recorded
// (entity, instant) pairs as its spine. Every value must be equal, exactly:
// integers and strings alike, floats to the bit, HLL estimates identical
// (the same sketch of the same values).
func TestZeroSkew(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	set, b := startOracleBackends(ctx, t)
	defer b.Close()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(11, 12))
	entities := []string{"a_1", "a_2", "a_3", "a_4", "a_5", "a_6"}
	event := func(t time.Time) schemas.Event {
		return randomEvent(set, rng, entities[rng.IntN(len(entities))], t)
	}

	// History: three hours before a batch watermark within the allowed
	// lateness (2m) of now, so that the stream can take over from it.
	now := time.Now().UTC()
	asOf := batchpipe.AlignAsOf(set, now.Add(-30*time.Second))
	var all, history []schemas.Event
	for range 1500 {
		history = append(history, event(asOf.Add(-time.Duration(rng.Int64N(int64(3*time.Hour)))-time.Microsecond)))
	}
	history = append(history, event(asOf.Add(-time.Microsecond)), event(asOf.Add(-time.Minute)))
	if res, err := b.RunBatch(ctx, set, history, asOf, dir); err != nil || !res.Committed {
		t.Fatalf("batch: %+v, %v", res, err)
	}
	all = append(all, history...)

	st := b.StartStream(ctx, set, StreamOptions{DeadLetter: filepath.Join(dir, "dead")})
	srv, err := b.NewServer(serving.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()

	publish := func(evs []schemas.Event) {
		t.Helper()
		msgs := make([][]byte, len(evs))
		for i, e := range evs {
			msgs[i] = set.EncodeJSON(e)
		}
		if err := b.Publish(ctx, set.Name, msgs...); err != nil {
			t.Fatal(err)
		}
		if err := b.WaitAcked(ctx); err != nil {
			t.Fatal(err)
		}
		all = append(all, evs...)
	}
	// The gap between the watermark and now, first: on the seam and after.
	gap := []schemas.Event{event(asOf), event(asOf)}
	for range 30 {
		gap = append(gap, event(asOf.Add(time.Duration(rng.Int64N(int64(now.Sub(asOf)))))))
	}
	publish(gap)

	// Live: bursts of events stamped as they are made, each followed, once
	// written and acknowledged, by a read of every entity at the server's
	// now. An event is made after the reads before it, so every event
	// stamped before a read's instant was written before the read.
	var reads []servedRead
	for round := range 30 {
		var burst []schemas.Event
		for range 10 + rng.IntN(40) {
			burst = append(burst, event(time.Now().UTC()))
			if rng.IntN(8) == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		publish(burst)
		at, got := postFeaturesNow(t, hs.URL, set.Name, append(entities, "nobody"))
		for _, ent := range got {
			reads = append(reads, servedRead{entity: ent.Entity, at: at, values: ent.Features})
		}
		if round%10 == 9 {
			t.Logf("round %d: %d events, %d reads", round+1, len(all), len(reads))
		}
	}
	if _, err := st.Stop(ctx); err != nil {
		t.Fatalf("stream: %v", err)
	}

	// The same events as a batch source, the reads as the spine.
	eventsPath := filepath.Join(dir, "events.jsonl")
	writeFile(t, eventsPath, func(w *bufio.Writer) error { return sample.WriteJSONL(w, set, all) })
	spinePath := filepath.Join(dir, "spine.jsonl")
	writeFile(t, spinePath, func(w *bufio.Writer) error {
		for i, r := range reads {
			fmt.Fprintf(w, `{"account":%q,"ts":%q,"read":%d}`+"\n", r.entity, r.at.Format(time.RFC3339Nano), i)
		}
		return nil
	})
	out := filepath.Join(dir, "training.jsonl")
	cfg := &trainpipe.Config{
		Requests:   []trainpipe.Request{{Set: set, Source: schemas.BatchSource{Files: eventsPath}}},
		SpineGlob:  spinePath,
		SpineTime:  "ts",
		Output:     trainpipe.Output{Path: out},
		DeadLetter: filepath.Join(dir, "training-dead"),
	}
	res, err := trainpipe.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("training: %v", err)
	}
	if res.Rows != int64(len(reads)) || res.DeadRows != 0 {
		t.Fatalf("training wrote %d rows (%d dead), want %d", res.Rows, res.DeadRows, len(reads))
	}

	rows := readJSONLines(t, out)
	compared, nonZero, beyondCapacity := 0, 0, 0
	for _, row := range rows {
		i, err := row["read"].(json.Number).Int64()
		if err != nil || i < 0 || int(i) >= len(reads) {
			t.Fatalf("training row %v: bad read index", row)
		}
		r := reads[i]
		if got := row["account"]; got != r.entity {
			t.Errorf("training row %d: account %v, want %s (spine columns carried through)", i, got, r.entity)
		}
		for _, f := range set.Features {
			served := r.values[f.Name]
			if served.AsOf != "" {
				t.Errorf("read %d %s/%s at %s: a real-time read has as_of %s", i, r.entity, f.Name, r.at.Format(time.RFC3339Nano), served.AsOf)
			}
			trained := row[set.Name+"__"+f.Name]
			compared++
			msg := sameExactly(f, served, trained)
			if msg != "" && f.Op == schemas.OpTopK && tileOverCapacity(f, eventsOf(all, r.entity), r.at) {
				// A tile holding more distinct values than top_k counts
				// exactly depends on the order of its adds (documented;
				// the order of merges does not matter): then both must be
				// within the Misra-Gries bound of the true counts instead.
				want, _ := expected(f, eventsOf(all, r.entity), r.at)
				msg = cmp.Or(compareValue(f, want, true, served), agreesJSON(f, trained, want))
				beyondCapacity++
			}
			if msg != "" {
				t.Errorf("read %d %s/%s at %s: served %s %s, training %v: %s", i, r.entity, f.Name, r.at.Format(time.RFC3339Nano), served.Value, served.Status, trained, msg)
			} else if string(served.Value) != "0" && string(served.Value) != "null" {
				nonZero++
			}
		}
		for _, d := range set.Derived {
			served, trained := r.values[d.Name], row[set.Name+"__"+d.Name]
			compared++
			if msg := sameExactly(schemas.Feature{Name: d.Name, FieldType: d.Type}, served, trained); msg != "" {
				t.Errorf("read %d %s/%s at %s: served %s %s, training %v: %s", i, r.entity, d.Name, r.at.Format(time.RFC3339Nano), served.Value, served.Status, trained, msg)
			} else if string(served.Value) != "null" {
				nonZero++
			}
		}
	}
	t.Logf("zero skew: %d values of %d reads compared (%d neither 0 nor null), over %d events; %d top_k values over a tile holding more than its counters differed between serving and training, both within the error bound", compared, len(reads), nonZero, len(all), beyondCapacity)
	if len(rows) != len(reads) || nonZero < compared/2 {
		t.Errorf("%d training rows for %d reads, %d of %d values non-empty: the test does not exercise the features", len(rows), len(reads), nonZero, compared)
	}
}

// eventsOf returns the events of entity key.
// tileOverCapacity reports whether a tile of top_k feature f's window at
// `at` holds more distinct values than top_k counts exactly in a tile
// (transforms/aggregate/topk.go: 64 times its counters), counted from the
// raw events.
const topKExact = 64

func tileOverCapacity(f schemas.Feature, events []schemas.Event, at time.Time) bool {
	from, to := f.Span(at.UnixMicro())
	distinct := map[int64]map[schemas.Value]bool{}
	for _, e := range events {
		if e.Time < from || e.Time >= to || !f.Keeps(e) || e.Values[f.FieldIndex].IsNull() {
			continue
		}
		s := schemas.TileStart(e.Time, f.Tile)
		if distinct[s] == nil {
			distinct[s] = map[schemas.Value]bool{}
		}
		distinct[s][e.Values[f.FieldIndex]] = true
		if len(distinct[s]) > topKExact*aggregate.TopKCapacity(f.K) {
			return true
		}
	}
	return false
}

func eventsOf(events []schemas.Event, key string) []schemas.Event {
	var out []schemas.Event
	for _, e := range events {
		if e.Key == key {
			out = append(out, e)
		}
	}
	return out
}

// agreesJSON checks a training value (decoded JSON, numbers as
// json.Number) against brute force.
func agreesJSON(f schemas.Feature, trained, want any) string {
	v, err := brute.Canon(f, trained)
	if err != nil {
		return err.Error()
	}
	return brute.Agrees(f, v, want)
}

// postFeaturesNow reads entities at the server's now and returns the
// instant the response says it answered for.
func postFeaturesNow(t *testing.T, base, set string, entities []string) (time.Time, []entityJSON) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"entities": entities})
	resp, err := http.Post(base+"/v1/features/"+url.PathEscape(set), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST features: status %d, %s %v", resp.StatusCode, raw, err)
	}
	var out struct {
		At      time.Time    `json:"at"`
		Results []entityJSON `json:"results"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("POST features: %v", err)
	}
	return out.At, out.Results
}

// sameExactly compares a served value with the training pipeline's JSON
// value, exactly: numbers by their float64 bits or int64 value, strings,
// bools and timestamps by value; NOT_FOUND is null.
func sameExactly(f schemas.Feature, served featureJSON, trained any) string {
	if served.Status == "NOT_FOUND" {
		if trained != nil {
			return "want null for NOT_FOUND"
		}
		return ""
	}
	if trained == nil {
		return "training has null"
	}
	dec := json.NewDecoder(bytes.NewReader(served.Value))
	dec.UseNumber()
	var sv any
	if err := dec.Decode(&sv); err != nil {
		return err.Error()
	}
	switch f.ResultType() {
	case schemas.Int64:
		a, err1 := sv.(json.Number).Int64()
		b, err2 := trained.(json.Number).Int64()
		if err1 != nil || err2 != nil || a != b {
			return "integers differ"
		}
	case schemas.Float64:
		a, err1 := sv.(json.Number).Float64()
		b, err2 := trained.(json.Number).Float64()
		if err1 != nil || err2 != nil || math.Float64bits(a) != math.Float64bits(b) {
			return fmt.Sprintf("floats differ: %x vs %x", math.Float64bits(a), math.Float64bits(b))
		}
	case schemas.Timestamp:
		a, err1 := time.Parse(time.RFC3339Nano, fmt.Sprint(sv))
		b, err2 := time.Parse(time.RFC3339Nano, fmt.Sprint(trained))
		if err1 != nil || err2 != nil || !a.Equal(b) {
			return "instants differ"
		}
	default:
		// Composites as canonical values: floats (percentiles) by value,
		// which fmt prints exactly, whatever the JSON writers' spelling.
		a, err1 := brute.Canon(f, sv)
		b, err2 := brute.Canon(f, trained)
		if err1 != nil || err2 != nil || fmt.Sprint(a) != fmt.Sprint(b) {
			return "values differ"
		}
	}
	return ""
}

func writeFile(t *testing.T, path string, write func(*bufio.Writer) error) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	if err := write(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readJSONLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("%s: %q: %v", path, line, err)
		}
		out = append(out, m)
	}
	return out
}
