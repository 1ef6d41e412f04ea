package serving

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms/aggregate"
)

// TestMergeMatchesEvents writes random events the way the pipelines would
// (the batch side holds every event before T_b, the stream side every event
// from some hours before T_b on, so the two overlap) and checks every
// feature, read at random instants, against the aggregate of the events in
// its window computed directly.
func TestMergeMatchesEvents(t *testing.T) {
	e := newEnv(t)
	r := rand.New(rand.NewPCG(1, 2))
	tb := e.tb
	streamFrom := tb.Add(-6 * time.Hour)
	merchants := []string{"a", "b", "c", "d", "e"}
	entities := []string{"busy", "quiet"}
	events := map[string][]schemas.Event{}
	var batch, stream []schemas.Event
	for _, ent := range entities {
		n := map[string]int{"busy": 600, "quiet": 8}[ent]
		for range n {
			at := tb.Add(time.Duration(r.Int64N(int64(48*time.Hour))) - 40*time.Hour).Truncate(time.Millisecond)
			if at.After(e.now) {
				continue
			}
			ev := e.card(ent, at, merchants[r.IntN(len(merchants))], float64(r.IntN(10000))/100)
			events[ent] = append(events[ent], ev)
			if at.Before(tb) {
				batch = append(batch, ev)
			}
			if !at.Before(streamFrom) {
				stream = append(stream, ev)
			}
		}
	}
	e.write(e.cards, schemas.FamilyBatch, batch...)
	e.write(e.cards, schemas.FamilyStream, stream...)
	e.freshness("cards", tb, e.now.Truncate(time.Minute))

	for i := range 40 {
		at := tb.Add(time.Duration(r.Int64N(int64(12*time.Hour))) - 4*time.Hour).Truncate(time.Second)
		if at.After(e.now) {
			at = e.now
		}
		var names []string
		if i%2 == 1 { // a random subset
			for _, f := range e.cards.Features {
				if r.IntN(3) == 0 {
					names = append(names, f.Name)
				}
			}
		}
		for _, ent := range entities {
			q := "?at=" + url.QueryEscape(rfc(at))
			if len(names) > 0 {
				q += "&features=" + strings.Join(names, ",")
			}
			got := features(t, e.get("/v1/features/cards/"+ent+q))
			for name, gv := range got {
				f, _ := e.cards.Feature(name)
				first, last := f.WindowTiles(at)
				p := aggregate.For(f)
				for _, ev := range events[ent] {
					if s := schemas.TileStart(ev.Time, f.Tile); s >= first && s <= last {
						var v schemas.Value
						if f.FieldIndex >= 0 {
							v = ev.Values[f.FieldIndex]
						}
						p.Add(v, ev.Time)
					}
				}
				want, ok := p.Result()
				if !ok {
					if gv[0] != nil || gv[1] != "NOT_FOUND" {
						t.Errorf("%s %s at %s = %v, want null NOT_FOUND", ent, name, rfc(at), gv)
					}
					continue
				}
				if !sameValue(want, gv[0]) {
					t.Errorf("%s %s at %s = %v, want %v", ent, name, rfc(at), gv[0], want)
				}
			}
		}
	}
}

// sameValue compares a merged value with its JSON form; floats to 1e-9.
func sameValue(want schemas.Value, got any) bool {
	s := fmt.Sprint(got)
	switch want.Type {
	case schemas.Float64:
		var g float64
		if _, err := fmt.Sscan(s, &g); err != nil {
			return false
		}
		return math.Abs(g-want.Float) <= 1e-9*math.Max(1, math.Abs(want.Float))
	case schemas.Timestamp:
		return s == rfc(time.UnixMicro(want.Int))
	}
	return s == want.String()
}
