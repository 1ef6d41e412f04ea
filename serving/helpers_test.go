package serving

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/schemas/schemastest"
	"github.com/tandem-fp/tandem/serving/apikeys"
	"github.com/tandem-fp/tandem/serving/servingtest"
)

const cardsYAML = `
name: cards
entity: {name: card, key: card_id}
event_time: ts
fields:
  card_id: string
  merchant: string
  amount: float64
  approved: bool
  items: int64
  ts: timestamp
sources: {stream: {pubsub: {subscription: projects/tandem-local/subscriptions/cards}}}
retention: 30d
features:
  - {name: txn_count_1h, op: count, window: 1h}
  - {name: amount_sum_24h, op: sum, field: amount, window: 24h}
  - {name: amount_mean_24h, op: mean, field: amount, window: 24h}
  - {name: amount_max_1h, op: max, field: amount, window: 1h}
  - {name: items_sum_1h, op: sum, field: items, window: 1h}
  - {name: first_ts_1h, op: min, field: ts, window: 1h}
  - {name: last_merchant, op: last, field: merchant, window: 7d, tile: 1h}
  - {name: last_approved, op: last, field: approved, window: 1d}
  - {name: merchants_7d, op: approx_count_distinct, field: merchant, window: 7d}
  - {name: amount_stddev_1h, op: stddev, field: amount, window: 1h}
  - {name: declined_amount_24h, op: sum, field: amount, window: 24h, where: not approved}
  - {name: ab_count_1h, op: count, window: 1h, where: 'merchant in ("a", "b") and amount >= 20'}
derived:
  - {name: declined_share_24h, expr: declined_amount_24h / amount_sum_24h}
  - {name: big_spender, expr: amount_mean_24h > 50 or ab_count_1h >= 2}
`

const usersYAML = `
name: users
entity: {name: user, key: user_id}
event_time: viewed_at
fields: {user_id: int64, page: string, viewed_at: timestamp}
# Tests read users at instants relative to the batch watermark, which lies
# 6 to 30 hours before now: the default retention (the window plus a day)
# would refuse those reads late in the night.
retention: 30d
features:
  - {name: views_1h, op: count, window: 1h}
`

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newHTTPTestServer(h http.Handler) *httptest.Server { return httptest.NewServer(h) }

// testEnv is a server over an in-process emulator, behind httptest.
type testEnv struct {
	t     testing.TB
	cards *schemas.FeatureSet
	users *schemas.FeatureSet
	emu   *servingtest.Emulator
	srv   *Server
	http  *httptest.Server
	admin *httptest.Server // AdminHandler: /metrics
	now   time.Time        // the server's clock
	tb    time.Time        // a batch watermark aligned to every tile size: midnight UTC
	logs  *bytes.Buffer
}

type envOption func(*Config)

func newEnv(t *testing.T, opts ...envOption) *testEnv {
	t.Helper()
	return newEnvCards(t, cardsYAML, opts...)
}

// newEnvCards is newEnv with another definition of the cards set.
func newEnvCards(t *testing.T, cards string, opts ...envOption) *testEnv {
	t.Helper()
	return newEnvCardsAt(t, cards, time.Now(), opts...)
}

// newEnvCardsAt is newEnvCards with the server's clock at now (in the past
// of the wall clock, so that a test can put it at any time of day: the
// emulator's GC still runs on the wall clock).
func newEnvCardsAt(t *testing.T, cards string, now time.Time, opts ...envOption) *testEnv {
	t.Helper()
	e := &testEnv{t: t, cards: schemastest.MustParse(t, cards), users: schemastest.MustParse(t, usersYAML), logs: new(bytes.Buffer)}
	e.now = now.UTC().Truncate(time.Second)
	e.tb = e.now.Add(-6 * time.Hour).Truncate(24 * time.Hour)
	ctx := context.Background()
	sets := []*schemas.FeatureSet{e.cards, e.users}
	emu, err := servingtest.StartEmulator(ctx, sets)
	if err != nil {
		t.Fatal(err)
	}
	e.emu = emu
	t.Cleanup(emu.Close)
	cfg := Config{
		Sets: sets, Table: emu.Table,
		Logger:      slog.New(slog.NewTextHandler(e.logs, nil)),
		Now:         func() time.Time { return e.now },
		MetaRefresh: 50 * time.Millisecond,
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.http = httptest.NewServer(srv)
	e.admin = httptest.NewServer(srv.AdminHandler())
	t.Cleanup(func() {
		e.admin.Close()
		e.http.Close()
		_ = srv.Close()
	})
	return e
}

// write folds events into tiles of set and writes them into family.
func (e *testEnv) write(set *schemas.FeatureSet, family string, events ...schemas.Event) {
	e.t.Helper()
	if err := servingtest.WriteEvents(context.Background(), e.emu.Table, set, family, events...); err != nil {
		e.t.Fatal(err)
	}
}

// freshness writes metadata and waits until the server has read it.
func (e *testEnv) freshness(set string, tb, sl time.Time) {
	e.t.Helper()
	if err := servingtest.WriteFreshness(context.Background(), e.emu.Table, set, tb, sl); err != nil {
		e.t.Fatal(err)
	}
	e.syncMeta()
}

// streamWatermark writes a feature set's stream watermark; freshness or
// syncMeta make the server read it.
func (e *testEnv) streamWatermark(set string, w time.Time) {
	e.t.Helper()
	if err := bigtablestore.WriteMeta(context.Background(), e.emu.Table, set, schemas.QualifierStreamWatermark, w); err != nil {
		e.t.Fatal(err)
	}
}

// syncMeta re-reads the metadata now, so a test need not wait for the loop.
func (e *testEnv) syncMeta() {
	e.t.Helper()
	if _, err := e.srv.meta.read(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

func (e *testEnv) card(key string, t time.Time, merchant string, amount float64) schemas.Event {
	return servingtest.Event(e.cards, key, t, map[string]schemas.Value{
		"merchant": schemas.StringValue(merchant),
		"amount":   schemas.Float64Value(amount),
		"approved": schemas.BoolValue(amount < 100),
		"items":    schemas.Int64Value(2),
	})
}

// response is a decoded HTTP response.
type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (e *testEnv) do(method, path, body string, header ...string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	r := response{status: res.StatusCode, header: res.Header, raw: string(raw)}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") && method != http.MethodHead {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&r.body); err != nil {
			e.t.Fatalf("%s %s: response is not JSON: %v\n%s", method, path, err, raw)
		}
	}
	return r
}

// metrics returns the Prometheus text of the admin handler.
func (e *testEnv) metrics() string {
	e.t.Helper()
	res, err := e.admin.Client().Get(e.admin.URL + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		e.t.Fatalf("GET /metrics: %d, %v", res.StatusCode, err)
	}
	return string(b)
}

func (e *testEnv) get(path string, header ...string) response {
	e.t.Helper()
	return e.do(http.MethodGet, path, "", header...)
}

// features returns the "features" object of a one-entity response as
// name → [value, status].
func features(t *testing.T, r response) map[string][2]any {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", r.status, r.raw)
	}
	return featuresOf(t, r.body["features"])
}

func featuresOf(t *testing.T, v any) map[string][2]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("features = %#v, want an object", v)
	}
	out := make(map[string][2]any, len(m))
	for k, fv := range m {
		o := fv.(map[string]any)
		out[k] = [2]any{o["value"], o["status"]}
	}
	return out
}

func rfc(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func writeKeys(t *testing.T, content string) *apikeys.Keys {
	t.Helper()
	k, err := apikeys.Parse([]byte(content))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// checkError checks that r is an error response with the status, the code
// and a message containing message.
func checkError(t *testing.T, r response, status int, code, message string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	errObj, ok := r.body["error"].(map[string]any)
	if !ok {
		t.Fatalf("body %s, want an error object", r.raw)
	}
	if errObj["code"] != code {
		t.Errorf("code %v, want %s", errObj["code"], code)
	}
	if msg, _ := errObj["message"].(string); !strings.Contains(msg, message) {
		t.Errorf("message %q, want it to contain %q", msg, message)
	}
}
