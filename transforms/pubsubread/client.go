package pubsubread

import (
	"context"
	"errors"
	"fmt"
	"strings"

	apiv1 "cloud.google.com/go/pubsub/v2/apiv1"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// ErrConfig reports an invalid Config.
var ErrConfig = errors.New("pubsubread: invalid config")

// Subscription is a fully qualified Pub/Sub subscription name,
// projects/<project>/subscriptions/<id>.
type Subscription string

// Parse splits the name into project and subscription ID.
func (s Subscription) Parse() (project, id string, err error) {
	parts := strings.Split(string(s), "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[2] != "subscriptions" || parts[1] == "" || parts[3] == "" {
		return "", "", fmt.Errorf("%w: subscription %q is not projects/<project>/subscriptions/<id>", ErrConfig, string(s))
	}
	return parts[1], parts[3], nil
}

// Endpoint says how to reach Pub/Sub. The zero value dials the real service
// with Application Default Credentials, or the emulator named by
// PUBSUB_EMULATOR_HOST when that is set.
type Endpoint struct {
	// Emulator, when set, is the host:port of an emulator or fake (pstest)
	// reached without TLS or credentials. It wins over PUBSUB_EMULATOR_HOST.
	Emulator string `json:"emulator,omitempty"`
}

// NewSubscriberClient opens the low-level subscriber client (unary Pull,
// Acknowledge, ModifyAckDeadline). Close it when done.
func (e Endpoint) NewSubscriberClient(ctx context.Context) (*apiv1.SubscriptionAdminClient, error) {
	var opts []option.ClientOption
	if e.Emulator != "" {
		opts = append(opts,
			option.WithEndpoint(e.Emulator),
			option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
			option.WithTelemetryDisabled(),
		)
	}
	c, err := apiv1.NewSubscriptionAdminClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("pubsub subscriber client (%s): %w", e, err)
	}
	return c, nil
}

// String describes where e points, for logs.
func (e Endpoint) String() string {
	if e.Emulator != "" {
		return "emulator at " + e.Emulator
	}
	return "Pub/Sub"
}
