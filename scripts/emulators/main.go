// Command emulators hosts the in-process Pub/Sub fake (pstest) and Bigtable
// emulator (bttest) on fixed loopback ports, with the topics, subscriptions
// and table of the given feature sets, until SIGTERM or SIGINT. Pipelines in
// other processes reach them through PUBSUB_EMULATOR_HOST and
// BIGTABLE_EMULATOR_HOST, so that a pipeline can be killed and restarted
// while the emulated state lives on (the streaming kill test uses it; it
// needs nothing installed, unlike Google's emulators).
//
//	go run ./scripts/emulators --featureset schemas/card_activity.yaml \
//	    --pubsub_addr 127.0.0.1:8085 --bigtable_addr 127.0.0.1:8086
//
// It prints one line "READY pubsub=<addr> bigtable=<addr>" when serving.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tandem-fp/tandem/pipelines/streaming/localstack"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
)

func main() {
	sets := flag.String("featureset", "", "comma-separated feature-set YAML files whose subscriptions and table to create")
	psAddr := flag.String("pubsub_addr", "127.0.0.1:8085", "Pub/Sub fake address")
	btAddr := flag.String("bigtable_addr", "127.0.0.1:8086", "Bigtable emulator address")
	ackDeadline := flag.Duration("ack_deadline", 10*time.Second, "ack deadline of the subscriptions")
	rejectExpired := flag.Bool("reject_expired_cells", false, "reject a write of a cell older than its family's max-age GC (which the emulator would delete at once) instead of only logging it; tests set it")
	flag.Parse()
	o := localstack.Options{PubSubAddr: *psAddr, BigtableAddr: *btAddr, AckDeadline: *ackDeadline,
		BigtableOptions: []bigtablestore.EmulatorOption{bigtablestore.RejectExpiredCells(*rejectExpired)}}
	if err := run(*sets, o); err != nil {
		fmt.Fprintln(os.Stderr, "emulators:", err)
		os.Exit(1)
	}
}

func run(paths string, o localstack.Options) error {
	var sets []*schemas.FeatureSet
	if paths != "" {
		var err error
		if sets, err = schemas.LoadAll(strings.Split(paths, ",")...); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	st, err := localstack.Start(ctx, o, sets...)
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Printf("READY pubsub=%s bigtable=%s\n", st.PubSub.Addr, st.Bigtable.Addr)
	<-ctx.Done()
	return nil
}
