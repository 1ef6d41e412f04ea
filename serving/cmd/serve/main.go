// Command serve runs Tandem's serving API: an HTTP server that answers "the
// features of entity X at instant T" by reading the tiles that the batch and
// streaming pipelines wrote to Bigtable and merging them at read time (see
// package serving and serving/openapi.yaml).
//
// Inputs: feature-set definitions (--featureset, a YAML file or a directory
// of them, repeatable) and a Bigtable table (--bigtable_project,
// --bigtable_instance, --bigtable_table; BIGTABLE_EMULATOR_HOST is honoured;
// --emulator starts an in-process emulator with an empty table instead, to
// try the server alone). Output: the HTTP API on --addr.
//
// Flags:
//
//	--featureset PATH        feature-set YAML file or directory (repeatable, required)
//	--addr :8080             listen address
//	--bigtable_project, --bigtable_instance, --bigtable_table
//	--emulator               use an in-process Bigtable emulator
//	--api_keys FILE          require API keys (YAML/JSON, see package apikeys)
//	--max_entities 1000      entities per POST request
//	--stale_after 5m         lag behind `at` after which values are STALE, for sets with a stream source and no stale_after of their own
//	--request_timeout 2s     Bigtable deadline of one request (503 after it)
//	--meta_refresh 1s        how often the feature sets' metadata is re-read
//	--log_level info         debug, info, warn or error
//
// Example, alone on this machine:
//
//	go run ./serving/cmd/serve --featureset schemas --emulator
//	curl localhost:8080/v1/features/card_activity/c_1001
//
// It stops gracefully on SIGINT or SIGTERM, finishing requests in flight.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/serving"
	"github.com/tandem-fp/tandem/serving/apikeys"
)

// paths is a repeatable string flag.
type paths []string

func (p *paths) String() string     { return strings.Join(*p, ",") }
func (p *paths) Set(v string) error { *p = append(*p, v); return nil }

type options struct {
	featuresets    paths
	addr           string
	bt             bigtablestore.Config
	emulator       bool
	apiKeys        string
	maxEntities    int
	staleAfter     time.Duration
	requestTimeout time.Duration
	metaRefresh    time.Duration
	logLevel       slog.Level
}

func parseFlags(args []string) (options, error) {
	var o options
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	fl.Var(&o.featuresets, "featureset", "feature-set YAML file or directory of them (repeatable, required)")
	fl.StringVar(&o.addr, "addr", ":8080", "listen address")
	o.bt.RegisterFlags(fl)
	fl.BoolVar(&o.emulator, "emulator", false, "start an in-process Bigtable emulator with an empty table and use it")
	fl.StringVar(&o.apiKeys, "api_keys", "", "API key file (YAML or JSON); without it the API is open")
	fl.IntVar(&o.maxEntities, "max_entities", serving.DefaultMaxEntities, "entities one POST request may read")
	fl.DurationVar(&o.staleAfter, "stale_after", serving.DefaultStaleAfter, "values of a feature set with a stream source and no stale_after in its definition are STALE when its data is behind `at` by more than this")
	fl.DurationVar(&o.requestTimeout, "request_timeout", serving.DefaultRequestTimeout, "Bigtable deadline of one request; 503 after it")
	fl.DurationVar(&o.metaRefresh, "meta_refresh", serving.DefaultMetaRefresh, "how often the feature sets' metadata is re-read")
	fl.TextVar(&o.logLevel, "log_level", slog.LevelInfo, "log level: debug, info, warn or error")
	if err := fl.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fl.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fl.Args())
	case len(o.featuresets) == 0:
		return o, errors.New("give at least one --featureset")
	case o.maxEntities < 1:
		return o, fmt.Errorf("--max_entities %d must be positive", o.maxEntities)
	case o.staleAfter <= 0 || o.requestTimeout <= 0 || o.metaRefresh <= 0:
		return o, errors.New("--stale_after, --request_timeout and --meta_refresh must be positive")
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: o.logLevel}))
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log, nil); err != nil {
		if errors.Is(err, bigtablestore.ErrNoTable) {
			fmt.Fprintln(os.Stderr, "serve:", err) // one line that says what to run
		} else {
			log.Error("serve failed", "err", err)
		}
		stop()
		os.Exit(1)
	}
}

// run serves until ctx is done, then shuts down gracefully. When ready is
// not nil it receives the listening address.
func run(ctx context.Context, o options, log *slog.Logger, ready chan<- string) error {
	sets, err := schemas.LoadAll(o.featuresets...)
	if err != nil {
		return err
	}
	var keys *apikeys.Keys
	if o.apiKeys != "" {
		if keys, err = apikeys.Load(o.apiKeys); err != nil {
			return err
		}
	}
	if o.emulator {
		srv, cfg, err := bigtablestore.StartEmulator()
		if err != nil {
			return err
		}
		defer srv.Close()
		o.bt = cfg
		ac, err := cfg.NewAdminClient(ctx)
		if err != nil {
			return err
		}
		did, err := bigtablestore.EnsureTable(ctx, ac, cfg.Table, sets)
		_ = ac.Close() // admin client done; nothing buffered
		if err != nil {
			return err
		}
		log.Info("started in-process Bigtable emulator", "addr", srv.Addr, "setup", did)
	}
	// Without the table (or its families) the server cannot answer: say
	// so at once, in one line. A Bigtable that does not answer yet is only
	// logged; /readyz stays 503 until it does.
	checkTable := func(ctx context.Context) error { return bigtablestore.CheckTable(ctx, o.bt, sets) }
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err = checkTable(cctx)
	cancel()
	if errors.Is(err, bigtablestore.ErrNoTable) {
		return err
	} else if err != nil {
		log.Warn("cannot check the Bigtable table yet; /readyz answers 503 until Bigtable does", "err", err)
	}
	client, err := o.bt.NewClient(ctx)
	if err != nil {
		return err
	}
	defer client.Close()

	api, err := serving.New(serving.Config{
		Sets:           sets,
		Table:          client.Open(o.bt.Table),
		Keys:           keys,
		MaxEntities:    o.maxEntities,
		StaleAfter:     o.staleAfter,
		RequestTimeout: o.requestTimeout,
		MetaRefresh:    o.metaRefresh,
		CheckTable:     checkTable,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	defer api.Close()

	lis, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.addr, err)
	}
	hs := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// The request deadline ends Bigtable reads first, so that the 503
		// is written before the connection's write deadline.
		WriteTimeout:   o.requestTimeout + 5*time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	names := make([]string, len(sets))
	for i, s := range sets {
		names[i] = s.Name
	}
	log.Info("serving", "addr", lis.Addr().String(), "featuresets", names, "bigtable", o.bt.String(),
		"api_keys", keys != nil, "stale_after", o.staleAfter.String(), "request_timeout", o.requestTimeout.String())
	if ready != nil {
		ready <- lis.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), o.requestTimeout+5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}
