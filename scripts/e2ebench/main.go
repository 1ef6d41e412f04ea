// Command e2ebench measures Tandem's end-to-end freshness: the time from
// publishing an event to Pub/Sub until the serving API returns a value that
// includes it, with the streaming pipeline on prism, the in-process Bigtable
// emulator and Pub/Sub fake, and the real HTTP server on loopback.
//
// It publishes background events at --rate per second for --duration, and
// every --probe_every a probe event for a fresh entity, then polls
// GET /v1/features/<set>/<probe entity> until its count is 1. It prints
// p50/p90/p99/max of the probes' publish → visible latency.
//
//	go run ./scripts/e2ebench                 # 1,000 events/s for 60 s
//	go run ./scripts/e2ebench --rate 500 --duration 30s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/sample"
	"github.com/tandem-fp/tandem/scripts/localstack"
	"github.com/tandem-fp/tandem/serving"
)

func main() {
	def := flag.String("featureset", "schemas/card_activity.yaml", "feature set to stream")
	rate := flag.Float64("rate", 1000, "background events published per second")
	duration := flag.Duration("duration", 60*time.Second, "how long to publish")
	probeEvery := flag.Duration("probe_every", 50*time.Millisecond, "interval between probe events")
	poll := flag.Duration("poll", 5*time.Millisecond, "interval between polls of a probe's value")
	flag.Parse()
	beam.Init()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := run(*def, *rate, *duration, *probeEvery, *poll); err != nil {
		fmt.Fprintln(os.Stderr, "e2ebench:", err)
		os.Exit(1)
	}
}

func run(def string, rate float64, duration, probeEvery, poll time.Duration) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	set, err := schemas.Load(def)
	if err != nil {
		return err
	}
	count := ""
	for _, f := range set.Features {
		if f.Op == schemas.OpCount {
			count = f.Name
			break
		}
	}
	if count == "" {
		return fmt.Errorf("feature set %s has no count feature to probe", set.Name)
	}
	logf := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	b, err := localstack.StartBackends(ctx, []*schemas.FeatureSet{set}, localstack.BackendOptions{}, logf)
	if err != nil {
		return err
	}
	defer b.Close()
	st := b.StartStream(ctx, set, localstack.StreamOptions{DeadLetter: os.TempDir() + "/tandem-e2ebench-dead"})
	srv, err := b.NewServer(serving.Config{})
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	defer hs.Close()
	base := "http://" + ln.Addr().String()

	// Wait for the pipeline: publish a warm-up event and wait for its ack.
	logf("waiting for the streaming pipeline to start")
	pool := sample.Events(set, 1, max(int(rate*10), 1000), time.Now(), time.Now().Add(time.Hour))
	if err := b.Publish(ctx, set.Name, stamp(set, pool[0], time.Now())); err != nil {
		return err
	}
	if err := b.WaitAcked(ctx); err != nil {
		return err
	}
	logf("publishing %.0f events/s for %s with a probe every %s", rate, duration, probeEvery)

	var mu sync.Mutex
	var lat []time.Duration
	missed := 0
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	probe := time.NewTicker(probeEvery)
	defer probe.Stop()
	sent, next, probes := 0, 0, 0
	for time.Since(start) < duration {
		select {
		case <-tick.C:
			due := int(time.Since(start).Seconds()*rate) - sent
			msgs := make([][]byte, 0, due)
			for range due {
				msgs = append(msgs, stamp(set, pool[next%len(pool)], time.Now()))
				next++
			}
			if len(msgs) > 0 {
				go b.Publish(ctx, set.Name, msgs...)
				sent += len(msgs)
			}
		case <-probe.C:
			probes++
			key := fmt.Sprintf("probe_%d_%d", start.UnixNano(), probes)
			e := pool[probes%len(pool)]
			e.Key = key
			vals := append([]schemas.Value(nil), e.Values...)
			vals[set.KeyIndexes()[0]] = schemas.StringValue(key) // a single-key set (card_activity)
			e.Values = vals
			wg.Add(1)
			go func() {
				defer wg.Done()
				t0 := time.Now()
				if err := b.Publish(ctx, set.Name, stamp(set, e, t0)); err != nil {
					return
				}
				for time.Since(t0) < 10*time.Second {
					if v, ok := value(client, base, set.Name, key, count); ok && v == 1 {
						mu.Lock()
						lat = append(lat, time.Since(t0))
						mu.Unlock()
						return
					}
					time.Sleep(poll)
				}
				mu.Lock()
				missed++
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	if _, err := st.Stop(ctx); err != nil {
		logf("stop stream: %v", err)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	fmt.Printf("\nend-to-end freshness (publish → value visible through the HTTP API)\n")
	fmt.Printf("background rate %.0f events/s (published %d in %s, %.0f/s), %d probes, %d not visible within 10s\n",
		rate, sent, elapsed.Round(time.Millisecond), float64(sent)/elapsed.Seconds(), probes, missed)
	fmt.Printf("p50 %s  p90 %s  p99 %s  max %s   (target p99 ≤ 600ms)\n",
		q(0.50).Round(time.Millisecond), q(0.90).Round(time.Millisecond), q(0.99).Round(time.Millisecond), q(1).Round(time.Millisecond))
	return nil
}

// stamp returns e as JSON with its event time set to t.
func stamp(set *schemas.FeatureSet, e schemas.Event, t time.Time) []byte {
	vals := append([]schemas.Value(nil), e.Values...)
	vals[set.TimeIndex()] = schemas.TimestampValue(t)
	e.Values, e.Time = vals, t.UnixMicro()
	return set.AppendJSON(nil, e)
}

// value reads one feature of an entity through the API.
func value(c *http.Client, base, set, entity, feature string) (int64, bool) {
	resp, err := c.Get(base + "/v1/features/" + set + "/" + entity + "?features=" + feature)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	var out struct {
		Features map[string]struct {
			Value json.Number `json:"value"`
		} `json:"features"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		return 0, false
	}
	n, err := out.Features[feature].Value.Int64()
	return n, err == nil
}
