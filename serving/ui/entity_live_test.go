package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/serving/servingtest"
)

// requestLog records the API reads of entity features that the browser
// makes (not the test's own, by Go's client), how many were in flight at
// once per path, and can slow or fail the reads of one path.
type requestLog struct {
	mu          sync.Mutex
	hits        []hit
	inflight    map[string]int
	maxInflight map[string]int
	rulePath    string
	delay       time.Duration
	fail        bool
}

type hit struct {
	path string
	at   bool // an explicit at=
}

func newRequestLog() *requestLog {
	return &requestLog{inflight: map[string]int{}, maxInflight: map[string]int{}}
}

// unavailableMessage is what a failed read answers while a test fails them.
const unavailableMessage = "Bigtable is unavailable or too slow; retry later (failed by the test)"

func (l *requestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.UserAgent(), "Chrome") || !strings.HasPrefix(r.URL.Path, "/v1/features/") {
			h.ServeHTTP(w, r)
			return
		}
		p := r.URL.Path
		l.mu.Lock()
		l.hits = append(l.hits, hit{path: p, at: r.URL.Query().Has("at")})
		l.inflight[p]++
		l.maxInflight[p] = max(l.maxInflight[p], l.inflight[p])
		ruled := p == l.rulePath
		delay, fail := l.delay, l.fail
		l.mu.Unlock()
		defer func() {
			l.mu.Lock()
			l.inflight[p]--
			l.mu.Unlock()
		}()
		if !ruled {
			h.ServeHTTP(w, r)
			return
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		if fail {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "unavailable", "message": unavailableMessage}})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// rule slows (delay) or fails the reads of path; rule("", 0, false) ends it.
func (l *requestLog) rule(path string, delay time.Duration, fail bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rulePath, l.delay, l.fail = path, delay, fail
}

// count is the number of reads of path, with or without an explicit at.
func (l *requestLog) count(path string, at bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, h := range l.hits {
		if h.path == path && h.at == at {
			n++
		}
	}
	return n
}

func (l *requestLog) most(path string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.maxInflight[path]
}

// within waits up to d until the JavaScript expression is truthy and
// decodes its value.
func within[T any](b *browser, d time.Duration, expr string, opts ...chromedp.PollOption) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Poll[T](expr, append(opts, chromedp.WithPollingTimeout(d))...))
	if err != nil {
		b.t.Fatalf("waiting %s for %s: %v\nconsole: %v\nbody: %s", d, expr, err, b.console(), eval[string](b, "document.body.innerText"))
	}
	return v
}

// serverSees waits up to d until the server has had more than n reads of
// path (without at) from the browser, and returns how many.
func (f *fixture) serverSees(path string, n int, d time.Duration) int {
	f.t.Helper()
	deadline := time.Now().Add(d)
	for {
		if c := f.browser.count(path, false); c > n {
			return c
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("the server had %d reads of %s from the page within %s, want more than %d", f.browser.count(path, false), path, d, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// quiet is how long a test watches for reads that must not come: several
// intervals of the page's live reads (every=1 in these tests).
const quiet = 3500 * time.Millisecond

// liveSnapshot is one render of the values table, recorded in the page.
type liveSnapshot struct {
	Reads   int
	Updated string
	Text    string
	Cells   []cell
	Changed []string // features whose value cell is highlighted
	Titles  map[string]string
}

// recordRenders makes the page record a snapshot of every render of the
// values table in window.renders (a MutationObserver, installed by the
// test: the page has none of its own).
const recordRenders = `(() => {
	window.renders = [];
	new MutationObserver(() => {
		const u = document.getElementById('updated');
		const rows = [...document.querySelectorAll('#values tbody tr')];
		window.renders.push({Reads: Number(u.dataset.reads), Updated: u.dataset.updated, Text: u.textContent,
			Cells: rows.map(r => ({Feature: r.dataset.feature, Value: r.querySelector('td.value').dataset.value,
				Text: r.querySelector('td.value').textContent, Status: r.dataset.status, AsOf: (r.querySelector('.asof') || {}).title || ''})),
			Changed: rows.filter(r => r.querySelector('td.value').classList.contains('changed')).map(r => r.dataset.feature),
			Titles: Object.fromEntries(rows.filter(r => r.querySelector('td.value').title).map(r => [r.dataset.feature, r.querySelector('td.value').title]))});
	}).observe(document.querySelector('#values tbody'), {childList: true});
	return true;
})()`

const readCells = `[...document.querySelectorAll('#values tbody tr')].map(r => ({Feature: r.dataset.feature,
	Value: r.querySelector('td.value').dataset.value, Text: r.querySelector('td.value').textContent,
	Status: r.dataset.status, AsOf: (r.querySelector('.asof') || {}).title || ''}))`

// TestEntityLive checks that the entity view read at now follows the live
// values: events written into the emulator after the page opened show up
// without a reload, highlighted where they changed a value, with "updated"
// advancing; one read in flight at most (also against a server slower
// than the interval); errors shown while the reads go on at the interval;
// no reads while paused or hidden, and again on resume; and that a read of
// the past (at=) is read once. Event times are relative to the wall clock,
// inside every window; assertions wait for what the page and the server
// report (generous deadlines), and the waits for reads that must not come
// span several intervals.
func TestEntityLive(t *testing.T) {
	f := newFixture(t, false)
	b := newBrowser(t)
	ctx := context.Background()
	card := f.sets["card_activity"]
	const entity = "c_ui_live"
	path := "/v1/features/card_activity/" + entity
	// The entity's tiles, as the streaming pipeline keeps them: every write
	// rewrites the tiles it touches with all their events.
	tiles := servingtest.NewTiles(card)
	write := func(events ...schemas.Event) {
		t.Helper()
		tiles.Add(events...)
		if err := tiles.Write(ctx, f.table, schemas.FamilyStream); err != nil {
			t.Fatal(err)
		}
	}
	event := func(ago time.Duration, merchant string, amount float64, approved bool) schemas.Event {
		return servingtest.Event(card, entity, time.Now().Add(-ago), map[string]schemas.Value{
			"merchant": schemas.StringValue(merchant), "amount": schemas.Float64Value(amount), "approved": schemas.BoolValue(approved)})
	}
	write(event(20*time.Minute, "m_a", 10, true))

	start := time.Now()
	b.open(viewports[0], f.url+"/ui/entity.html?"+url.Values{"set": {"card_activity"}, "key": {entity}, "every": {"1"}}.Encode())
	b.waitFor("document.body.dataset.ready === 'true' && !document.getElementById('values-card').hidden && !document.getElementById('live-box').hidden")
	first := decodeCells(t, eval[[]cell](b, readCells))
	if got := first["txn_count_1h"].Value; got != 1.0 {
		t.Fatalf("txn_count_1h at first = %v, want the one event written", got)
	}
	if got := eval[string](b, `document.getElementById('live').getAttribute('aria-pressed')`); got != "true" {
		t.Errorf("Live toggle aria-pressed=%q at start, want true", got)
	}

	// Re-reads of values that did not move highlight nothing.
	unchanged := within[liveSnapshot](b, 20*time.Second, `Number(document.getElementById('updated').dataset.reads) >= 3 && ({
		Reads: Number(document.getElementById('updated').dataset.reads), Updated: document.getElementById('updated').dataset.updated,
		Text: document.getElementById('updated').textContent,
		Changed: [...document.querySelectorAll('#values td.changed')].map(c => c.closest('tr').dataset.feature)})`)
	if len(unchanged.Changed) != 0 {
		t.Errorf("after %d reads of unchanged values, highlighted: %v", unchanged.Reads, unchanged.Changed)
	}
	if !regexp.MustCompile(`^updated \d\d:\d\d:\d\dZ \(every 1 s\)$`).MatchString(unchanged.Text) {
		t.Errorf("indicator %q, want \"updated HH:MM:SSZ (every 1 s)\"", unchanged.Text)
	}

	// New events of the entity (inside every window, before the server's
	// now) reach the page without a reload.
	eval[bool](b, recordRenders)
	write(event(4*time.Second, "m_b", 25, false), event(2*time.Second, "m_c", 30, true))
	wrote := time.Now()
	type apiRead struct {
		Features map[string]featureValue `json:"features"`
	}
	var now apiRead
	f.get(path, "", &now)
	if now.Features["txn_count_1h"].Value != 3.0 {
		t.Fatalf("the API reads txn_count_1h = %v after the writes, want 3", now.Features["txn_count_1h"])
	}
	renders := within[[]liveSnapshot](b, 20*time.Second, `(() => {
		const i = window.renders.findIndex(r => (r.Cells.find(c => c.Feature === 'txn_count_1h') || {}).Value === '3');
		return i >= 0 && window.renders.slice(0, i + 1);
	})()`, chromedp.WithPollingInterval(50*time.Millisecond))
	moved := renders[len(renders)-1]
	b.elementShot("#values-card", "entity-live-desktop")
	t.Logf("the page showed the new values %s after the write, at its read %d (%d renders between)", time.Since(wrote).Round(time.Millisecond), moved.Reads, len(renders)-1)
	if diff := cmp.Diff(now.Features, decodeCells(t, moved.Cells)); diff != "" {
		t.Errorf("the live read after the writes (-API +page):\n%s", diff)
	}
	// Highlighted: exactly the features whose value moved.
	var want []string
	for _, c := range moved.Cells {
		if !cmp.Equal(first[c.Feature].Value, now.Features[c.Feature].Value) {
			want = append(want, c.Feature)
		}
	}
	if diff := cmp.Diff(want, moved.Changed); diff != "" {
		t.Errorf("highlighted values (-moved +highlighted):\n%s", diff)
	}
	if !strings.Contains(strings.Join(want, ","), "txn_count_1h") || len(want) == len(moved.Cells) {
		t.Errorf("the writes moved %v of %d features: want txn_count_1h among them and some unmoved (first_merchant_7d)", want, len(moved.Cells))
	}
	if got := moved.Titles["txn_count_1h"]; got != "was 1" {
		t.Errorf("txn_count_1h's title %q, want \"was 1\"", got)
	}
	before, _ := time.Parse(time.RFC3339Nano, unchanged.Updated)
	after, err := time.Parse(time.RFC3339Nano, moved.Updated)
	if err != nil || !after.After(before) || moved.Reads <= unchanged.Reads {
		t.Errorf("updated went from %q (read %d) to %q (read %d, %q), want later", unchanged.Updated, unchanged.Reads, moved.Updated, moved.Reads, moved.Text)
	}

	// A server slower than the interval: still one read in flight.
	seen := f.browser.count(path, false)
	f.browser.rule(path, 2500*time.Millisecond, false)
	f.serverSees(path, seen+2, 30*time.Second)
	f.browser.rule("", 0, false)
	if n := f.browser.most(path); n != 1 {
		t.Errorf("%d reads of %s were in flight at once, want 1", n, path)
	}

	// Errors: the API's message is shown, the values stay, and the reads
	// go on at the interval.
	f.browser.rule(path, 0, true)
	within[bool](b, 20*time.Second, `(document.querySelector('#values-error .error') || {}).textContent?.includes('503')`)
	if got := eval[string](b, `document.querySelector('#values-error .error').textContent`); !strings.Contains(got, unavailableMessage) {
		t.Errorf("a failed live read shows %q, want the API's message %q", got, unavailableMessage)
	}
	failFrom, failStart := f.browser.count(path, false), time.Now()
	failed := f.serverSees(path, failFrom+2, 30*time.Second)
	if n, most := failed-failFrom, int(time.Since(failStart)/time.Second)+2; n > most {
		t.Errorf("%d reads in %s of failing reads, want at most %d (one a second)", n, time.Since(failStart), most)
	}
	if cells := eval[[]cell](b, readCells); len(cells) != card.Outputs() || eval[bool](b, `document.getElementById('values-card').hidden`) {
		t.Errorf("during failing reads the page shows %d values, want the %d of the last good read", len(cells), card.Outputs())
	}
	f.browser.rule("", 0, false)
	within[bool](b, 20*time.Second, `document.getElementById('values-error').children.length === 0`)

	// Paused: no reads; resumed: reads again.
	b.do(chromedp.Click(chromedp.CSS("#live")))
	paused := within[map[string]string](b, 20*time.Second, `document.getElementById('live').getAttribute('aria-pressed') === 'false' &&
		document.getElementById('values-card').dataset.inflight === 'false' && ({reads: document.getElementById('updated').dataset.reads, text: document.getElementById('updated').textContent})`)
	n := f.browser.count(path, false)
	time.Sleep(quiet)
	if got := f.browser.count(path, false); got != n {
		t.Errorf("paused: %d reads in %s, want none", got-n, quiet)
	}
	if !strings.Contains(paused["text"], "paused") || eval[string](b, `document.getElementById('updated').dataset.reads`) != paused["reads"] {
		t.Errorf("paused: indicator %q (read %s)", paused["text"], paused["reads"])
	}
	b.do(chromedp.Click(chromedp.CSS("#live")))
	f.serverSees(path, n+1, 20*time.Second)
	within[bool](b, 20*time.Second, fmt.Sprintf(`Number(document.getElementById('updated').dataset.reads) > %s`, paused["reads"]))

	// A hidden tab reads nothing; visible again, it reads. (The test
	// overrides document.visibilityState, as headless Chromium's tab is
	// never hidden.)
	eval[bool](b, `(() => { Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});
		document.dispatchEvent(new Event('visibilitychange')); return true; })()`)
	within[bool](b, 20*time.Second, `document.getElementById('values-card').dataset.inflight === 'false'`)
	n = f.browser.count(path, false)
	time.Sleep(quiet)
	if got := f.browser.count(path, false); got != n {
		t.Errorf("hidden: %d reads in %s, want none", got-n, quiet)
	}
	if got := eval[string](b, `document.getElementById('updated').textContent`); !strings.Contains(got, "hidden") {
		t.Errorf("hidden: indicator %q", got)
	}
	eval[bool](b, `(() => { delete document.visibilityState; document.dispatchEvent(new Event('visibilitychange')); return true; })()`)
	f.serverSees(path, n+1, 20*time.Second)

	// Another entity looked up at now is followed instead; then an explicit
	// at in the form reads once and stops the reads.
	b.setValue("#key", f.card)
	b.do(chromedp.Click(chromedp.CSS("#lookup button")))
	cardPath := "/v1/features/card_activity/" + f.card
	b.waitFor(fmt.Sprintf(`document.getElementById('values-card').dataset.entity === %q`, f.card))
	left := f.browser.count(path, false)
	f.serverSees(cardPath, 1, 20*time.Second) // the lookup and a live read
	if got := f.browser.count(path, false); got > left {
		t.Errorf("%d reads of %s after %s was looked up", got-left, entity, f.card)
	}
	b.setValue("#at", f.at.Format(time.RFC3339))
	b.do(chromedp.Click(chromedp.CSS("#lookup button")))
	b.waitFor(`document.getElementById('live-box').hidden && new URLSearchParams(location.search).has('at')`)
	within[bool](b, 20*time.Second, `document.getElementById('values-card').dataset.inflight === 'false'`)
	n = f.browser.count(cardPath, false)
	time.Sleep(quiet)
	if got, at := f.browser.count(cardPath, false), f.browser.count(cardPath, true); got != n || at != 1 {
		t.Errorf("after a lookup at %s: %d reads at now, %d at it, want none and 1", f.at, got-n, at)
	}
	if n := f.browser.most(cardPath); n != 1 {
		t.Errorf("%d reads of %s were in flight at once, want 1", n, cardPath)
	}
	b.noConsoleErrors("entity live", "503")

	// A read of the past opened by its URL is read once.
	q := url.Values{"set": {"card_activity"}, "key": {entity}, "at": {time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)}, "every": {"1"}}
	b.open(viewports[0], f.url+"/ui/entity.html?"+q.Encode())
	b.waitFor("document.body.dataset.ready === 'true' && !document.getElementById('values-card').hidden")
	atReads, nowReads := f.browser.count(path, true), f.browser.count(path, false)
	time.Sleep(quiet)
	if got, now := f.browser.count(path, true), f.browser.count(path, false); got != atReads || now != nowReads || !eval[bool](b, `document.getElementById('live-box').hidden`) {
		t.Errorf("a read of the past: %d more reads at it, %d at now in %s, live box hidden=%v; want none, none, true",
			got-atReads, now-nowReads, quiet, eval[bool](b, `document.getElementById('live-box').hidden`))
	}

	// By default the page reads every 5 s (seen here at phone width).
	b.open(viewports[1], f.url+"/ui/entity.html?set=card_activity&key="+entity)
	b.waitFor("document.body.dataset.ready === 'true' && !document.getElementById('live-box').hidden")
	if got := eval[string](b, `document.getElementById('updated').textContent`); !strings.HasSuffix(got, "(every 5 s)") {
		t.Errorf("default interval: indicator %q, want every 5 s", got)
	}
	b.screenshot("entity-live-phone")
	b.noConsoleErrors("entity live")
	t.Logf("live test: %s in the browser", time.Since(start).Round(time.Millisecond))
}
