package pubsubread

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apiv1 "cloud.google.com/go/pubsub/v2/apiv1"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
)

// maxAckIDsPerRequest bounds the ack IDs of one Acknowledge or
// ModifyAckDeadline request (Pub/Sub limits a request to 512 KB).
const maxAckIDsPerRequest = 2500

// Acker acknowledges the messages of one subscription and, until then,
// keeps their ack deadlines extended so that Pub/Sub does not redeliver a
// message while the pipeline still holds it.
//
// The source tracks every message it pulls; the stage that makes a
// message's effect durable acks it. Both run in the same process on the
// local runners (prism runs the SDK harness in process), so one Acker per
// subscription and process, shared by reference count, sees every message in
// flight. An Acker is safe for concurrent use.
type Acker struct {
	key    ackerKey
	client *apiv1.SubscriptionAdminClient
	extend time.Duration // deadline set on every extension

	mu       sync.Mutex
	refs     int
	inflight map[string]time.Time // ack ID → when pulled or last extended
	stop     chan struct{}
	done     chan struct{}
}

type ackerKey struct {
	endpoint     Endpoint
	subscription Subscription
}

var ackers = struct {
	sync.Mutex
	m map[ackerKey]*Acker
}{m: map[ackerKey]*Acker{}}

// AckerFor returns the process's Acker of sub, opening it on first use.
// ackExtension is the deadline each extension sets (at least 10s); it is
// fixed by the first caller. Call Release when done with it.
func AckerFor(ctx context.Context, ep Endpoint, sub Subscription, ackExtension time.Duration) (*Acker, error) {
	if _, _, err := sub.Parse(); err != nil {
		return nil, err
	}
	key := ackerKey{ep, sub}
	ackers.Lock()
	defer ackers.Unlock()
	if a := ackers.m[key]; a != nil {
		a.mu.Lock()
		a.refs++
		a.mu.Unlock()
		return a, nil
	}
	client, err := ep.NewSubscriberClient(ctx)
	if err != nil {
		return nil, err
	}
	ackExtension = max(ackExtension, 10*time.Second)
	a := &Acker{
		key:      key,
		client:   client,
		extend:   ackExtension,
		refs:     1,
		inflight: map[string]time.Time{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go a.extendLoop()
	ackers.m[key] = a
	return a, nil
}

// Release drops one reference; the last one stops the deadline extension
// and closes the client. Messages still in flight are then redelivered by
// Pub/Sub after their deadline.
func (a *Acker) Release() error {
	ackers.Lock()
	defer ackers.Unlock()
	a.mu.Lock()
	a.refs--
	last := a.refs == 0
	a.mu.Unlock()
	if !last {
		return nil
	}
	delete(ackers.m, a.key)
	close(a.stop)
	<-a.done
	if err := a.client.Close(); err != nil {
		return fmt.Errorf("close pubsub client of %s: %w", a.key.subscription, err)
	}
	return nil
}

// Client is the subscriber client the Acker uses; the source pulls with it.
func (a *Acker) Client() *apiv1.SubscriptionAdminClient { return a.client }

// Track records messages just pulled as in flight.
func (a *Acker) Track(ackIDs []string) {
	now := time.Now()
	a.mu.Lock()
	for _, id := range ackIDs {
		a.inflight[id] = now
	}
	a.mu.Unlock()
}

// InFlight is the number of messages pulled and not yet acknowledged.
func (a *Acker) InFlight() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.inflight)
}

// Ack acknowledges messages. Call it only once their effect is durable. On
// error some of them may be acknowledged and the rest will be redelivered.
func (a *Acker) Ack(ctx context.Context, ackIDs []string) error {
	for len(ackIDs) > 0 {
		n := min(len(ackIDs), maxAckIDsPerRequest)
		chunk := ackIDs[:n]
		ackIDs = ackIDs[n:]
		err := a.client.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: string(a.key.subscription), AckIds: chunk})
		if err != nil {
			return fmt.Errorf("acknowledge %d messages of %s: %w", len(chunk), a.key.subscription, err)
		}
		a.mu.Lock()
		for _, id := range chunk {
			delete(a.inflight, id)
		}
		a.mu.Unlock()
	}
	return nil
}

// Nack returns messages to Pub/Sub for redelivery (deadline 0).
func (a *Acker) Nack(ctx context.Context, ackIDs []string) error {
	for len(ackIDs) > 0 {
		n := min(len(ackIDs), maxAckIDsPerRequest)
		chunk := ackIDs[:n]
		ackIDs = ackIDs[n:]
		err := a.client.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{Subscription: string(a.key.subscription), AckIds: chunk})
		if err != nil {
			return fmt.Errorf("nack %d messages of %s: %w", len(chunk), a.key.subscription, err)
		}
		a.mu.Lock()
		for _, id := range chunk {
			delete(a.inflight, id)
		}
		a.mu.Unlock()
	}
	return nil
}

// extendEvery is how long after its pull or last extension a message's
// deadline is extended again: well within the 10s minimum deadline.
const extendEvery = 3 * time.Second

// extendLoop extends, once a second, the deadlines of the messages pulled or
// last extended more than extendEvery ago, until Release.
func (a *Acker) extendLoop() {
	defer close(a.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		var ids []string
		a.mu.Lock()
		for id, at := range a.inflight {
			if now.Sub(at) >= extendEvery {
				ids = append(ids, id)
			}
		}
		a.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), extendEvery)
		for len(ids) > 0 {
			n := min(len(ids), maxAckIDsPerRequest)
			chunk := ids[:n]
			ids = ids[n:]
			err := a.client.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{
				Subscription:       string(a.key.subscription),
				AckIds:             chunk,
				AckDeadlineSeconds: int32(a.extend / time.Second),
			})
			if err != nil {
				// Not fatal: a message whose deadline lapses is redelivered
				// and counted at most twice, as after a crash.
				slog.Warn("extend ack deadlines", "subscription", a.key.subscription, "messages", n, "err", err)
				break
			}
			a.mu.Lock()
			for _, id := range chunk {
				if _, ok := a.inflight[id]; ok {
					a.inflight[id] = now
				}
			}
			a.mu.Unlock()
		}
		cancel()
	}
}
