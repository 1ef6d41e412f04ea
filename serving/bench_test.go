package serving

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigtable"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/schemastest"
	"github.com/tandem-fp/tandem/serving/servingtest"
)

// benchEnv seeds 1000 entities of the cards set, three events each.
func benchEnv(b *testing.B) (*testEnv, *http.Client) {
	b.Helper()
	e := &testEnv{t: b, cards: schemastest.MustParse(b, cardsYAML), users: schemastest.MustParse(b, usersYAML)}
	e.now = time.Now().UTC()
	e.tb = e.now.Add(-6 * time.Hour).Truncate(24 * time.Hour)
	ctx := context.Background()
	sets := []*schemas.FeatureSet{e.cards, e.users}
	emu, err := servingtest.StartEmulator(ctx, sets)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(emu.Close)
	e.emu = emu
	batch, stream := servingtest.NewTiles(e.cards), servingtest.NewTiles(e.cards)
	for i := range 1000 {
		k := fmt.Sprintf("c%d", i)
		batch.Add(e.card(k, e.tb.Add(-time.Hour), "m1", 10))
		stream.Add(e.card(k, e.now.Add(-10*time.Minute), "m2", 20), e.card(k, e.now.Add(-time.Minute), "m3", 30))
	}
	if err := batch.Write(ctx, emu.Table, schemas.FamilyBatch); err != nil {
		b.Fatal(err)
	}
	if err := stream.Write(ctx, emu.Table, schemas.FamilyStream); err != nil {
		b.Fatal(err)
	}
	if err := servingtest.WriteFreshness(ctx, emu.Table, "cards", e.tb, e.now.Truncate(time.Minute)); err != nil {
		b.Fatal(err)
	}
	srv, err := New(Config{Sets: sets, Table: emu.Table, Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	e.srv = srv
	e.http = newHTTPTestServer(srv)
	b.Cleanup(e.http.Close)
	return e, e.http.Client()
}

func BenchmarkBareReadRow(b *testing.B) {
	e, _ := benchEnv(b)
	filter, err := ReadFilter(e.cards, nil, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := e.emu.Table.ReadRow(ctx, fmt.Sprintf("cards#c%d", i%1000), bigtable.RowFilter(filter)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetFeatures(b *testing.B) {
	e, hc := benchEnv(b)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		drainOK(b)(hc.Get(fmt.Sprintf("%s/v1/features/cards/c%d", e.http.URL, i%1000)))
	}
}

func BenchmarkBareReadRows100(b *testing.B) {
	e, _ := benchEnv(b)
	filter, err := ReadFilter(e.cards, nil, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		keys := make(bigtable.RowList, 100)
		for j := range keys {
			keys[j] = fmt.Sprintf("cards#c%d", (i*100+j)%1000)
		}
		if err := e.emu.Table.ReadRows(ctx, keys, func(bigtable.Row) bool { return true }, bigtable.RowFilter(filter)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPostFeatures100(b *testing.B) {
	e, hc := benchEnv(b)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		keys := make([]string, 100)
		for j := range keys {
			keys[j] = fmt.Sprintf("%q", fmt.Sprintf("c%d", (i*100+j)%1000))
		}
		drainOK(b)(hc.Post(e.http.URL+"/v1/features/cards", "application/json", strings.NewReader(`{"entities":[`+strings.Join(keys, ",")+`]}`)))
	}
}

func BenchmarkHealthz(b *testing.B) {
	e, hc := benchEnv(b)
	b.ResetTimer()
	for b.Loop() {
		drainOK(b)(hc.Get(e.http.URL + "/healthz"))
	}
}

func BenchmarkMerge(b *testing.B) {
	e, _ := benchEnv(b)
	st := e.srv.sets["cards"]
	at := time.Now()
	p := st.plan(st.all, at)
	row, err := e.emu.Table.ReadRow(context.Background(), "cards#c1", bigtable.RowFilter(p.filter))
	if err != nil {
		b.Fatal(err)
	}
	fresh := Freshness{BatchWatermark: e.tb, StreamLatestTile: e.now}
	out := make([]result, len(st.all.feats))
	b.ResetTimer()
	for b.Loop() {
		p := st.plan(st.all, at)
		if err := p.merge(row, fresh, out); err != nil {
			b.Fatal(err)
		}
		_ = p.appendFeatures(nil, out, false)
	}
}

// drainOK returns a function that fails b unless an HTTP call succeeded with
// 200, and reads and closes the response body (so the connection is
// reused): drainOK(b)(hc.Get(url)).
func drainOK(b *testing.B) func(*http.Response, error) {
	return func(res *http.Response, err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			b.Fatal(res.Status)
		}
	}
}
