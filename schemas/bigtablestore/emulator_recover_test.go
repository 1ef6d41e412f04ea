package bigtablestore

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestEmulatorRecoversPanics: a handler that panics fails its own call
// with Internal, naming the method and the panic, and the process goes on.
func TestEmulatorRecoversPanics(t *testing.T) {
	boom := func() { var m map[string]int; m["row"]++ }
	_, err := recoverUnary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/google.bigtable.v2.Bigtable/MutateRow"},
		func(context.Context, any) (any, error) { boom(); return nil, nil })
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "MutateRow") || !strings.Contains(err.Error(), "nil map") {
		t.Errorf("unary: %v, want Internal naming MutateRow and the panic", err)
	}
	err = recoverStream(nil, nil, &grpc.StreamServerInfo{FullMethod: "/google.bigtable.v2.Bigtable/ReadRows"},
		func(any, grpc.ServerStream) error { boom(); return nil })
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "ReadRows") {
		t.Errorf("stream: %v, want Internal naming ReadRows", err)
	}
	if err := recoverStream(nil, nil, &grpc.StreamServerInfo{FullMethod: "/x"}, func(any, grpc.ServerStream) error { return nil }); err != nil {
		t.Errorf("a call that does not panic: %v", err)
	}
}
