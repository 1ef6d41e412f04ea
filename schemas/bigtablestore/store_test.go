package bigtablestore_test

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/schemas/schemastest"
	"github.com/tandem-fp/tandem/serving/servingtest"
)

// TestMetaOrdering: the batch watermark is the last one written (a rerun
// may move it back on purpose); the stream's times never move back, even
// when an older value is written after a newer one (two writers, or a
// restarted pipeline that has not caught up).
func TestMetaOrdering(t *testing.T) {
	ctx := context.Background()
	set := schemastest.MustParse(t, `
name: s
entity: {name: a, key: id}
event_time: ts
fields: {id: string, ts: timestamp}
features: [{name: n, op: count, window: 1h}]
`)
	emu, err := servingtest.StartEmulator(ctx, []*schemas.FeatureSet{set})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	tbl := emu.Table

	if got, err := bigtablestore.ReadMeta(ctx, tbl, "s"); err != nil || got != (bigtablestore.Meta{}) {
		t.Fatalf("ReadMeta before any write = %+v, %v; want zero", got, err)
	}
	base := time.Now().UTC().Truncate(time.Hour)
	writes := []struct {
		q string
		t time.Time
	}{
		{schemas.QualifierBatchWatermark, base},
		{schemas.QualifierBatchWatermark, base.Add(-time.Hour)}, // a rerun at an earlier as_of
		{schemas.QualifierStreamLatestTile, base.Add(3 * time.Minute)},
		{schemas.QualifierStreamLatestTile, base.Add(time.Minute)},
		{schemas.QualifierStreamWatermark, base.Add(3*time.Minute + 1500*time.Millisecond)},
		{schemas.QualifierStreamWatermark, base.Add(2 * time.Minute)},
	}
	for _, w := range writes {
		time.Sleep(2 * time.Millisecond) // batch cells are stamped with the clock, in ms
		if err := bigtablestore.WriteMeta(ctx, tbl, "s", w.q, w.t); err != nil {
			t.Fatal(err)
		}
	}
	got, err := bigtablestore.ReadMeta(ctx, tbl, "s")
	if err != nil {
		t.Fatal(err)
	}
	want := bigtablestore.Meta{
		BatchWatermark:   base.Add(-time.Hour),
		StreamLatestTile: base.Add(3 * time.Minute),
		StreamWatermark:  base.Add(3*time.Minute + 1500*time.Millisecond),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ReadMeta (-want +got):\n%s", diff)
	}
}

// TestRegisterFlags: the three flags default to the package defaults and
// parse into the Config; Endpoint is not a flag and is left alone.
func TestRegisterFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want bigtablestore.Config
	}{
		{
			name: "defaults",
			want: bigtablestore.Config{Project: bigtablestore.DefaultProject, Instance: bigtablestore.DefaultInstance, Table: bigtablestore.DefaultTable, Endpoint: "localhost:8086"},
		},
		{
			name: "all set",
			args: []string{"--bigtable_project=p", "--bigtable_instance=i", "--bigtable_table=t"},
			want: bigtablestore.Config{Project: "p", Instance: "i", Table: "t", Endpoint: "localhost:8086"},
		},
		{
			name: "table only",
			args: []string{"--bigtable_table", "t"},
			want: bigtablestore.Config{Project: bigtablestore.DefaultProject, Instance: bigtablestore.DefaultInstance, Table: "t", Endpoint: "localhost:8086"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := bigtablestore.Config{Project: "old", Endpoint: "localhost:8086"}
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			got.RegisterFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatalf("Parse(%q): %v", tc.args, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Config after Parse(%q) (-want +got):\n%s", tc.args, diff)
			}
		})
	}
}
