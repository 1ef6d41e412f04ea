// Package localstack runs what the streaming pipeline needs locally with no
// cloud at all: the in-process Pub/Sub fake (pstest) with a topic and
// subscription per feature set, and the in-process Bigtable emulator
// (bttest) with Tandem's table; or, on request, Google's emulators named by
// BIGTABLE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST. The streaming command's
// --emulator, the tests, the benchmark, the emulator host used by the kill
// test (scripts/emulators) and the whole local platform (scripts/localstack)
// start it.
package localstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"cloud.google.com/go/bigtable/bttest"
	apiv1 "cloud.google.com/go/pubsub/v2/apiv1"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/transforms/pubsubread"
)

// Stack is a running Pub/Sub fake and Bigtable emulator.
type Stack struct {
	// PubSub and Bigtable are the in-process servers; each is nil when
	// Start used a running emulator instead (Options.FromEnv,
	// Options.Bigtable).
	PubSub   *pstest.Server
	Bigtable *bttest.Server
	// BigtableConfig points at the Tandem table.
	BigtableConfig bigtablestore.Config
	// PubSubEndpoint points at the fake (or the emulator).
	PubSubEndpoint pubsubread.Endpoint
}

// Options place the servers; empty addresses pick free loopback ports.
type Options struct {
	PubSubAddr   string // host:port
	BigtableAddr string // host:port
	// Bigtable names the table (default, when its Project is empty:
	// bigtablestore.Default*). When its Endpoint is set, that Bigtable
	// emulator is used and none is started.
	Bigtable bigtablestore.Config
	// FromEnv uses the emulators named by BIGTABLE_EMULATOR_HOST and
	// PUBSUB_EMULATOR_HOST, where set, instead of starting in-process ones.
	FromEnv bool
	// BigtableOptions configure the in-process Bigtable emulator, for
	// example bigtablestore.RejectExpiredCells.
	BigtableOptions []bigtablestore.EmulatorOption
	// AckDeadline of the subscriptions created (default 10s, the minimum).
	AckDeadline time.Duration
	// PubSubReactors intercept calls to the fake (pstest), for example to
	// count acknowledgements in a benchmark.
	PubSubReactors []pstest.ServerReactorOption
	// Logf, when set, is told what Start starts or uses and what it creates.
	Logf func(format string, args ...any)
}

// Start starts (or, see Options, connects to) both servers and creates the
// table with the column families of the feature sets and, for each set, the
// topic and subscription of its stream source (the topic named like the
// subscription, see Topic).
func Start(ctx context.Context, o Options, sets ...*schemas.FeatureSet) (*Stack, error) {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	st := &Stack{BigtableConfig: o.Bigtable}
	if st.BigtableConfig.Project == "" {
		st.BigtableConfig = bigtablestore.Config{Project: bigtablestore.DefaultProject, Instance: bigtablestore.DefaultInstance, Table: bigtablestore.DefaultTable}
	}
	if err := st.start(ctx, o, sets, logf); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

func (st *Stack) start(ctx context.Context, o Options, sets []*schemas.FeatureSet, logf func(string, ...any)) error {
	var btHost, psHost string // emulators to use instead of in-process ones
	if o.FromEnv {
		btHost, psHost = os.Getenv("BIGTABLE_EMULATOR_HOST"), os.Getenv("PUBSUB_EMULATOR_HOST")
	}
	if st.BigtableConfig.Endpoint == "" && btHost == "" {
		addr := o.BigtableAddr
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		bt, _, err := bigtablestore.StartEmulatorAt(addr, o.BigtableOptions...)
		if err != nil {
			return err
		}
		st.Bigtable, st.BigtableConfig.Endpoint = bt, bt.Addr
		logf("started the in-process Bigtable emulator at %s", bt.Addr)
	} else {
		logf("using Bigtable at %s", st.BigtableConfig)
	}
	ac, err := st.BigtableConfig.NewAdminClient(ctx)
	if err != nil {
		return err
	}
	did, err := bigtablestore.EnsureTable(ctx, ac, st.BigtableConfig.Table, sets)
	ac.Close()
	if err != nil {
		return err
	}
	for _, d := range did {
		logf("table %s: %s", st.BigtableConfig.Table, d)
	}

	if psHost != "" {
		st.PubSubEndpoint = pubsubread.Endpoint{Emulator: psHost}
		logf("using the Pub/Sub emulator at %s", psHost)
	} else {
		addr := o.PubSubAddr
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		st.PubSub = pstest.NewServerWithAddress(addr, o.PubSubReactors...)
		st.PubSubEndpoint = pubsubread.Endpoint{Emulator: st.PubSub.Addr}
		logf("started the in-process Pub/Sub fake at %s", st.PubSub.Addr)
	}
	deadline := max(o.AckDeadline, 10*time.Second)
	for _, set := range sets {
		sub := pubsubread.Subscription(set.Sources.Stream.Subscription)
		if sub == "" {
			continue
		}
		if err := st.CreateSubscription(ctx, sub, deadline); err != nil {
			return err
		}
		logf("pubsub: topic %s → subscription %s", Topic(sub), sub)
	}
	return nil
}

// Topic is the topic localstack creates for a subscription: same project,
// same ID.
func Topic(sub pubsubread.Subscription) string {
	return strings.Replace(string(sub), "/subscriptions/", "/topics/", 1)
}

// CreateSubscription creates sub and its topic (see Topic) if missing.
func (st *Stack) CreateSubscription(ctx context.Context, sub pubsubread.Subscription, ackDeadline time.Duration) error {
	return CreateSubscription(ctx, st.PubSubEndpoint, sub, ackDeadline)
}

// CreateSubscription creates sub and its topic (see Topic) on the Pub/Sub
// emulator at ep if missing.
func CreateSubscription(ctx context.Context, ep pubsubread.Endpoint, sub pubsubread.Subscription, ackDeadline time.Duration) error {
	if _, _, err := sub.Parse(); err != nil {
		return err
	}
	conn, err := grpc.NewClient(ep.Emulator, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial pubsub emulator %s: %w", ep.Emulator, err)
	}
	defer conn.Close()
	topics, err := apiv1.NewTopicAdminClient(ctx, option.WithGRPCConn(conn))
	if err != nil {
		return fmt.Errorf("pubsub topic client: %w", err)
	}
	subs, err := apiv1.NewSubscriptionAdminClient(ctx, option.WithGRPCConn(conn))
	if err != nil {
		return fmt.Errorf("pubsub subscription client: %w", err)
	}
	topic := Topic(sub)
	if _, err := topics.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil && !exists(err) {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	_, err = subs.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name:               string(sub),
		Topic:              topic,
		AckDeadlineSeconds: int32(ackDeadline / time.Second),
	})
	if err != nil && !exists(err) {
		return fmt.Errorf("create subscription %s: %w", sub, err)
	}
	return nil
}

func exists(err error) bool { return status.Code(err) == codes.AlreadyExists }

// Close stops the in-process servers.
func (st *Stack) Close() error {
	var errs []error
	if st.PubSub != nil {
		errs = append(errs, st.PubSub.Close())
	}
	if st.Bigtable != nil {
		st.Bigtable.Close()
	}
	return errors.Join(errs...)
}

// Publisher publishes to a topic of a Pub/Sub emulator over gRPC, in
// batches, so that tests and benchmarks can feed a pipeline in another
// process. It is not safe for concurrent use.
type Publisher struct {
	conn   *grpc.ClientConn
	topics *apiv1.TopicAdminClient
	topic  string
}

// NewPublisher connects to the emulator at ep.
func NewPublisher(ctx context.Context, ep pubsubread.Endpoint, topic string) (*Publisher, error) {
	conn, err := grpc.NewClient(ep.Emulator, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial pubsub emulator %s: %w", ep.Emulator, err)
	}
	topics, err := apiv1.NewTopicAdminClient(ctx, option.WithGRPCConn(conn))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("pubsub topic client: %w", err)
	}
	return &Publisher{conn: conn, topics: topics, topic: topic}, nil
}

// Publish publishes the messages (in batches of 1000) and returns their IDs.
func (p *Publisher) Publish(ctx context.Context, data [][]byte) ([]string, error) {
	var ids []string
	for len(data) > 0 {
		n := min(len(data), 1000)
		req := &pubsubpb.PublishRequest{Topic: p.topic}
		for _, d := range data[:n] {
			req.Messages = append(req.Messages, &pubsubpb.PubsubMessage{Data: d})
		}
		resp, err := p.topics.Publish(ctx, req)
		if err != nil {
			return ids, fmt.Errorf("publish %d messages to %s: %w", n, p.topic, err)
		}
		ids = append(ids, resp.GetMessageIds()...)
		data = data[n:]
	}
	return ids, nil
}

// Close closes the connection.
func (p *Publisher) Close() error { return p.conn.Close() }
