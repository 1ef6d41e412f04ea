package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/bigtable"
	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/schemas/sample"
	"github.com/tandem-fp/tandem/serving"
	"github.com/tandem-fp/tandem/serving/apikeys"
	"github.com/tandem-fp/tandem/serving/servingtest"
	"github.com/tandem-fp/tandem/serving/ui"
)

// The browser tests drive the distribution's Chromium, headless, against a
// real server on a loopback listener over the in-process Bigtable emulator
// with tiles of the shipped definitions (schemas/*.yaml), written as the
// pipelines write them. Event times are relative to the wall clock, as the
// server compares `at` and freshness with it.

// chromium is the browser the tests drive; they skip without it unless
// TANDEM_REQUIRE_BROWSER=1 (set by .ci/run), when they fail.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("TANDEM_CHROMIUM"), "/usr/bin/chromium"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := "no Chromium at /usr/bin/chromium: apt-get install chromium to run the browser tests"
	if os.Getenv("TANDEM_REQUIRE_BROWSER") == "1" {
		t.Fatal(msg + " (TANDEM_REQUIRE_BROWSER=1)")
	}
	t.Skip(msg)
	return ""
}

// browser is one headless Chromium with a fresh profile, and the console
// messages of its tab.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu   sync.Mutex
	msgs []chromedp.ConsoleMessage
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		// Without these Chromium reaches out to Google at start, which this
		// machine refuses.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	b := &browser{t: t, ctx: ctx}
	msgs := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.msgs = append(b.msgs, m)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc()
		<-done
	})
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return b
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatal(err)
	}
}

// setValue sets the value of the input sel, as typing would.
func (b *browser) setValue(sel, v string) {
	b.t.Helper()
	js, _ := json.Marshal(v)
	eval[bool](b, fmt.Sprintf(`(() => { const n = document.querySelector(%q); n.value = %s; n.dispatchEvent(new Event('input')); return true; })()`, sel, js))
}

func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// evalAwait evaluates expr, which yields a promise, and decodes what it
// resolves to.
func evalAwait[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor waits until the JavaScript expression is true.
func (b *browser) waitFor(expr string) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(45*time.Second))); err != nil {
		b.t.Fatalf("waiting for %s: %v\nconsole: %v\nbody: %s", expr, err, b.console(), eval[string](b, "document.body.innerText"))
	}
}

// open sets the viewport and loads the page at u, waiting until its loader
// finished (body[data-ready]).
func (b *browser) open(vp viewport, u string) {
	b.t.Helper()
	b.mu.Lock()
	b.msgs = nil
	b.mu.Unlock()
	var opts []chromedp.EmulateViewportOption
	if vp.mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	b.do(chromedp.EmulateViewport(vp.w, vp.h, append(opts, chromedp.EmulateScale(1))...), chromedp.Navigate(u))
	b.waitFor("document.body && document.body.dataset.ready !== undefined")
}

func (b *browser) console() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.msgs {
		out = append(out, fmt.Sprintf("%s %s: %s (%s:%d)", m.Type, m.Source, m.Text, m.URL, m.Line))
	}
	return out
}

// noConsoleErrors fails on any error, warning or exception on the console
// (a CSP violation, a failed load, an uncaught exception), except browser
// log entries of the network that contain one of allowed (the expected
// 4xx of a test of bad input).
func (b *browser) noConsoleErrors(page string, allowed ...string) {
	b.t.Helper()
	time.Sleep(100 * time.Millisecond) // let the last events arrive
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.msgs {
		if m.Type != chromedp.ConsoleError && m.Type != chromedp.ConsoleWarning && !m.IsException() && m.Type != "assert" {
			continue
		}
		if m.Source == "network" && slices.ContainsFunc(allowed, func(a string) bool { return strings.Contains(m.Text, a) }) {
			continue
		}
		b.t.Errorf("%s: console %s %s: %s (%s:%d)", page, m.Type, m.Source, m.Text, m.URL, m.Line)
	}
}

var screenshotDir = filepath.Join(os.TempDir(), "tandem-ui-screenshots")

// screenshot writes a full-page PNG under screenshotDir.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	p := filepath.Join(screenshotDir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s (%d bytes)", p, len(png))
}

// elementShot writes a PNG of the element sel only (the pictures of the
// README, docs/ui-*.png, are these).
func (b *browser) elementShot(sel, name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.Screenshot(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatal(err)
	}
	p := filepath.Join(screenshotDir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s (%d bytes)", p, len(png))
}

type viewport struct {
	name   string
	w, h   int64
	mobile bool
}

var viewports = []viewport{{"desktop", 1280, 800, false}, {"phone", 390, 844, true}}

// fixture is a server with the shipped definitions over seeded tiles.
type fixture struct {
	t       *testing.T
	url     string
	handler http.Handler // the page and the API
	sets    map[string]*schemas.FeatureSet
	at      time.Time // a past instant on a minute boundary
	card    string    // an entity of card_activity with known history
	user    string    // an entity of user_sessions, whose stream is behind
	table   *bigtable.Table
	browser *requestLog // what the browser asked the server
}

// pairMerchant is the merchant of the fixture's user_merchant entity.
const pairMerchant = "Café #1"

const (
	cardKey  = "ui-test-card-key-0123456789" // may read card_activity only
	wrongKey = "not-a-key-of-this-server-000"
)

func newFixture(t *testing.T, withKeys bool) *fixture {
	t.Helper()
	ctx := context.Background()
	sets, err := schemas.LoadAll("../../schemas")
	if err != nil {
		t.Fatal(err)
	}
	services, err := schemas.LoadServicesBeside(sets, "../../schemas")
	if err != nil {
		t.Fatal(err)
	}
	emu, err := servingtest.StartEmulator(ctx, sets)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	f := &fixture{t: t, sets: map[string]*schemas.FeatureSet{}, card: "c_ui_chart", user: "4242", table: emu.Table, browser: newRequestLog()}
	for _, s := range sets {
		f.sets[s.Name] = s
	}
	now := time.Now().UTC()
	f.at = now.Add(-30 * time.Minute).Truncate(time.Minute)
	tb := now.Add(-6 * time.Hour).Truncate(24 * time.Hour) // on every tile boundary
	card, user := f.sets["card_activity"], f.sets["user_sessions"]
	var cardEvents, userEvents []schemas.Event
	// card: an event every 37 minutes from 14h before f.at to 2 minutes
	// ago, so that a day of history starts with a gap (NOT_FOUND) and the
	// past reads have events after them (as_of).
	for k, t := 0, f.at.Add(-14*time.Hour); t.Before(now.Add(-2 * time.Minute)); k, t = k+1, t.Add(37*time.Minute) {
		cardEvents = append(cardEvents, servingtest.Event(card, f.card, t, map[string]schemas.Value{
			"merchant": schemas.StringValue(fmt.Sprintf("m_%d", k%5)), "amount": schemas.Float64Value(10 + float64(k%7)*3.5),
			"approved": schemas.BoolValue(k%3 != 0),
		}))
	}
	for k, t := 0, now.Add(-20*time.Hour); t.Before(now.Add(-5 * time.Minute)); k, t = k+1, t.Add(20*time.Minute) {
		userEvents = append(userEvents, servingtest.Event(user, f.user, t, map[string]schemas.Value{
			"user_id": schemas.Int64Value(4242), "session_id": schemas.StringValue(fmt.Sprintf("s_%d", k/4)), "page": schemas.StringValue([]string{"/", "/cart", "/item"}[k%3]),
			"country": schemas.StringValue("DE"), "device": schemas.StringValue("phone"), "dwell_ms": schemas.Int64Value(int64(500 + 90*(k%11))),
			"cart_items": schemas.Int64Value(int64(k % 4)), "logged_in": schemas.BoolValue(k%2 == 0),
		}))
	}
	// user_merchant (a composite key): the user's payments at a merchant
	// whose name holds the key encoding's separator.
	pairs := f.sets["user_merchant"]
	var pairEvents []schemas.Event
	for k, t := 0, now.Add(-20*time.Hour); t.Before(now.Add(-5 * time.Minute)); k, t = k+1, t.Add(45*time.Minute) {
		pairEvents = append(pairEvents, servingtest.Event(pairs, schemas.EntityKey(f.user, pairMerchant), t, map[string]schemas.Value{
			"amount": schemas.Float64Value(5 + float64(k%9)), "approved": schemas.BoolValue(k%4 != 0),
		}))
	}
	if err := servingtest.WriteEvents(ctx, emu.Table, pairs, schemas.FamilyStream, pairEvents...); err != nil {
		t.Fatal(err)
	}
	// And generated traffic of other entities, as a running stack has.
	cardEvents = append(cardEvents, sample.Events(card, 1, 2000, now.Add(-72*time.Hour), now.Add(-time.Minute))...)
	userEvents = append(userEvents, sample.Events(user, 2, 2000, now.Add(-72*time.Hour), now.Add(-time.Minute))...)
	for _, w := range []struct {
		set    *schemas.FeatureSet
		events []schemas.Event
	}{{card, cardEvents}, {user, userEvents}} {
		var batch, stream []schemas.Event
		for _, e := range w.events {
			if e.Time < tb.UnixMicro() {
				batch = append(batch, e)
			} else {
				stream = append(stream, e)
			}
		}
		if err := servingtest.WriteEvents(ctx, emu.Table, w.set, schemas.FamilyBatch, batch...); err != nil {
			t.Fatal(err)
		}
		if err := servingtest.WriteEvents(ctx, emu.Table, w.set, schemas.FamilyStream, stream...); err != nil {
			t.Fatal(err)
		}
	}
	// card_activity's stream is current; user_sessions' stopped 70 minutes
	// ago, so its values read now are STALE.
	for _, m := range []struct {
		set      string
		tile, wm time.Time
	}{{"card_activity", now.Add(-time.Minute).Truncate(time.Minute), now.Add(-3 * time.Second)}, {"user_sessions", now.Add(-2 * time.Hour).Truncate(time.Minute), now.Add(-70 * time.Minute)}} {
		if err := servingtest.WriteFreshness(ctx, emu.Table, m.set, tb, m.tile); err != nil {
			t.Fatal(err)
		}
		if err := bigtablestore.WriteMeta(ctx, emu.Table, m.set, schemas.QualifierStreamWatermark, m.wm); err != nil {
			t.Fatal(err)
		}
	}
	var keys *apikeys.Keys
	if withKeys {
		if keys, err = apikeys.Parse([]byte(`keys: [{name: card-only, key: "` + cardKey + `", featuresets: [card_activity]}]`)); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := serving.New(serving.Config{
		Sets: sets, Services: services, Table: emu.Table, Keys: keys,
		MetaRefresh: 100 * time.Millisecond,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	f.handler = ui.Handler(srv)
	hs := httptest.NewServer(f.browser.wrap(f.handler))
	t.Cleanup(func() {
		hs.Close()
		_ = srv.Close()
	})
	f.url = hs.URL
	// Wait until the server has read the metadata.
	for deadline := time.Now().Add(10 * time.Second); ; {
		var r struct{ Freshness map[string]any }
		f.get("/v1/features/card_activity/x?features=txn_count_1h", cardKey, &r)
		if r.Freshness["batch_watermark"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not read the seeded metadata")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return f
}

// get reads path from the API (with key, when the server has keys) into
// out and returns the status.
func (f *fixture) get(path, key string, out any) int {
	f.t.Helper()
	req, err := http.NewRequest("GET", f.url+path, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		f.t.Fatalf("GET %s: %v: %s", path, err, b)
	}
	return res.StatusCode
}

// apiMessage is the message of the API's error for path.
func (f *fixture) apiMessage(path, key string) (int, string) {
	f.t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	status := f.get(path, key, &e)
	if e.Error.Message == "" {
		f.t.Fatalf("GET %s: status %d without an error message", path, status)
	}
	return status, e.Error.Message
}

type featureValue struct {
	Value  any    `json:"value"`
	Status string `json:"status"`
	AsOf   string `json:"as_of,omitempty"`
}

type entityFeatures struct {
	At       string                  `json:"at"`
	Features map[string]featureValue `json:"features"`
}

// cell is a value as the page shows it: data-value holds the JSON of the
// value the page received.
type cell struct {
	Feature, Value, Text, Status, AsOf string
}

func decodeCells(t *testing.T, cells []cell) map[string]featureValue {
	t.Helper()
	out := make(map[string]featureValue)
	for _, c := range cells {
		var v any
		if err := json.Unmarshal([]byte(c.Value), &v); err != nil {
			t.Fatalf("feature %s: data-value %q: %v", c.Feature, c.Value, err)
		}
		out[c.Feature] = featureValue{Value: v, Status: c.Status, AsOf: c.AsOf}
	}
	return out
}

func TestPages(t *testing.T) {
	f := newFixture(t, false)
	b := newBrowser(t)
	t.Logf("screenshots in %s", screenshotDir)
	card := f.sets["card_activity"]
	for _, vp := range viewports {
		t.Run("overview/"+vp.name, func(t *testing.T) {
			b.t = t
			b.open(vp, f.url+"/ui/")
			b.waitFor("document.body.dataset.ready === 'true'")
			got := eval[[]string](b, `[...document.querySelectorAll('section[data-set]')].map(s => s.dataset.set)`)
			if diff := cmp.Diff([]string{"card_activity", "user_merchant", "user_sessions"}, got); diff != "" {
				t.Errorf("feature set cards (-want +got):\n%s", diff)
			}
			rows := eval[[]string](b, `[...document.querySelectorAll('#set-card_activity tr[data-feature]')].map(r => r.dataset.feature)`)
			var want []string
			for _, ft := range card.Features {
				want = append(want, ft.Name)
			}
			if diff := cmp.Diff(want, rows); diff != "" {
				t.Errorf("card_activity's features (-want +got):\n%s", diff)
			}
			links := eval[[]string](b, `[...document.querySelectorAll('section[data-service=fraud_model] td.head a')].map(a => a.getAttribute('href'))`)
			if diff := cmp.Diff([]string{"./#set-card_activity", "./#set-user_merchant", "./#set-user_sessions"}, links); diff != "" {
				t.Errorf("fraud_model's links to its sets (-want +got):\n%s", diff)
			}
			// Values of shapes the page does not know (lists, objects) are
			// shown as JSON, not dropped.
			shapes := evalAwait[[]string](b, `(async () => { const m = await import('./common.js');
				return [m.formatValue([1, "a", null]), m.formatValue({p50: 2.5}), m.formatValue(null), m.formatValue(false), m.formatValue("x")]; })()`)
			if diff := cmp.Diff([]string{`[1,"a",null]`, `{"p50":2.5}`, "null", "false", "x"}, shapes); diff != "" {
				t.Errorf("formatValue (-want +got):\n%s", diff)
			}
			// A feature service read from its card shows what the API answers.
			b.setValue("section[data-service=fraud_model] input[name=card_id]", f.card)
			b.setValue("section[data-service=fraud_model] input[name=user_id]", f.user)
			b.setValue("section[data-service=fraud_model] input[name=merchant]", pairMerchant)
			b.setValue("section[data-service=fraud_model] input[name=at]", f.at.Format(time.RFC3339))
			b.do(chromedp.Click(chromedp.CSS("section[data-service=fraud_model] form button")))
			b.waitFor("document.querySelectorAll('section[data-service=fraud_model] .service-values tr[data-feature]').length > 0")
			var svc struct {
				Features map[string]map[string]featureValue `json:"features"`
				Derived  map[string]featureValue            `json:"derived"`
			}
			f.get("/v1/services/fraud_model?"+url.Values{"card_id": {f.card}, "user_id": {f.user}, "merchant": {pairMerchant}, "at": {f.at.Format(time.RFC3339)}}.Encode(), "", &svc)
			type svcCell struct{ Set, Feature, Value, Status, AsOf string }
			shown := eval[[]svcCell](b, `[...document.querySelectorAll('section[data-service=fraud_model] .service-values tr[data-feature]')].map(r => ({Set: r.dataset.set,
				Feature: r.dataset.feature, Value: r.querySelector('td.value').dataset.value, Status: r.dataset.status, AsOf: (r.querySelector('.asof') || {}).title || ''}))`)
			onPage := map[string]map[string]featureValue{}
			derivedOnPage := map[string]featureValue{}
			for _, c := range shown {
				if c.Set == "" { // the service's own derived features
					for k, v := range decodeCells(t, []cell{{Feature: c.Feature, Value: c.Value, Status: c.Status, AsOf: c.AsOf}}) {
						derivedOnPage[k] = v
					}
					continue
				}
				if onPage[c.Set] == nil {
					onPage[c.Set] = map[string]featureValue{}
				}
				for k, v := range decodeCells(t, []cell{{Feature: c.Feature, Value: c.Value, Status: c.Status, AsOf: c.AsOf}}) {
					onPage[c.Set][k] = v
				}
			}
			if diff := cmp.Diff(svc.Features, onPage); diff != "" || len(shown) != 14 {
				t.Errorf("fraud_model read on the page: %d values (-API +page):\n%s", len(shown), diff)
			}
			if diff := cmp.Diff(svc.Derived, derivedOnPage); diff != "" || len(derivedOnPage) != 2 {
				t.Errorf("fraud_model's derived features on the page: %d (-API +page):\n%s", len(derivedOnPage), diff)
			}
			if n := eval[int](b, `document.querySelectorAll('section[data-service=fraud_model] tr[data-derived=txns_per_view_1h] code').length`); n != 1 {
				t.Errorf("the service card lists txns_per_view_1h's expression %d times, want once", n)
			}
			if got := eval[string](b, `(document.querySelector('section[data-set=card_activity] tr[data-derived=declined_share_1h] code') || {}).textContent || ''`); got != "declined_count_1h / txn_count_1h" {
				t.Errorf("card_activity's card shows declined_share_1h's expression %q", got)
			}
			if got := eval[string](b, `(document.querySelector('section[data-set=card_activity] tr[data-feature=declined_count_1h] .where') || {}).textContent || ''`); got != " where not approved" {
				t.Errorf("card_activity's card shows declined_count_1h's filter as %q", got)
			}
			b.screenshot("overview-" + vp.name)
			b.noConsoleErrors("overview")
		})
		t.Run("freshness/"+vp.name, func(t *testing.T) {
			b.t = t
			b.open(vp, f.url+"/ui/freshness.html?every=1")
			b.waitFor("Number(document.getElementById('updated').dataset.polls) >= 2")
			type row struct{ Set, Status, APIStatus string }
			got := eval[[]row](b, `[...document.querySelectorAll('#freshness tbody tr')].map(r => ({Set: r.dataset.set, Status: r.dataset.status, APIStatus: r.dataset.apiStatus || ''}))`)
			want := []row{{"card_activity", "PRESENT", "PRESENT"}, {"user_merchant", "STALE", "STALE"}, {"user_sessions", "STALE", "STALE"}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("freshness rows (-want +got):\n%s", diff)
			}
			b.screenshot("freshness-" + vp.name)
			if vp.name == "desktop" {
				b.elementShot("main", "readme-freshness")
			}
			b.noConsoleErrors("freshness")
		})
		t.Run("composite key/"+vp.name, func(t *testing.T) {
			// The entity page of a composite-key set takes one input per
			// key part, reads the API with them as parameters, and shows
			// what it answers.
			b.t = t
			b.open(vp, f.url+"/ui/entity.html?set=user_merchant")
			b.waitFor("document.body.dataset.ready === 'true'")
			parts := eval[[]string](b, `[...document.querySelectorAll('#key-parts input[data-part]')].map(i => i.dataset.part)`)
			if diff := cmp.Diff([]string{"user_id", "merchant"}, parts); diff != "" {
				t.Errorf("key part inputs (-want +got):\n%s", diff)
			}
			b.setValue("#key-parts input[data-part=user_id]", f.user)
			b.setValue("#key-parts input[data-part=merchant]", pairMerchant)
			b.do(chromedp.Click(chromedp.CSS("#lookup button")))
			b.waitFor("!document.getElementById('values-card').hidden")
			var api entityFeatures
			f.get("/v1/features/user_merchant?"+url.Values{"user_id": {f.user}, "merchant": {pairMerchant}}.Encode(), "", &api)
			cells := eval[[]cell](b, `[...document.querySelectorAll('#values tbody tr')].map(r => ({Feature: r.dataset.feature,
				Value: r.querySelector('td.value').dataset.value, Text: r.querySelector('td.value').textContent,
				Status: r.dataset.status, AsOf: (r.querySelector('.asof') || {}).title || ''}))`)
			if diff := cmp.Diff(api.Features, decodeCells(t, cells)); diff != "" || len(cells) != f.sets["user_merchant"].Outputs() {
				t.Errorf("lookup of user_merchant (-API +page):\n%s", diff)
			}
			if n := fmt.Sprint(api.Features["txn_count_7d"].Value); n == "0" || n == "<nil>" {
				t.Errorf("txn_count_7d = %v, want the fixture's payments", api.Features["txn_count_7d"])
			}
			if got := eval[string](b, `document.getElementById('values-title').textContent`); got != "user_merchant / user_id="+f.user+", merchant="+pairMerchant {
				t.Errorf("values title %q", got)
			}
			if got := eval[string](b, `location.search`); !strings.Contains(got, "key.merchant=Caf") {
				t.Errorf("the page's URL %q does not hold the key parts", got)
			}
			b.screenshot("composite-key-" + vp.name)
			b.noConsoleErrors("composite key")
		})
		t.Run("entity/"+vp.name, func(t *testing.T) {
			b.t = t
			features := []string{"txn_count_1h", "amount_mean_24h", "amount_max_24h", "last_merchant"}
			q := url.Values{"set": {"card_activity"}, "key": {f.card}, "at": {f.at.Format(time.RFC3339)}, "features": {strings.Join(features, ",")}}
			b.open(vp, f.url+"/ui/entity.html?"+q.Encode())
			b.waitFor("document.body.dataset.ready === 'true' && document.getElementById('chart').dataset.points !== undefined")

			// The lookup shows what the API answers for the same read.
			var api entityFeatures
			f.get("/v1/features/card_activity/"+f.card+"?at="+f.at.Format(time.RFC3339), "", &api)
			cells := eval[[]cell](b, `[...document.querySelectorAll('#values tbody tr')].map(r => ({Feature: r.dataset.feature,
				Value: r.querySelector('td.value').dataset.value, Text: r.querySelector('td.value').textContent,
				Status: r.dataset.status, AsOf: (r.querySelector('.asof') || {}).title || ''}))`)
			if diff := cmp.Diff(api.Features, decodeCells(t, cells)); diff != "" {
				t.Errorf("lookup of %s at %s (-API +page):\n%s", f.card, f.at, diff)
			}
			if len(cells) != card.Outputs() {
				t.Errorf("lookup shows %d features, want %d (stored and derived)", len(cells), card.Outputs())
			}
			for _, c := range cells {
				if want := display(api.Features[c.Feature].Value); !sameDisplay(c.Text, want) {
					t.Errorf("lookup %s shows %q, want %q", c.Feature, c.Text, want)
				}
			}

			// The history table holds what the API answers at each instant,
			// and the chart draws a point per distinct instant a numeric value
			// is exact at (as_of, else at).
			type histRow struct {
				At    string
				Cells []cell
			}
			rows := eval[[]histRow](b, `[...document.querySelectorAll('#history-table tbody tr')].map(r => ({At: r.dataset.at,
				Cells: [...r.querySelectorAll('td[data-feature]')].map(c => ({Feature: c.dataset.feature, Value: c.dataset.value,
				Status: c.dataset.status, AsOf: (c.querySelector('span.sub') || {}).title?.replace('exact at ', '') || ''}))}))`)
			if len(rows) < 40 {
				t.Fatalf("history has %d reads, want 48 (24h in 48 points)", len(rows))
			}
			points, gaps := map[string]map[string]bool{}, map[string]map[string]bool{} // feature → instants
			for _, ft := range features[:3] {
				points[ft], gaps[ft] = map[string]bool{}, map[string]bool{}
			}
			for _, r := range rows {
				var at entityFeatures
				f.get("/v1/features/card_activity/"+f.card+"?features="+strings.Join(features, ",")+"&at="+url.QueryEscape(r.At), "", &at)
				if diff := cmp.Diff(at.Features, decodeCells(t, r.Cells)); diff != "" {
					t.Errorf("history at %s (-API +page):\n%s", r.At, diff)
				}
				for ft := range points {
					v := at.Features[ft]
					// The page draws a value at the instant it is exact at.
					exact := v.AsOf
					if exact == "" {
						exact = r.At
					}
					tx, err := time.Parse(time.RFC3339Nano, exact)
					if err != nil {
						t.Fatal(err)
					}
					key := fmt.Sprint(tx.UnixMilli())
					if v.Value == nil {
						gaps[ft][key] = true
					} else {
						points[ft][key] = true
					}
				}
			}
			wantPoints, wantGaps := 0, 0
			for ft := range points {
				wantPoints += len(points[ft])
				wantGaps += len(gaps[ft])
			}
			chart := eval[map[string]string](b, `({...document.getElementById('chart').dataset})`)
			if chart["series"] != "3" || chart["points"] != fmt.Sprint(wantPoints) || chart["notFound"] != fmt.Sprint(wantGaps) {
				t.Errorf("chart %v, want 3 series, %d points, %d NOT_FOUND", chart, wantPoints, wantGaps)
			}
			if wantPoints == 0 || wantGaps == 0 {
				t.Errorf("seeded history has %d points and %d gaps, want both", wantPoints, wantGaps)
			}
			// The canvas has the first line's colour (#2458c6) on it.
			blue := eval[int](b, `(() => { const c = document.querySelector('#chart canvas'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
				let n = 0; for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i]-0x24) < 24 && Math.abs(d[i+1]-0x58) < 24 && Math.abs(d[i+2]-0xc6) < 24 && d[i+3] > 200) n++; return n; })()`)
			if blue < 200 {
				t.Errorf("the chart's canvas has %d pixels of the first line's colour, want a drawn line", blue)
			}
			if note := eval[string](b, `document.getElementById('history-note').textContent`); !strings.Contains(note, "last_merchant") {
				t.Errorf("note %q does not say that last_merchant (strings) is not drawn", note)
			}
			b.screenshot("entity-" + vp.name)
			if vp.name == "desktop" {
				b.elementShot("#history-card", "readme-history")
			}
			b.noConsoleErrors("entity")
		})
	}
	t.Run("behind a prefix", func(t *testing.T) {
		b.t = t
		// Only under /tandem/, as behind a proxy that adds the prefix.
		mux := http.NewServeMux()
		mux.Handle("/tandem/", http.StripPrefix("/tandem", f.handler))
		ps := httptest.NewServer(mux)
		defer ps.Close()
		b.open(viewports[0], ps.URL+"/tandem/ui/entity.html?set=card_activity&key="+f.card)
		b.waitFor("document.body.dataset.ready === 'true' && !document.getElementById('values-card').hidden")
		// Each row says what the value is: op, parameters, filter, or the
		// derived feature's expression.
		for feature, want := range map[string]string{
			"declined_count_1h": "count over 1h, 1m tiles, where not approved",
			"last_5_merchants":  "last_k(merchant; k 5) over 7d, 1h tiles",
			"amount_p90_7d":     "approx_percentile(amount; 0.5, 0.9) over 7d, 3h tiles",
			"declined_share_1h": "= declined_count_1h / txn_count_1h (derived at read time)",
		} {
			if got := eval[string](b, `document.querySelector('#values tr[data-feature=`+feature+`] td[data-label=definition]').textContent`); got != want {
				t.Errorf("definition of %s: %q, want %q", feature, got, want)
			}
		}
		b.noConsoleErrors("entity under /tandem/ui/")
	})
	t.Run("entity/stale", func(t *testing.T) {
		b.t = t
		q := url.Values{"set": {"user_sessions"}, "key": {f.user}, "features": {"views_1h,dwell_ms_sum_1h,last_page"}}
		b.open(viewports[0], f.url+"/ui/entity.html?"+q.Encode())
		b.waitFor("document.body.dataset.ready === 'true' && document.getElementById('chart').dataset.points !== undefined")
		chart := eval[map[string]string](b, `({...document.getElementById('chart').dataset})`)
		if chart["stale"] == "0" || chart["series"] != "2" {
			t.Errorf("chart %v, want 2 series with STALE points (the stream is 70 minutes behind)", chart)
		}
		if got := eval[string](b, `document.querySelector('#values tr[data-feature=views_1h]').dataset.status`); got != "STALE" {
			t.Errorf("views_1h read now: status %s, want STALE", got)
		}
		b.screenshot("entity-stale-desktop")
		b.noConsoleErrors("entity (stale)")
	})
}

// display is how the page shows a decoded JSON value.
func display(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return v
	case float64, bool:
		b, _ := json.Marshal(v)
		return string(b)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// sameDisplay reports whether the page's text shows want: equal text, or,
// for a list or object value, the same JSON (the API's key order is the
// page's, while want went through a Go map, which sorts keys).
func sameDisplay(text, want string) bool {
	if text == want {
		return true
	}
	var a, b any
	if json.Unmarshal([]byte(text), &a) != nil || json.Unmarshal([]byte(want), &b) != nil {
		return false
	}
	switch b.(type) {
	case map[string]any, []any:
		return cmp.Equal(a, b)
	}
	return false
}

// TestConsoleCheck shows that the console check sees what it must fail
// on: a console error, an uncaught exception, and the CSP refusing an
// inline script.
func TestConsoleCheck(t *testing.T) {
	f := newFixture(t, false)
	b := newBrowser(t)
	b.open(viewports[0], f.url+"/ui/")
	b.waitFor("document.body.dataset.ready === 'true'")
	eval[bool](b, `(() => { console.error('probe error');
		const s = document.createElement('script'); s.textContent = 'window.inlineRan = true'; document.head.append(s);
		setTimeout(() => { throw new Error('probe exception'); }, 0); return true; })()`)
	b.waitFor("true")
	time.Sleep(300 * time.Millisecond)
	if eval[bool](b, "window.inlineRan === true") {
		t.Error("an inline script ran: the Content-Security-Policy did not apply")
	}
	got := strings.Join(b.console(), "\n")
	for _, want := range []string{"probe error", "probe exception", "Content Security Policy"} {
		if !strings.Contains(got, want) {
			t.Errorf("console messages do not contain %q:\n%s", want, got)
		}
	}
}

func TestBadInput(t *testing.T) {
	f := newFixture(t, false)
	b := newBrowser(t)
	for _, tc := range []struct {
		name, key, at string
	}{
		{"at not RFC 3339", f.card, "yesterday"},
		{"at in the future", f.card, time.Now().Add(time.Hour).UTC().Format(time.RFC3339)},
		{"key too long", strings.Repeat("k", 1100), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.t = t
			b.open(viewports[0], f.url+"/ui/entity.html?set=card_activity")
			b.waitFor("document.body.dataset.ready === 'true'")
			b.setValue("#key", tc.key)
			b.setValue("#at", tc.at)
			b.do(chromedp.Click(chromedp.CSS("#lookup button")))
			b.waitFor("document.querySelector('#lookup-error .error') !== null")
			path := "/v1/features/card_activity/" + url.PathEscape(tc.key)
			if tc.at != "" {
				path += "?at=" + url.QueryEscape(tc.at)
			}
			status, msg := f.apiMessage(path, "")
			got := eval[string](b, `document.querySelector('#lookup-error .error').textContent`)
			if !strings.Contains(got, msg) || !strings.Contains(got, fmt.Sprint(status)) {
				t.Errorf("page shows %q, want the API's %d %q", got, status, msg)
			}
			if tc.name == "at not RFC 3339" {
				b.screenshot("bad-input-desktop")
			}
			b.noConsoleErrors("entity", "400")
		})
	}
	// A custom range is checked by the page before any read.
	t.Run("custom range", func(t *testing.T) {
		b.t = t
		b.open(viewports[0], f.url+"/ui/entity.html?set=card_activity&key="+f.card)
		b.waitFor("document.body.dataset.ready === 'true' && !document.getElementById('history-card').hidden")
		b.do(chromedp.SetValue(chromedp.CSS("#range"), "custom"))
		b.setValue("#from", "last tuesday")
		b.do(chromedp.Click(chromedp.CSS("#draw")))
		b.waitFor("document.querySelector('#history-error .error') !== null")
		if got := eval[string](b, `document.querySelector('#history-error .error').textContent`); !strings.Contains(got, `from "last tuesday" is not an RFC 3339 instant`) {
			t.Errorf("custom range with a bad from shows %q", got)
		}
		from, to := f.at.Add(-2*time.Hour), f.at
		b.setValue("#from", from.Format(time.RFC3339))
		b.setValue("#to", to.Format(time.RFC3339))
		b.do(chromedp.SetValue(chromedp.CSS("#points"), "24"), chromedp.Click(chromedp.CSS("#draw")))
		b.waitFor("document.getElementById('chart').dataset.reads === '24'")
		ats := eval[[]string](b, `[...document.querySelectorAll('#history-table tbody tr')].map(r => r.dataset.at)`)
		if len(ats) != 24 || ats[0] != from.Format(time.RFC3339) || ats[23] != to.Format(time.RFC3339) {
			t.Errorf("custom range %s to %s in 24 points read at %v", from, to, ats)
		}
		b.noConsoleErrors("entity (custom range)")
	})
}

func TestAPIKeys(t *testing.T) {
	f := newFixture(t, true)
	b := newBrowser(t)
	showsAuth := func(want string) {
		t.Helper()
		b.waitFor("!document.getElementById('auth').hidden && document.querySelector('#auth-message .error') !== null")
		got := eval[string](b, `document.querySelector('#auth-message .error').textContent`)
		if !strings.Contains(got, want) || !strings.Contains(got, "401") {
			t.Errorf("key prompt shows %q, want the API's 401 %q", got, want)
		}
	}
	b.open(viewports[0], f.url+"/ui/")
	_, missing := f.apiMessage("/v1/featuresets", "")
	showsAuth(missing)

	_, invalid := f.apiMessage("/v1/featuresets", wrongKey)
	b.do(chromedp.SetValue(chromedp.CSS("#auth-key"), wrongKey), chromedp.Click(chromedp.CSS("#auth-form button")))
	b.waitFor("document.getElementById('auth-intro').textContent.includes('did not accept')")
	showsAuth(invalid)
	b.screenshot("apikey-wrong-desktop")
	b.open(viewports[1], f.url+"/ui/")
	b.do(chromedp.SetValue(chromedp.CSS("#auth-key"), wrongKey), chromedp.Click(chromedp.CSS("#auth-form button")))
	showsAuth(invalid)
	b.screenshot("apikey-wrong-phone")
	b.noConsoleErrors("overview with a wrong key", "401")

	// The right key: only what it may read.
	b.do(chromedp.SetValue(chromedp.CSS("#auth-key"), cardKey), chromedp.Click(chromedp.CSS("#auth-form button")))
	b.waitFor("document.body.dataset.ready === 'true'")
	if got := eval[[]string](b, `[...document.querySelectorAll('section[data-set]')].map(s => s.dataset.set)`); !slices.Equal(got, []string{"card_activity"}) {
		t.Errorf("with a card_activity key the page shows sets %v", got)
	}
	if n := eval[int](b, `document.querySelectorAll('section[data-service]').length`); n != 0 {
		t.Errorf("the page shows %d services, want none (fraud_model also reads user_sessions)", n)
	}
	if stored := eval[string](b, `sessionStorage.getItem('tandem.apiKey')`); stored != cardKey {
		t.Errorf("sessionStorage holds %q, want the key", stored)
	}

	// A set the key may not read: the API's 403, and no value of it.
	_, forbidden := f.apiMessage("/v1/featuresets/user_sessions", cardKey)
	b.open(viewports[0], f.url+"/ui/entity.html?set=user_sessions&key="+f.user)
	b.waitFor("document.querySelector('#error .error') !== null")
	if got := eval[string](b, `document.querySelector('#error .error').textContent`); !strings.Contains(got, forbidden) {
		t.Errorf("entity page for user_sessions shows %q, want the API's %q", got, forbidden)
	}
	if opts := eval[[]string](b, `[...document.querySelectorAll('#set option')].map(o => o.value)`); !slices.Equal(opts, []string{"card_activity"}) {
		t.Errorf("the set menu offers %v", opts)
	}
	if !eval[bool](b, `document.getElementById('values-card').hidden`) {
		t.Error("values shown for a set the key may not read")
	}
	b.noConsoleErrors("entity with a forbidden set", "403")

	// The key works on the other pages too.
	b.open(viewports[0], f.url+"/ui/freshness.html?every=1")
	b.waitFor("document.body.dataset.ready === 'true' && document.querySelectorAll('#freshness tbody tr[data-status=PRESENT]').length === 1")
	b.noConsoleErrors("freshness with a key")
}
