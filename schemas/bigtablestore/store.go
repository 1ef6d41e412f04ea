// Package bigtablestore connects to the Bigtable table that holds Tandem's
// tiles (real Bigtable, Google's emulator or the in-process bttest emulator),
// creates or verifies it with the column families and GC policies of the
// layout in package schemas, and reads and writes the per-feature-set
// metadata (the batch watermark, the newest stream tile, the stream
// watermark). It does not import Beam; the pipelines' writer and the server
// both use it.
package bigtablestore

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"cloud.google.com/go/bigtable"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tandem-fp/tandem/schemas"
)

// Config names a Bigtable table and how to reach it.
type Config struct {
	Project  string `json:"project"`
	Instance string `json:"instance"`
	Table    string `json:"table"`
	// Endpoint, when set, is a host:port of an emulator reached without TLS
	// or credentials. When empty the client library honours
	// BIGTABLE_EMULATOR_HOST, and otherwise dials real Bigtable with
	// Application Default Credentials.
	Endpoint string `json:"endpoint,omitempty"`
}

// Defaults used by every Tandem command for local runs.
const (
	DefaultProject  = "tandem-local"
	DefaultInstance = "tandem"
	DefaultTable    = "features"
)

// RegisterFlags defines --bigtable_project, --bigtable_instance and
// --bigtable_table in fs, with defaults DefaultProject, DefaultInstance and
// DefaultTable, and binds them to c's Project, Instance and Table, which it
// sets to those defaults at once; fs.Parse then stores the flags' values in
// c. Endpoint is left alone. It is how every Tandem command names its table.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Project, "bigtable_project", DefaultProject, "Bigtable project")
	fs.StringVar(&c.Instance, "bigtable_instance", DefaultInstance, "Bigtable instance")
	fs.StringVar(&c.Table, "bigtable_table", DefaultTable, "Bigtable table")
}

// ErrConfig reports an incomplete Config.
var ErrConfig = errors.New("bigtablestore: incomplete config")

// Validate reports a missing project, instance or table.
func (c Config) Validate() error {
	switch {
	case c.Project == "":
		return fmt.Errorf("%w: bigtable project is empty", ErrConfig)
	case c.Instance == "":
		return fmt.Errorf("%w: bigtable instance is empty", ErrConfig)
	case c.Table == "":
		return fmt.Errorf("%w: bigtable table is empty", ErrConfig)
	}
	return nil
}

// Emulated reports whether c talks to an emulator (Endpoint or
// BIGTABLE_EMULATOR_HOST).
func (c Config) Emulated() bool { return c.Endpoint != "" || os.Getenv("BIGTABLE_EMULATOR_HOST") != "" }

// String describes where c points, for logs.
func (c Config) String() string {
	where := "Bigtable"
	switch {
	case c.Endpoint != "":
		where = "emulator at " + c.Endpoint
	case os.Getenv("BIGTABLE_EMULATOR_HOST") != "":
		where = "emulator at " + os.Getenv("BIGTABLE_EMULATOR_HOST")
	}
	return fmt.Sprintf("projects/%s/instances/%s/tables/%s (%s)", c.Project, c.Instance, c.Table, where)
}

func (c Config) options() []option.ClientOption {
	if c.Endpoint == "" {
		return nil
	}
	return []option.ClientOption{
		option.WithEndpoint(c.Endpoint),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}

// NewClient opens a data client. Close it when done.
func (c Config) NewClient(ctx context.Context) (*bigtable.Client, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	cfg := bigtable.ClientConfig{}
	if c.Emulated() {
		cfg.MetricsProvider = bigtable.NoopMetricsProvider{}
	}
	cl, err := bigtable.NewClientWithConfig(ctx, c.Project, c.Instance, cfg, c.options()...)
	if err != nil {
		return nil, fmt.Errorf("bigtable client for %s: %w", c, err)
	}
	return cl, nil
}

// NewAdminClient opens an admin client. Close it when done.
func (c Config) NewAdminClient(ctx context.Context) (*bigtable.AdminClient, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	ac, err := bigtable.NewAdminClient(ctx, c.Project, c.Instance, c.options()...)
	if err != nil {
		return nil, fmt.Errorf("bigtable admin client for %s: %w", c, err)
	}
	return ac, nil
}

// Retention returns the GC max age of the data families for the given
// feature sets sharing one table: the longest retention among them.
func Retention(sets []*schemas.FeatureSet) time.Duration {
	var r time.Duration
	for _, s := range sets {
		r = max(r, s.Retention, s.MaxWindow()+schemas.DefaultRetentionSlack)
	}
	return r
}

// EnsureTable creates the table if it does not exist, creates any missing
// column family, and sets the GC policies: max age Retention(sets) on the
// batch and stream families, one version on the meta family. It is
// idempotent and returns what it did, for the caller to log.
func EnsureTable(ctx context.Context, ac *bigtable.AdminClient, table string, sets []*schemas.FeatureSet) ([]string, error) {
	var did []string
	tables, err := ac.Tables(ctx)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	exists := false
	for _, t := range tables {
		exists = exists || t == table
	}
	if !exists {
		if err := ac.CreateTable(ctx, table); err != nil {
			return nil, fmt.Errorf("create table %s: %w", table, err)
		}
		did = append(did, "created table "+table)
	}
	info, err := ac.TableInfo(ctx, table)
	if err != nil {
		return nil, fmt.Errorf("describe table %s: %w", table, err)
	}
	have := map[string]string{}
	for _, f := range info.FamilyInfos {
		have[f.Name] = f.GCPolicy
	}
	age := Retention(sets)
	policies := []struct {
		family string
		policy bigtable.GCPolicy
	}{
		{schemas.FamilyBatch, bigtable.MaxAgePolicy(age)},
		{schemas.FamilyStream, bigtable.MaxAgePolicy(age)},
		{schemas.FamilyMeta, bigtable.MaxVersionsPolicy(1)},
	}
	for _, p := range policies {
		if _, ok := have[p.family]; !ok {
			if err := ac.CreateColumnFamily(ctx, table, p.family); err != nil {
				return nil, fmt.Errorf("create column family %s:%s: %w", table, p.family, err)
			}
			did = append(did, "created column family "+p.family)
		}
		if have[p.family] != p.policy.String() {
			if err := ac.SetGCPolicy(ctx, table, p.family, p.policy); err != nil {
				return nil, fmt.Errorf("set GC policy of %s:%s: %w", table, p.family, err)
			}
			did = append(did, fmt.Sprintf("set GC policy of %s to %s", p.family, p.policy))
		}
	}
	return did, nil
}

// Meta is a feature set's metadata (see schemas/layout.go). A zero time
// means not written yet.
type Meta struct {
	BatchWatermark   time.Time
	StreamLatestTile time.Time
	StreamWatermark  time.Time
}

// ReadMeta reads a feature set's metadata.
func ReadMeta(ctx context.Context, tbl *bigtable.Table, set string) (Meta, error) {
	row, err := tbl.ReadRow(ctx, schemas.MetaRowKey(set), bigtable.RowFilter(bigtable.ChainFilters(
		bigtable.FamilyFilter(schemas.FamilyMeta), bigtable.LatestNFilter(1))))
	if err != nil {
		return Meta{}, fmt.Errorf("read metadata of %s: %w", set, err)
	}
	var m Meta
	for _, it := range row[schemas.FamilyMeta] {
		t, perr := time.Parse(time.RFC3339Nano, string(it.Value))
		if perr != nil {
			return Meta{}, fmt.Errorf("read metadata of %s: %s = %q: %w", set, it.Column, it.Value, perr)
		}
		switch it.Column {
		case schemas.FamilyMeta + ":" + schemas.QualifierBatchWatermark:
			m.BatchWatermark = t
		case schemas.FamilyMeta + ":" + schemas.QualifierStreamLatestTile:
			m.StreamLatestTile = t
		case schemas.FamilyMeta + ":" + schemas.QualifierStreamWatermark:
			m.StreamWatermark = t
		}
	}
	return m, nil
}

// WriteMeta sets one metadata time of a feature set (qualifier
// schemas.QualifierBatchWatermark, QualifierStreamLatestTile or
// QualifierStreamWatermark).
//
// The batch watermark's cell is stamped with the time of writing, so the
// last run's watermark wins. The stream's cells are stamped with the time
// they hold, so that concurrent writers never move them backwards: the
// cell with the highest timestamp is the one read.
func WriteMeta(ctx context.Context, tbl *bigtable.Table, set, qualifier string, t time.Time) error {
	ts := bigtable.Now()
	if qualifier != schemas.QualifierBatchWatermark {
		ts = bigtable.Time(t).TruncateToMilliseconds()
	}
	m := bigtable.NewMutation()
	m.Set(schemas.FamilyMeta, qualifier, ts, []byte(t.UTC().Format(time.RFC3339Nano)))
	if err := tbl.Apply(ctx, schemas.MetaRowKey(set), m); err != nil {
		return fmt.Errorf("write %s of %s: %w", qualifier, set, err)
	}
	return nil
}

// ErrNoTable reports that the table, or a column family Tandem needs in it,
// does not exist: scripts/setuptable has not been run for it.
var ErrNoTable = errors.New("bigtablestore: table not set up")

// CheckTable verifies, before any pipeline or server work, that cfg's table
// exists with the column families of the layout (batch, stream, meta). It
// returns an error wrapping ErrNoTable, on one line that names the table,
// the instance and the command that creates it (scripts/setuptable with the
// definitions of sets), when it does not; other errors (unreachable,
// permissions) are returned wrapped as they are.
//
// It asks the admin API for the table's families. Where the caller may not
// use the admin API (PermissionDenied) it reads one row instead, which
// tells a missing table but not a missing family.
func CheckTable(ctx context.Context, cfg Config, sets []*schemas.FeatureSet) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ac, err := cfg.NewAdminClient(ctx)
	if err != nil {
		return err
	}
	defer ac.Close()
	info, err := ac.TableInfo(ctx, cfg.Table)
	switch status.Code(err) {
	case codes.OK:
	case codes.NotFound:
		return noTable(cfg, sets)
	case codes.PermissionDenied:
		return checkTableData(ctx, cfg, sets)
	default:
		return fmt.Errorf("check table %s: %w", cfg, err)
	}
	have := map[string]bool{}
	for _, f := range info.FamilyInfos {
		have[f.Name] = true
	}
	var missing []string
	for _, f := range []string{schemas.FamilyBatch, schemas.FamilyStream, schemas.FamilyMeta} {
		if !have[f] {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		fam := "column family"
		if len(missing) > 1 {
			fam = "column families"
		}
		return fmt.Errorf("%w: table %s in instance %s of project %s%s lacks the %s %s; create it with: %s",
			ErrNoTable, cfg.Table, cfg.Instance, cfg.Project, cfg.where(), fam, strings.Join(missing, ", "), SetupCommand(cfg, sets))
	}
	return nil
}

// checkTableData is CheckTable through the data API.
func checkTableData(ctx context.Context, cfg Config, sets []*schemas.FeatureSet) error {
	cl, err := cfg.NewClient(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	_, err = cl.Open(cfg.Table).ReadRow(ctx, "tandem-check-table", bigtable.RowFilter(bigtable.BlockAllFilter()))
	switch status.Code(err) {
	case codes.OK:
		return nil
	case codes.NotFound:
		return noTable(cfg, sets)
	}
	return fmt.Errorf("check table %s: %w", cfg, err)
}

func noTable(cfg Config, sets []*schemas.FeatureSet) error {
	return fmt.Errorf("%w: table %s not found in instance %s of project %s%s; create it with: %s",
		ErrNoTable, cfg.Table, cfg.Instance, cfg.Project, cfg.where(), SetupCommand(cfg, sets))
}

// where is " (emulator at host:port)" for an emulator, else "".
func (c Config) where() string {
	switch {
	case c.Endpoint != "":
		return " (emulator at " + c.Endpoint + ")"
	case os.Getenv("BIGTABLE_EMULATOR_HOST") != "":
		return " (emulator at " + os.Getenv("BIGTABLE_EMULATOR_HOST") + ")"
	}
	return ""
}

// SetupCommand is the scripts/setuptable command line that creates cfg's
// table for sets (their definition files; "DEFINITION.yaml" for a set
// parsed from memory), with BIGTABLE_EMULATOR_HOST set first when cfg is
// an emulator.
func SetupCommand(cfg Config, sets []*schemas.FeatureSet) string {
	var b strings.Builder
	switch {
	case cfg.Endpoint != "":
		b.WriteString("BIGTABLE_EMULATOR_HOST=" + cfg.Endpoint + " ")
	case os.Getenv("BIGTABLE_EMULATOR_HOST") != "":
		b.WriteString("BIGTABLE_EMULATOR_HOST=" + os.Getenv("BIGTABLE_EMULATOR_HOST") + " ")
	}
	b.WriteString("go run ./scripts/setuptable")
	seen := map[string]bool{}
	for _, s := range sets {
		f := s.File
		if f == "" {
			f = "DEFINITION.yaml"
		}
		if !seen[f] {
			seen[f] = true
			b.WriteString(" --featureset " + f)
		}
	}
	if len(sets) == 0 {
		b.WriteString(" --featureset DEFINITION.yaml")
	}
	fmt.Fprintf(&b, " --bigtable_project %s --bigtable_instance %s --bigtable_table %s", cfg.Project, cfg.Instance, cfg.Table)
	return b.String()
}
