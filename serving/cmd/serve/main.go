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
//	--featureset PATH          feature-set YAML file or directory (repeatable, required)
//	--services PATH            feature-service YAML file or directory (repeatable; default:
//	                           the services/ directory of each --featureset directory)
//	--addr 127.0.0.1:8080      listen address of the API
//	--metrics_addr 127.0.0.1:9090  listen address of /metrics, /healthz, /readyz (empty: none)
//	--bigtable_project, --bigtable_instance, --bigtable_table
//	--emulator                 use an in-process Bigtable emulator
//	--api_keys FILE            require API keys (YAML/JSON, see package apikeys)
//	--insecure_no_auth         allow serving without --api_keys on a non-loopback address
//	--tls_cert, --tls_key      serve HTTPS with this certificate and key (PEM)
//	--expose_sources           show the definitions' sources in /v1/featuresets
//	--ui=true                  serve the web page under /ui/ (package serving/ui)
//	--max_entities 1000        entities per POST request
//	--max_connections 1024     open connections (idle ones are closed first; then 503)
//	--max_concurrent 64        feature requests in flight (then 503 after --queue_timeout)
//	--max_in_flight_bytes 4MiB request body bytes in flight
//	--queue_timeout 100ms      how long a request waits for room
//	--max_response_bytes 8MiB  one response's size (400 above it)
//	--rate_limit 1000          requests per second per API key (0: none), --rate_burst 2000
//	--access_log_sample 0.01   fraction of requests in the access log (refused ones always, bounded)
//	--stale_after 5m           lag behind `at` after which values are STALE, for sets with a stream source and no stale_after of their own
//	--request_timeout 2s       Bigtable deadline of one request (503 after it)
//	--meta_refresh 1s          how often the feature sets' metadata is re-read
//	--log_level info           debug, info, warn or error
//
// Safe by default: it listens on loopback; without --api_keys every feature
// set is open to whoever reaches the address, so a non-loopback address
// then needs --insecure_no_auth. Keys travel in the Authorization header:
// on a non-loopback address give --tls_cert and --tls_key, or put a
// TLS-terminating proxy in front (it warns otherwise).
//
// `serve keygen --api_keys FILE --name NAME --featuresets a,b` generates a
// key, appends its SHA-256 entry to FILE (created with mode 0600) and
// prints the key, which is stored nowhere else.
//
// Example, alone on this machine:
//
//	go run ./serving/cmd/serve --featureset schemas --emulator
//	curl localhost:8080/v1/features/card_activity/c_1001
//	curl 'localhost:8080/v1/services/fraud_model?card_id=c_1001&user_id=100001'
//	curl localhost:9090/metrics
//
// It stops gracefully on SIGINT or SIGTERM, finishing requests in flight.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
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
	"github.com/tandem-fp/tandem/serving/ui"
)

// paths is a repeatable string flag.
type paths []string

func (p *paths) String() string     { return strings.Join(*p, ",") }
func (p *paths) Set(v string) error { *p = append(*p, v); return nil }

type options struct {
	featuresets    paths
	services       paths
	addr           string
	metricsAddr    string
	bt             bigtablestore.Config
	emulator       bool
	apiKeys        string
	insecureNoAuth bool
	tlsCert        string
	tlsKey         string
	exposeSources  bool
	ui             bool
	maxEntities    int
	maxConns       int
	maxConcurrent  int
	maxInFlight    int64
	queueTimeout   time.Duration
	maxResponse    int
	rateLimit      float64
	rateBurst      int
	logSample      float64
	staleAfter     time.Duration
	requestTimeout time.Duration
	metaRefresh    time.Duration
	logLevel       slog.Level
}

func parseFlags(args []string) (options, error) {
	var o options
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	fl.Var(&o.featuresets, "featureset", "feature-set YAML file or directory of them (repeatable, required)")
	fl.Var(&o.services, "services", "feature-service YAML file or directory of them (repeatable; default: the services/ directory of each --featureset directory)")
	fl.StringVar(&o.addr, "addr", "127.0.0.1:8080", "listen address of the API")
	fl.StringVar(&o.metricsAddr, "metrics_addr", "127.0.0.1:9090", "listen address of /metrics, /healthz and /readyz, without authentication (empty: none)")
	o.bt.RegisterFlags(fl)
	fl.BoolVar(&o.emulator, "emulator", false, "start an in-process Bigtable emulator with an empty table and use it")
	fl.StringVar(&o.apiKeys, "api_keys", "", "API key file (YAML or JSON); without it the API is open, which only a loopback --addr allows unless --insecure_no_auth")
	fl.BoolVar(&o.insecureNoAuth, "insecure_no_auth", false, "serve without --api_keys on a non-loopback address: every feature set open to anyone who reaches it")
	fl.StringVar(&o.tlsCert, "tls_cert", "", "TLS certificate file (PEM); with --tls_key the API speaks HTTPS")
	fl.StringVar(&o.tlsKey, "tls_key", "", "TLS private key file (PEM)")
	fl.BoolVar(&o.exposeSources, "expose_sources", false, "show the definitions' sources (tables, queries, file paths, subscriptions) in /v1/featuresets")
	fl.BoolVar(&o.ui, "ui", true, "serve the web page under /ui/ (it reads the same API, with the same API keys)")
	fl.IntVar(&o.maxEntities, "max_entities", serving.DefaultMaxEntities, "entities one POST request may read")
	fl.IntVar(&o.maxConns, "max_connections", serving.DefaultMaxConnections, "open connections; beyond it idle ones are closed, then new ones get 503")
	fl.IntVar(&o.maxConcurrent, "max_concurrent", serving.DefaultMaxConcurrent, "feature requests served at once; more wait --queue_timeout, then 503")
	fl.Int64Var(&o.maxInFlight, "max_in_flight_bytes", serving.DefaultMaxInFlight, "request body bytes (by Content-Length) of the requests served at once")
	fl.DurationVar(&o.queueTimeout, "queue_timeout", serving.DefaultQueueTimeout, "how long a request waits for room before 503")
	fl.IntVar(&o.maxResponse, "max_response_bytes", serving.DefaultMaxResponse, "largest response body (400 response_too_large above it)")
	fl.Float64Var(&o.rateLimit, "rate_limit", serving.DefaultRateLimit, "requests per second per API key (429 above it; 0: no limit)")
	fl.IntVar(&o.rateBurst, "rate_burst", serving.DefaultRateBurst, "burst of --rate_limit")
	fl.Float64Var(&o.logSample, "access_log_sample", serving.DefaultAccessLogSample, "fraction of requests in the access log, 0 to 1 (refused requests are logged regardless, at a bounded rate)")
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
	case o.maxConns < 1 || o.maxConcurrent < 1 || o.maxInFlight < 1 || o.queueTimeout <= 0 || o.maxResponse < 1 || o.rateBurst < 1:
		return o, errors.New("--max_connections, --max_concurrent, --max_in_flight_bytes, --queue_timeout, --max_response_bytes and --rate_burst must be positive")
	case o.rateLimit < 0:
		return o, errors.New("--rate_limit must not be negative (0: no limit)")
	case o.logSample < 0 || o.logSample > 1:
		return o, fmt.Errorf("--access_log_sample %g must be between 0 and 1", o.logSample)
	case (o.tlsCert == "") != (o.tlsKey == ""):
		return o, errors.New("give both --tls_cert and --tls_key, or neither")
	}
	return o, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "keygen" {
		if err := keygen(os.Args[2:], os.Stdout); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				os.Exit(0)
			}
			fmt.Fprintln(os.Stderr, "serve keygen:", err)
			os.Exit(2)
		}
		return
	}
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

// listening are the addresses run listens on (metrics "" when none).
type listening struct{ api, metrics string }

// run serves until ctx is done, then shuts down gracefully. When ready is
// not nil it receives the listening addresses.
func run(ctx context.Context, o options, log *slog.Logger, ready chan<- listening) error {
	sets, err := schemas.LoadAll(o.featuresets...)
	if err != nil {
		return err
	}
	services, err := loadServices(o, sets)
	if err != nil {
		return err
	}
	var keys *apikeys.Keys
	if o.apiKeys != "" {
		if keys, err = apikeys.Load(o.apiKeys, log); err != nil {
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

	var tlsConfig *tls.Config
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return fmt.Errorf("--tls_cert, --tls_key: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	lis, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.addr, err)
	}
	defer lis.Close()
	// Judge the address actually bound: ":8080" and "0.0.0.0:8080" are every
	// interface, "localhost:8080" may be either.
	if !isLoopback(lis.Addr()) {
		switch {
		case keys == nil && !o.insecureNoAuth:
			return fmt.Errorf("refusing to serve every feature set without API keys on %s, which is not a loopback address: give --api_keys (see `serve keygen`), listen on 127.0.0.1, or pass --insecure_no_auth", lis.Addr())
		case keys == nil:
			log.Warn("serving without API keys on a non-loopback address (--insecure_no_auth): every feature set is open to anyone who reaches it", "addr", lis.Addr().String())
		case tlsConfig == nil:
			log.Warn("API keys travel in clear text on a non-loopback address: give --tls_cert and --tls_key, or serve behind a TLS-terminating proxy", "addr", lis.Addr().String())
		}
	}
	rateLimit := o.rateLimit
	if rateLimit == 0 {
		rateLimit = -1 // Config's "no limit"
	}
	logSample := o.logSample
	if logSample == 0 {
		logSample = -1 // Config's "none"
	}
	api, err := serving.New(serving.Config{
		Sets:             sets,
		Services:         services,
		Table:            client.Open(o.bt.Table),
		Keys:             keys,
		MaxEntities:      o.maxEntities,
		StaleAfter:       o.staleAfter,
		RequestTimeout:   o.requestTimeout,
		MetaRefresh:      o.metaRefresh,
		ExposeSources:    o.exposeSources,
		MaxConnections:   o.maxConns,
		MaxConcurrent:    o.maxConcurrent,
		MaxInFlightBytes: o.maxInFlight,
		QueueTimeout:     o.queueTimeout,
		MaxResponseBytes: o.maxResponse,
		RateLimit:        rateLimit,
		RateBurst:        o.rateBurst,
		AccessLogSample:  logSample,
		CheckTable:       checkTable,
		Logger:           log,
	})
	if err != nil {
		return err
	}
	defer api.Close()

	hs := api.HTTPServer()
	hs.TLSConfig = tlsConfig
	if o.ui {
		hs.Handler = ui.Handler(hs.Handler)
	}
	var admin *http.Server
	var adminLis net.Listener
	if o.metricsAddr != "" {
		if adminLis, err = net.Listen("tcp", o.metricsAddr); err != nil {
			return fmt.Errorf("listen on --metrics_addr %s: %w", o.metricsAddr, err)
		}
		if !isLoopback(adminLis.Addr()) {
			log.Warn("/metrics is served without authentication on a non-loopback address; it names every feature set", "metrics_addr", adminLis.Addr().String())
		}
		admin = &http.Server{Handler: api.AdminHandler(), ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second,
			IdleTimeout: 2 * time.Minute, MaxHeaderBytes: serving.MaxHeaderBytes, ErrorLog: hs.ErrorLog}
	}
	names := make([]string, len(sets))
	for i, s := range sets {
		names[i] = s.Name
	}
	metricsAt := ""
	if adminLis != nil {
		metricsAt = adminLis.Addr().String()
	}
	log.Info("serving", "addr", lis.Addr().String(), "tls", tlsConfig != nil, "metrics_addr", metricsAt, "featuresets", names, "services", serviceNames(services), "bigtable", o.bt.String(),
		"api_keys", keys != nil, "ui", o.ui, "stale_after", o.staleAfter.String(), "request_timeout", o.requestTimeout.String())
	if ready != nil {
		ready <- listening{api: lis.Addr().String(), metrics: metricsAt}
	}
	errc := make(chan error, 2)
	limited := api.LimitListener(lis)
	go func() {
		if tlsConfig != nil {
			errc <- hs.ServeTLS(limited, "", "")
		} else {
			errc <- hs.Serve(limited)
		}
	}()
	if admin != nil {
		go func() { errc <- admin.Serve(adminLis) }()
	}
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
	if admin != nil {
		if err := admin.Shutdown(sctx); err != nil {
			return fmt.Errorf("shutdown of --metrics_addr: %w", err)
		}
	}
	for range 1 + btoi(admin != nil) {
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
	}
	log.Info("stopped")
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// isLoopback reports whether a is a loopback TCP address (127.0.0.0/8,
// ::1); the unspecified address (every interface) is not.
func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// keygen is `serve keygen`: it generates an API key, appends its sha256
// entry to the key file and prints the key on out.
func keygen(args []string, out io.Writer) error {
	fl := flag.NewFlagSet("serve keygen", flag.ContinueOnError)
	file := fl.String("api_keys", "", "key file to append the new key's sha256 entry to (created with mode 0600 if missing; required)")
	name := fl.String("name", "", "the key's name, which logs show instead of the key (required)")
	sets := fl.String("featuresets", "", `comma-separated feature sets the key may read, or "*" for all (required)`)
	if err := fl.Parse(args); err != nil {
		return err
	}
	var list []string
	for s := range strings.SplitSeq(*sets, ",") {
		if s = strings.TrimSpace(s); s != "" {
			list = append(list, s)
		}
	}
	switch {
	case fl.NArg() > 0:
		return fmt.Errorf("unexpected arguments %q", fl.Args())
	case *file == "" || *name == "" || len(list) == 0:
		return errors.New("give --api_keys FILE, --name NAME and --featuresets a,b (or '*')")
	}
	key, err := apikeys.AppendNew(*file, *name, list)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, key)
	return err
}
