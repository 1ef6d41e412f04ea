// Package localstack runs Tandem's whole platform on one machine: the
// Bigtable emulator and the Pub/Sub fake (in process, or Google's emulators
// named by BIGTABLE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST), the table, the
// batch pipeline over generated history, the streaming pipeline over a live
// stream of published events, and the serving API. The backends are
// started by the streaming pipeline's package localstack
// (pipelines/streaming/localstack); this one adds the clients, the
// pipelines and the server. The local command (scripts/local) and the
// end-to-end tests (the oracle and fault tests) are built from it.
package localstack

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/bigtable"
	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	streamlocal "github.com/tandem-fp/tandem/pipelines/streaming/localstack"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/transforms/pubsubread"
)

// Backends are the storage and messaging services of a local stack, with
// the table created and a topic and subscription for every feature set.
type Backends struct {
	Sets     []*schemas.FeatureSet
	Bigtable bigtablestore.Config
	PubSub   pubsubread.Endpoint
	// Client and Table are open on Bigtable for the server and for checks.
	Client *bigtable.Client
	Table  *bigtable.Table

	stack      *streamlocal.Stack
	psClient   *pubsub.Client
	publishers map[string]*pubsub.Publisher
}

// BackendOptions choose where the backends are.
type BackendOptions struct {
	// Bigtable, when its Endpoint is empty and BIGTABLE_EMULATOR_HOST is
	// unset, is replaced by the in-process emulator.
	Bigtable bigtablestore.Config
	// PubSubProject is the project of the client that publishes (default
	// bigtablestore.DefaultProject); topics are in their subscriptions'
	// projects.
	PubSubProject string
}

// StartBackends starts (or connects to) Bigtable and Pub/Sub, creates the
// table with the column families of the feature sets, and a topic and
// subscription for each set's stream source: topic projects/P/topics/ID
// for subscription projects/P/subscriptions/ID (the streaming pipeline's
// local stack, honouring BIGTABLE_EMULATOR_HOST and PUBSUB_EMULATOR_HOST),
// and opens clients on them.
func StartBackends(ctx context.Context, sets []*schemas.FeatureSet, o BackendOptions, logf func(string, ...any)) (*Backends, error) {
	st, err := streamlocal.Start(ctx, streamlocal.Options{
		Bigtable:    o.Bigtable,
		FromEnv:     true,
		AckDeadline: 60 * time.Second,
		Logf:        logf,
	}, sets...)
	if err != nil {
		return nil, err
	}
	b := &Backends{Sets: sets, Bigtable: st.BigtableConfig, PubSub: st.PubSubEndpoint, stack: st, publishers: map[string]*pubsub.Publisher{}}
	ok := false
	defer func() {
		if !ok {
			b.Close()
		}
	}()
	if b.Client, err = b.Bigtable.NewClient(ctx); err != nil {
		return nil, err
	}
	b.Table = b.Client.Open(b.Bigtable.Table)

	project := o.PubSubProject
	if project == "" {
		project = bigtablestore.DefaultProject
	}
	if b.psClient, err = pubsub.NewClient(ctx, project,
		option.WithEndpoint(b.PubSub.Emulator), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials()))); err != nil {
		return nil, fmt.Errorf("pubsub client: %w", err)
	}
	for _, set := range sets {
		sub := set.Sources.Stream.Subscription
		if sub == "" {
			continue
		}
		p := b.psClient.Publisher(streamlocal.Topic(pubsubread.Subscription(sub)))
		p.PublishSettings.DelayThreshold = 5 * time.Millisecond
		p.PublishSettings.CountThreshold = 1000
		b.publishers[set.Name] = p
	}
	ok = true
	return b, nil
}

// Publish publishes raw messages to the topic of set and waits until
// Pub/Sub has accepted every one.
func (b *Backends) Publish(ctx context.Context, set string, msgs ...[]byte) error {
	p, ok := b.publishers[set]
	if !ok {
		return fmt.Errorf("publish: feature set %q has no stream source", set)
	}
	results := make([]*pubsub.PublishResult, len(msgs))
	for i, m := range msgs {
		results[i] = p.Publish(ctx, &pubsub.Message{Data: m})
	}
	var errs []error
	for _, r := range results {
		if _, err := r.Get(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("publish %d of %d messages to %s failed: %w", len(errs), len(msgs), set, errors.Join(errs...))
	}
	return nil
}

// Close stops the publishers, closes the clients and stops in-process
// emulators.
func (b *Backends) Close() {
	for _, p := range b.publishers {
		p.Stop()
	}
	if b.psClient != nil {
		b.psClient.Close()
	}
	if b.Client != nil {
		b.Client.Close()
	}
	if b.stack != nil {
		b.stack.Close()
	}
}

// set returns the named feature set.
func (b *Backends) set(name string) *schemas.FeatureSet {
	for _, s := range b.Sets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Unacked returns how many published messages no subscriber has
// acknowledged yet; ok is false when Pub/Sub is not the in-process fake.
func (b *Backends) Unacked() (n int, ok bool) {
	if b.stack.PubSub == nil {
		return 0, false
	}
	for _, m := range b.stack.PubSub.Messages() {
		if m.Acks == 0 {
			n++
		}
	}
	return n, true
}

// WaitAcked waits until every published message has been acknowledged
// (in-process fake only) or ctx is done.
func (b *Backends) WaitAcked(ctx context.Context) error {
	for {
		n, ok := b.Unacked()
		if !ok || n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d messages still unacknowledged: %w", n, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
