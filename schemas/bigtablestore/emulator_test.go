package bigtablestore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigtable"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/schemas/schemastest"
)

const guardDef = `
name: g
entity: {name: a, key: id}
event_time: ts
fields: {id: string, ts: timestamp}
features: [{name: n, op: count, window: 1h}]
retention: 2d
`

// startGuarded starts the emulator with opts and the table of guardDef
// (batch and stream families with a max-age GC of 2d).
func startGuarded(t *testing.T, opts ...bigtablestore.EmulatorOption) *bigtable.Table {
	t.Helper()
	ctx := context.Background()
	set := schemastest.MustParse(t, guardDef)
	srv, cfg, err := bigtablestore.StartEmulator(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ac, err := cfg.NewAdminClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	if _, err := bigtablestore.EnsureTable(ctx, ac, cfg.Table, []*schemas.FeatureSet{set}); err != nil {
		t.Fatal(err)
	}
	cl, err := cfg.NewClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl.Open(cfg.Table)
}

func cellAt(family string, at time.Time) *bigtable.Mutation {
	m := bigtable.NewMutation()
	m.Set(family, "n@1m", bigtable.Time(at), []byte{1})
	return m
}

// TestEmulatorRejectsExpiredCells: in a test binary the emulator refuses,
// naming the cell, a write the max-age GC would delete at once (the way the
// streaming tests lost their tiles once their fixed dates were 8 days old),
// through every write RPC, and accepts cells inside the retention, cells of
// families without a max age and cells stamped by the server.
func TestEmulatorRejectsExpiredCells(t *testing.T) {
	ctx := context.Background()
	tbl := startGuarded(t)
	old := time.Now().Add(-50 * time.Hour)
	recent := time.Now().Add(-46 * time.Hour)

	wantRejected := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), `cell stream:n@1m of row "g#a"`) ||
			!strings.Contains(err.Error(), "older than now − 2d") || !strings.Contains(err.Error(), "time.Now()") {
			t.Errorf("%s of a cell 50h old under a 2d max age: err = %v, want FailedPrecondition naming the cell and the GC", what, err)
		}
	}
	wantRejected("Apply", tbl.Apply(ctx, "g#a", cellAt(schemas.FamilyStream, old)))
	errs, err := tbl.ApplyBulk(ctx, []string{"g#b", "g#a"}, []*bigtable.Mutation{cellAt(schemas.FamilyStream, recent), cellAt(schemas.FamilyStream, old)})
	if err == nil && len(errs) > 0 {
		err = errs[1]
	}
	wantRejected("ApplyBulk", err)
	cond := bigtable.NewCondMutation(bigtable.PassAllFilter(), cellAt(schemas.FamilyStream, old), nil)
	wantRejected("CheckAndMutate", tbl.Apply(ctx, "g#a", cond))

	for _, m := range []struct {
		what string
		mut  *bigtable.Mutation
	}{
		{"a cell inside the retention", cellAt(schemas.FamilyBatch, recent)},
		{"an old cell of the meta family (one version, no max age)", cellAt(schemas.FamilyMeta, old.AddDate(-5, 0, 0))},
	} {
		if err := tbl.Apply(ctx, "g#c", m.mut); err != nil {
			t.Errorf("Apply of %s = %v, want it accepted", m.what, err)
		}
	}
	now := bigtable.NewMutation()
	now.Set(schemas.FamilyStream, "n@1m", bigtable.ServerTime, []byte{1})
	if err := tbl.Apply(ctx, "g#c", now); err != nil {
		t.Errorf("Apply of a cell stamped by the server = %v, want it accepted", err)
	}
}

// TestEmulatorLogsExpiredCells: with RejectExpiredCells(false) (a try-out
// run of a command on old data) the write is accepted, and the emulator's
// GC deletes the cell as Bigtable would.
func TestEmulatorLogsExpiredCells(t *testing.T) {
	ctx := context.Background()
	tbl := startGuarded(t, bigtablestore.RejectExpiredCells(false))
	if err := tbl.Apply(ctx, "g#a", cellAt(schemas.FamilyStream, time.Now().Add(-50*time.Hour))); err != nil {
		t.Fatalf("Apply = %v, want it accepted", err)
	}
}

// TestCheckTable: a missing table and a missing column family are each
// reported on one line naming the table, the instance and the setuptable
// command that creates them; a table set up by EnsureTable passes.
func TestCheckTable(t *testing.T) {
	ctx := context.Background()
	set, err := schemas.Parse("defs/g.yaml", []byte(guardDef))
	if err != nil {
		t.Fatal(err)
	}
	sets := []*schemas.FeatureSet{set}
	srv, cfg, err := bigtablestore.StartEmulator()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	wantCmd := "BIGTABLE_EMULATOR_HOST=" + cfg.Endpoint + " go run ./scripts/setuptable --featureset defs/g.yaml --bigtable_project tandem-local --bigtable_instance tandem --bigtable_table features"

	err = bigtablestore.CheckTable(ctx, cfg, sets)
	want := "bigtablestore: table not set up: table features not found in instance tandem of project tandem-local (emulator at " + cfg.Endpoint + "); create it with: " + wantCmd
	if !errors.Is(err, bigtablestore.ErrNoTable) || err.Error() != want {
		t.Errorf("CheckTable without the table = %v\nwant %s", err, want)
	}

	ac, err := cfg.NewAdminClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	if err := ac.CreateTable(ctx, cfg.Table); err != nil {
		t.Fatal(err)
	}
	if err := ac.CreateColumnFamily(ctx, cfg.Table, schemas.FamilyBatch); err != nil {
		t.Fatal(err)
	}
	err = bigtablestore.CheckTable(ctx, cfg, sets)
	want = "bigtablestore: table not set up: table features in instance tandem of project tandem-local (emulator at " + cfg.Endpoint + ") lacks the column families stream, meta; create it with: " + wantCmd
	if !errors.Is(err, bigtablestore.ErrNoTable) || err.Error() != want {
		t.Errorf("CheckTable without the stream and meta families = %v\nwant %s", err, want)
	}

	if _, err := bigtablestore.EnsureTable(ctx, ac, cfg.Table, sets); err != nil {
		t.Fatal(err)
	}
	if err := bigtablestore.CheckTable(ctx, cfg, sets); err != nil {
		t.Errorf("CheckTable after EnsureTable = %v, want nil", err)
	}
}
