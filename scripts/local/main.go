// Command local runs the whole Tandem platform on this machine, with no
// cloud account: the in-process Bigtable emulator and Pub/Sub fake (or
// Google's emulators, when BIGTABLE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST are
// set), the table, a few days of generated history for every feature set
// through the batch pipeline, the streaming pipelines on a live stream of
// events, and the serving API on --addr. It prints example requests and runs
// until Ctrl-C (or SIGTERM), then drains the pipelines and stops. It also
// writes a spine of labelled examples for each feature service and prints
// the training pipeline's command that computes their features from the
// generated history.
//
//	go run ./scripts/local                      # schemas/*.yaml, 127.0.0.1:8080
//	go run ./scripts/local --rate 200 --addr 127.0.0.1:8081
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/scripts/localstack"
)

type stringList []string

func (l *stringList) String() string     { return fmt.Sprint(*l) }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	// Beam's packages register their runner flags at init (the binary also
	// serves as a prism worker); --help lists only this command's own.
	beamFlags := map[string]bool{}
	flag.VisitAll(func(f *flag.Flag) { beamFlags[f.Name] = true })
	var defs stringList
	flag.Var(&defs, "featureset", "feature-set YAML file or directory (repeatable; default: schemas)")
	addr := flag.String("addr", "127.0.0.1:8080", "listen address of the serving API (open, without API keys: keep it on loopback)")
	metricsAddr := flag.String("metrics_addr", "127.0.0.1:9090", "listen address of /metrics (empty: none)")
	history := flag.Duration("history", 72*time.Hour, "how far back the generated history goes")
	historyEvents := flag.Int("history_events", 30000, "generated history events per feature set")
	rate := flag.Float64("rate", 50, "live events published per second and feature set")
	seed := flag.Uint64("seed", 1, "seed of the generated data")
	staleAfter := flag.Duration("stale_after", 2*time.Minute, "the serving API marks values STALE when the real-time side is behind by more than this")
	var bt bigtablestore.Config
	bt.RegisterFlags(flag.CommandLine)
	dir := flag.String("dir", "", "directory of the history files, training spines and outputs, kept on exit (default: a temp dir, removed on exit)")
	verbose := flag.Bool("verbose", false, "show the pipelines' and runner's logs")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./scripts/local [flags]\n\nRuns the whole Tandem platform locally (see README.md). Flags:\n")
		flag.VisitAll(func(f *flag.Flag) {
			if beamFlags[f.Name] {
				return
			}
			name, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(flag.CommandLine.Output(), "  --%s %s\n    \t%s (default %q)\n", f.Name, name, usage, f.DefValue)
		})
	}
	flag.Parse()
	beam.Init()
	if len(defs) == 0 {
		defs = stringList{"schemas"}
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := localstack.RunDemo(ctx, localstack.DemoConfig{
		Definitions:   defs,
		Addr:          *addr,
		MetricsAddr:   *metricsAddr,
		History:       *history,
		HistoryEvents: *historyEvents,
		Rate:          *rate,
		Seed:          *seed,
		StaleAfter:    *staleAfter,
		Bigtable:      bt,
		Dir:           *dir,
	}, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "local:", err)
		os.Exit(1)
	}
}
