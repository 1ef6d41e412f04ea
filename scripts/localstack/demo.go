package localstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/tandem-fp/tandem/pipelines/batch/batchpipe"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/schemas/sample"
	"github.com/tandem-fp/tandem/serving"
	"github.com/tandem-fp/tandem/serving/client"
	"github.com/tandem-fp/tandem/serving/ui"
)

// DemoConfig configures RunDemo.
type DemoConfig struct {
	// Definitions are feature-set files or directories.
	Definitions []string
	// Addr is the serving API's listen address, and MetricsAddr that of
	// its admin handler (/metrics; none when empty).
	Addr        string
	MetricsAddr string
	// History is how far back the generated history goes, and
	// HistoryEvents how many events it has per feature set.
	History       time.Duration
	HistoryEvents int
	// Rate is the live events published per second and feature set.
	Rate float64
	// Seed makes the generated data reproducible.
	Seed uint64
	// StaleAfter is the serving API's staleness bound.
	StaleAfter time.Duration
	// Bigtable names the table (defaults: bigtablestore.Default*).
	Bigtable bigtablestore.Config
	// Dir holds the history files, the training spines and outputs, and
	// dead letters (default: a temp dir, removed when the demo stops).
	Dir string
	// Training, when set, is called with the training commands the demo
	// printed, once they can run.
	Training func([]TrainingCommand)
}

// RunDemo runs the whole platform until ctx is done, saying what it does on
// out: backends and table, history through the batch pipeline up to the
// batch watermark, the streaming pipelines, the events between the
// watermark and now, a live stream of events, and the serving API with
// example requests. When ctx is done it drains the pipelines and stops.
func RunDemo(ctx context.Context, cfg DemoConfig, out io.Writer) error {
	logf := func(format string, args ...any) {
		fmt.Fprintf(out, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	sets, err := schemas.LoadAll(cfg.Definitions...)
	if err != nil {
		return err
	}
	for _, s := range sets {
		logf("loaded feature set %s (%d features, entity %s) from %s", s.Name, len(s.Features), s.Entity.Name, s.File)
	}
	services, err := schemas.LoadServicesBeside(sets, cfg.Definitions...)
	if err != nil {
		return err
	}
	for _, s := range services {
		logf("loaded feature service %s (%d feature sets) from %s", s.Name, len(s.Entries), s.File)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("serving API: %w", err)
	}
	defer ln.Close()

	kept := cfg.Dir != ""
	if kept {
		if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
			return err
		}
	}
	if cfg.Dir == "" {
		if cfg.Dir, err = os.MkdirTemp("", "tandem-local-"); err != nil {
			return err
		}
		defer os.RemoveAll(cfg.Dir)
	}
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	b, err := StartBackends(runCtx, sets, BackendOptions{Bigtable: cfg.Bigtable}, logf)
	if err != nil {
		return err
	}
	defer b.Close()

	now := time.Now().UTC()
	history := map[string][]schemas.Event{}
	for i, set := range sets {
		asOf := batchpipe.AlignAsOf(set, now)
		// History ends at the batch watermark; the live stream starts now.
		// (Replaying the events between the watermark and now through
		// Pub/Sub would make most of them late: Pub/Sub and its fake deliver
		// out of order, and that span is hours, far beyond the allowed
		// lateness. In production the streaming pipeline is running while
		// those events happen.)
		events := sample.Events(set, cfg.Seed+uint64(i), cfg.HistoryEvents, now.Add(-cfg.History), asOf)
		logf("batch %s: %d generated events from %s to %s; running the batch pipeline on prism up to the watermark %s",
			set.Name, len(events), now.Add(-cfg.History).Format(time.RFC3339), asOf.Format(time.RFC3339), asOf.Format(time.RFC3339))
		history[set.Name] = events
		res, err := b.RunBatch(ctx, set, events, asOf, cfg.Dir)
		if err != nil {
			return err
		}
		logf("batch %s: done in %s: %d events, %d tiles in %d rows, watermark committed: %v",
			set.Name, res.Elapsed.Round(time.Millisecond), res.Events, res.Cells, res.Rows, res.Committed)
		if ctx.Err() != nil {
			return nil
		}
	}

	var streams []*Stream
	for _, set := range sets {
		if set.Sources.Stream.Subscription == "" {
			continue
		}
		streams = append(streams, b.StartStream(runCtx, set, StreamOptions{DeadLetter: fmt.Sprintf("%s/dead_letter/%s-stream", cfg.Dir, set.Name)}))
		logf("stream %s: streaming pipeline started on prism, reading %s", set.Name, set.Sources.Stream.Subscription)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, st := range streams {
			logf("stream %s: draining", st.Set)
			res, err := st.Stop(stopCtx)
			if err != nil {
				logf("stream %s: %v", st.Set, err)
				continue
			}
			logf("stream %s: stopped; counters %v", st.Set, res.Counters)
		}
	}()
	srv, err := b.NewServer(serving.Config{StaleAfter: cfg.StaleAfter, Services: services})
	if err != nil {
		return err
	}
	defer srv.Close()
	hs := srv.HTTPServer()
	hs.Handler = ui.Handler(hs.Handler) // the web page under /ui/
	serveErr := make(chan error, 2)
	go func() { serveErr <- hs.Serve(srv.LimitListener(ln)) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	metricsBase := ""
	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		ms := &http.Server{Handler: srv.AdminHandler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { serveErr <- ms.Serve(mln) }()
		defer ms.Close()
		metricsBase = "http://" + displayAddr(mln.Addr())
	}

	live := newLiveFeed(sets, cfg.Seed+1000, cfg.Rate)
	base := "http://" + displayAddr(ln.Addr())
	logf("serving API listening on %s", base)
	api, err := client.New(base)
	if err != nil {
		return err
	}
	// showValues prints, through the API, the values of the entity each
	// feature set's curl example asks for.
	showValues := func() {
		for _, set := range sets {
			e, ok := live.hottest(set.Name)
			if !ok {
				continue
			}
			get := api.Get
			if set.CompositeKey() {
				get = func(ctx context.Context, name, e string, f []string, at time.Time) (*client.EntityFeatures, error) {
					return api.GetKey(ctx, name, keyRow(set, e), f, at)
				}
			}
			label := e
			if set.CompositeKey() {
				label = keyQuery(set, e)
			}
			res, err := get(ctx, set.Name, e, nil, time.Time{})
			if err != nil {
				logf("values of %s %s: %v", set.Name, label, err)
				continue
			}
			logf("values of %s %s: %s", set.Name, label, formatValues(set, res))
		}
	}
	showValues()
	fmt.Fprintf(out, "\nOpen the page: %s%s (feature sets, freshness, an entity's values and their history)\n", base, ui.Prefix)
	fmt.Fprintf(out, "\nTry (values change as live events arrive, %g events/s per feature set):\n\n", cfg.Rate)
	fmt.Fprintf(out, "  curl -s %s/v1/featuresets\n", base)
	for _, set := range sets {
		e, ok := live.hottest(set.Name)
		switch {
		case !ok:
		case set.CompositeKey():
			fmt.Fprintf(out, "  curl -s '%s/v1/features/%s?%s'\n", base, set.Name, keyQuery(set, e))
			body := fmt.Sprintf(`{"entities": [%s], "features": [%q]}`, keyObject(set, e), set.Features[0].Name)
			fmt.Fprintf(out, "  curl -s -X POST %s/v1/features/%s -d '%s'\n", base, set.Name, body)
		default:
			fmt.Fprintf(out, "  curl -s %s/v1/features/%s/%s\n", base, set.Name, url.PathEscape(e))
		}
	}
	if len(sets) > 0 {
		set := sets[0]
		ents := live.top(set.Name, 3)
		if len(ents) > 0 {
			body := fmt.Sprintf(`{"entities": [%s], "features": [%q]}`, quoteList(ents), set.Features[0].Name)
			fmt.Fprintf(out, "  curl -s -X POST %s/v1/features/%s -d '%s'\n", base, set.Name, body)
		}
	}
	if metricsBase != "" {
		fmt.Fprintf(out, "  curl -s %s/metrics | grep tandem_\n", metricsBase)
	}
	showServices(ctx, out, logf, api, base, services, live)
	cmds, err := showTraining(out, cfg.Dir, services, history, cfg.Seed, kept)
	if err != nil {
		return err
	}
	if cfg.Training != nil {
		cfg.Training(cmds)
	}
	fmt.Fprintf(out, "\nCtrl-C drains the pipelines and stops.\n\n")

	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	report := time.NewTicker(15 * time.Second)
	defer report.Stop()
	published := 0
	for {
		select {
		case <-ctx.Done():
			logf("stopping: published %d live events", published)
			return nil
		case err := <-serveErr:
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("serving API: %w", err)
		case <-report.C:
			logf("live: %d events published so far", published)
			showValues()
		case <-tick.C:
			for name, msgs := range live.next(time.Now()) {
				if err := b.Publish(ctx, name, msgs...); err != nil {
					if ctx.Err() != nil {
						continue
					}
					return err
				}
				published += len(msgs)
			}
		}
	}
}

// liveFeed hands out pre-generated events of each feature set at a fixed
// rate, stamped with the wall-clock time they are published at.
type liveFeed struct {
	sets   []*schemas.FeatureSet
	pool   map[string][]schemas.Event
	next_  map[string]int
	rate   float64
	credit float64
	last   time.Time
}

func newLiveFeed(sets []*schemas.FeatureSet, seed uint64, rate float64) *liveFeed {
	lf := &liveFeed{sets: sets, pool: map[string][]schemas.Event{}, next_: map[string]int{}, rate: rate, last: time.Now()}
	now := time.Now()
	for i, s := range sets {
		n := max(int(rate*600), 100)
		lf.pool[s.Name] = sample.Events(s, seed+uint64(i), n, now, now.Add(time.Hour))
	}
	return lf
}

// next returns the messages due since the last call, per feature set.
func (lf *liveFeed) next(now time.Time) map[string][][]byte {
	lf.credit += now.Sub(lf.last).Seconds() * lf.rate
	lf.last = now
	n := int(lf.credit)
	lf.credit -= float64(n)
	out := map[string][][]byte{}
	for _, s := range lf.sets {
		pool := lf.pool[s.Name]
		for range n {
			i := lf.next_[s.Name] % len(pool)
			lf.next_[s.Name]++
			e := pool[i]
			vals := append([]schemas.Value(nil), e.Values...)
			vals[s.TimeIndex()] = schemas.TimestampValue(now)
			e.Values, e.Time = vals, now.UnixMicro()
			out[s.Name] = append(out[s.Name], s.AppendJSON(nil, e))
		}
	}
	return out
}

// top returns the n entities with the most events in the live pool of set.
func (lf *liveFeed) top(set string, n int) []string {
	counts := map[string]int{}
	for _, e := range lf.pool[set] {
		counts[e.Key]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if counts[keys[i]] != counts[keys[j]] {
			return counts[keys[i]] > counts[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys[:min(n, len(keys))]
}

func (lf *liveFeed) hottest(set string) (string, bool) {
	t := lf.top(set, 1)
	if len(t) == 0 {
		return "", false
	}
	return t[0], true
}

// keyQuery is the query string of a composite key: user_id=7&merchant=Subway.
func keyQuery(set *schemas.FeatureSet, key string) string {
	parts, _ := schemas.SplitEntityKey(key, len(set.Entity.Keys)) // generated keys
	var q []string
	for i, k := range set.Entity.Keys {
		q = append(q, k+"="+url.QueryEscape(parts[i]))
	}
	return strings.Join(q, "&")
}

// keyObject is a composite key as a JSON object: {"user_id": 7, "merchant": "Subway"}.
func keyObject(set *schemas.FeatureSet, key string) string {
	parts, _ := schemas.SplitEntityKey(key, len(set.Entity.Keys)) // generated keys
	var kv []string
	for i, c := range set.KeyColumns() {
		v := fmt.Sprintf("%q", parts[i])
		if c.Type == schemas.Int64 {
			v = parts[i]
		}
		kv = append(kv, fmt.Sprintf("%q: %s", c.Name, v))
	}
	return "{" + strings.Join(kv, ", ") + "}"
}

func quoteList(ss []string) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%q", s)
	}
	return out
}

// displayAddr turns a listen address into one a curl on this machine can use.
func displayAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// formatValues renders an entity's features as name=value pairs in the
// definition's order, with the status where it is not PRESENT.
func formatValues(set *schemas.FeatureSet, res *client.EntityFeatures) string {
	var b strings.Builder
	for i := range set.Outputs() {
		name := set.OutputName(i)
		v, ok := res.Features[name]
		if !ok {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		switch v.Value.(type) {
		case []any, map[string]any:
			// Lists and objects as the API's JSON, not Go's map syntax.
			j, _ := json.Marshal(v.Value)
			fmt.Fprintf(&b, "%s=%s", name, j)
		default:
			fmt.Fprintf(&b, "%s=%v", name, v.Value)
		}
		if v.Status != client.Present {
			fmt.Fprintf(&b, "(%s)", v.Status)
		}
	}
	return b.String()
}
