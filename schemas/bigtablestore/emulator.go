package bigtablestore

import (
	"context"
	"fmt"
	"log"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	btapb "cloud.google.com/go/bigtable/admin/apiv2/adminpb"
	btpb "cloud.google.com/go/bigtable/apiv2/bigtablepb"
	"cloud.google.com/go/bigtable/bttest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tandem-fp/tandem/schemas"
)

// EmulatorOption configures StartEmulator and StartEmulatorAt.
type EmulatorOption func(*retentionGuard)

// RejectExpiredCells sets what the emulator does with a write of a cell
// whose timestamp is already older than now minus its family's max-age GC,
// a cell bttest would delete within a second and which a test would then
// miss without a word: reject the write (true) with FailedPrecondition and
// a message naming the cell, or accept it and only log that message
// (false). The default is to reject in test binaries (testing.Testing())
// and to log elsewhere (a try-out run of a command on old data).
func RejectExpiredCells(reject bool) EmulatorOption {
	return func(g *retentionGuard) { g.reject = reject }
}

// StartEmulator starts the in-process Bigtable emulator (bttest) on a free
// loopback port and returns it with a Config that points at it. Stop it with
// Close.
func StartEmulator(opts ...EmulatorOption) (*bttest.Server, Config, error) {
	return StartEmulatorAt("127.0.0.1:0", opts...)
}

// StartEmulatorAt is StartEmulator listening on addr (host:port).
//
// The emulator applies a family's max-age GC against the wall clock, as
// Bigtable does, so a cell written with a timestamp older than the max age
// vanishes at once. StartEmulatorAt watches every write (MutateRow,
// MutateRows, CheckAndMutateRow; ReadModifyWriteRow stamps cells with the
// server's clock) against the GC policies set through it (CreateTable,
// ModifyColumnFamilies) and rejects or logs such a cell, see
// RejectExpiredCells.
func StartEmulatorAt(addr string, opts ...EmulatorOption) (*bttest.Server, Config, error) {
	g := &retentionGuard{reject: testing.Testing(), now: time.Now, maxAge: map[string]map[string]time.Duration{}}
	for _, o := range opts {
		o(g)
	}
	// Real Bigtable accepts requests far larger than gRPC's default 4 MiB;
	// so does this emulator.
	srv, err := bttest.NewServer(addr, grpc.MaxRecvMsgSize(256<<20),
		grpc.ChainUnaryInterceptor(recoverUnary, g.unary), grpc.ChainStreamInterceptor(recoverStream, g.stream))
	if err != nil {
		return nil, Config{}, fmt.Errorf("start bigtable emulator on %s: %w", addr, err)
	}
	return srv, Config{Project: DefaultProject, Instance: DefaultInstance, Table: DefaultTable, Endpoint: srv.Addr}, nil
}

// recoverUnary and recoverStream turn a panic of the emulator's handler of
// one call into an Internal error of that call, logged with its stack, as
// Bigtable fails a call: unrecovered, it would end the whole process that
// holds the emulator (a test binary, the local platform) without a word
// about which call.
func recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer recoverCall(info.FullMethod, &err)
	return handler(ctx, req)
}

func recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer recoverCall(info.FullMethod, &err)
	return handler(srv, ss)
}

func recoverCall(method string, err *error) {
	if r := recover(); r != nil {
		log.Printf("bigtable emulator: panic in %s: %v\n%s", method, r, debug.Stack())
		*err = status.Errorf(codes.Internal, "bigtable emulator: panic in %s: %v", method, r)
	}
}

// retentionGuard tracks the max-age GC of each table's families and checks
// the cells written against it.
type retentionGuard struct {
	reject bool
	now    func() time.Time

	mu     sync.Mutex
	maxAge map[string]map[string]time.Duration // table name → family → max age
}

func (g *retentionGuard) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	switch r := req.(type) {
	case *btpb.MutateRowRequest:
		if err := g.check(r.GetTableName(), r.GetRowKey(), r.GetMutations()); err != nil {
			return nil, err
		}
	case *btpb.CheckAndMutateRowRequest:
		for _, ms := range [][]*btpb.Mutation{r.GetTrueMutations(), r.GetFalseMutations()} {
			if err := g.check(r.GetTableName(), r.GetRowKey(), ms); err != nil {
				return nil, err
			}
		}
	}
	resp, err := handler(ctx, req)
	if err != nil {
		return resp, err
	}
	switch r := req.(type) {
	case *btapb.CreateTableRequest:
		name := r.GetParent() + "/tables/" + r.GetTableId()
		for fam, cf := range r.GetTable().GetColumnFamilies() {
			g.setPolicy(name, fam, cf.GetGcRule())
		}
	case *btapb.ModifyColumnFamiliesRequest:
		for _, m := range r.GetModifications() {
			switch {
			case m.GetDrop():
				g.setPolicy(r.GetName(), m.GetId(), nil)
			case m.GetCreate() != nil:
				g.setPolicy(r.GetName(), m.GetId(), m.GetCreate().GetGcRule())
			case m.GetUpdate() != nil:
				g.setPolicy(r.GetName(), m.GetId(), m.GetUpdate().GetGcRule())
			}
		}
	case *btapb.DeleteTableRequest:
		g.mu.Lock()
		delete(g.maxAge, r.GetName())
		g.mu.Unlock()
	}
	return resp, nil
}

func (g *retentionGuard) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &guardedStream{ServerStream: ss, g: g})
}

type guardedStream struct {
	grpc.ServerStream
	g *retentionGuard
}

func (s *guardedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if r, ok := m.(*btpb.MutateRowsRequest); ok {
		for _, e := range r.GetEntries() {
			if err := s.g.check(r.GetTableName(), e.GetRowKey(), e.GetMutations()); err != nil {
				return err
			}
		}
	}
	return nil
}

func (g *retentionGuard) setPolicy(table, family string, rule *btapb.GcRule) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.maxAge[table] == nil {
		g.maxAge[table] = map[string]time.Duration{}
	}
	if age := ruleMaxAge(rule); age > 0 {
		g.maxAge[table][family] = age
	} else {
		delete(g.maxAge[table], family)
	}
}

// ruleMaxAge is the age beyond which bttest deletes a cell under rule, or 0
// if it deletes none by age. bttest applies every rule of a union and no
// intersection.
func ruleMaxAge(rule *btapb.GcRule) time.Duration {
	switch r := rule.GetRule().(type) {
	case *btapb.GcRule_MaxAge:
		return r.MaxAge.AsDuration()
	case *btapb.GcRule_Union_:
		var age time.Duration
		for _, sub := range r.Union.GetRules() {
			if a := ruleMaxAge(sub); a > 0 && (age == 0 || a < age) {
				age = a
			}
		}
		return age
	}
	return 0
}

// check returns the error (or logs the message, see RejectExpiredCells) for
// the first cell of ms older than its family's max age.
func (g *retentionGuard) check(table string, row []byte, ms []*btpb.Mutation) error {
	g.mu.Lock()
	ages := g.maxAge[table]
	var msg string
	now := g.now()
	for _, m := range ms {
		sc := m.GetSetCell()
		if sc == nil || sc.GetTimestampMicros() < 0 { // -1: the server's time
			continue
		}
		age, ok := ages[sc.GetFamilyName()]
		if !ok {
			continue
		}
		ts := time.UnixMicro(sc.GetTimestampMicros()).UTC()
		if cutoff := now.Add(-age); ts.Before(cutoff) {
			msg = fmt.Sprintf("bigtable emulator: cell %s:%s of row %q in table %s has timestamp %s, older than now − %s (the family's max-age GC, cutoff %s): the emulator would delete it at once. Compute test times from time.Now() (see schemastest.DaysAgo) or inject a clock",
				sc.GetFamilyName(), sc.GetColumnQualifier(), row, table, ts.Format(time.RFC3339Nano), schemas.FormatDuration(age), cutoff.UTC().Format(time.RFC3339))
			break
		}
	}
	g.mu.Unlock()
	if msg == "" {
		return nil
	}
	log.Print(msg)
	if g.reject {
		return status.Error(codes.FailedPrecondition, msg)
	}
	return nil
}
