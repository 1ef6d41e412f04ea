// Command setuptable creates or verifies the Bigtable table that holds
// Tandem's tiles: the table, its column families (batch, stream, meta) and
// their GC policies (max age = the longest retention of the feature sets on
// the batch and stream families, one version on meta), from one or more
// feature-set definitions. It is idempotent: a second run changes nothing
// and says so. It prints what it did and the families as they now are.
//
// Flags:
//
//	--featureset         a definition file or a directory of them; repeat it for several
//	                     (further definitions may also follow the flags)
//	--bigtable_project   Bigtable project (default tandem-local)
//	--bigtable_instance  Bigtable instance (default tandem)
//	--bigtable_table     table (default features)
//
// With BIGTABLE_EMULATOR_HOST set it talks to that emulator; otherwise to
// Bigtable with Application Default Credentials (the caller needs
// bigtable.tables.create and bigtable.tables.update, e.g. roles/bigtable.admin).
//
//	go run ./scripts/setuptable --featureset schemas
//	BIGTABLE_EMULATOR_HOST=127.0.0.1:8086 go run ./scripts/setuptable --featureset schemas/card_activity.yaml
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/bigtable"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
)

// paths is a repeatable string flag.
type paths []string

func (p *paths) String() string     { return strings.Join(*p, ",") }
func (p *paths) Set(v string) error { *p = append(*p, v); return nil }

func main() {
	var sets paths
	flag.Var(&sets, "featureset", "feature-set definition file or directory (repeatable)")
	var cfg bigtablestore.Config
	cfg.RegisterFlags(flag.CommandLine)
	flag.Parse()
	sets = append(sets, flag.Args()...)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, cfg, sets); err != nil {
		fmt.Fprintln(os.Stderr, "setuptable:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg bigtablestore.Config, paths []string) error {
	if len(paths) == 0 {
		return errors.New("give at least one --featureset (a file or a directory)")
	}
	sets, err := schemas.LoadAll(paths...)
	if err != nil {
		return err
	}
	names := make([]string, len(sets))
	for i, s := range sets {
		names[i] = fmt.Sprintf("%s (retention %s)", s.Name, schemas.FormatDuration(s.Retention))
	}
	fmt.Printf("table %s\nfeature sets: %s\n", cfg, strings.Join(names, ", "))

	ac, err := cfg.NewAdminClient(ctx)
	if err != nil {
		return err
	}
	defer ac.Close()
	did, err := bigtablestore.EnsureTable(ctx, ac, cfg.Table, sets)
	for _, d := range did {
		fmt.Println("  " + d)
	}
	if err != nil {
		return err
	}
	if len(did) == 0 {
		fmt.Println("  nothing to do: the table is up to date")
	}

	info, err := ac.TableInfo(ctx, cfg.Table)
	if err != nil {
		return fmt.Errorf("describe table %s: %w", cfg.Table, err)
	}
	slices.SortFunc(info.FamilyInfos, func(a, b bigtable.FamilyInfo) int { return strings.Compare(a.Name, b.Name) })
	fmt.Println("families:")
	for _, f := range info.FamilyInfos {
		fmt.Printf("  %-8s GC policy %s\n", f.Name, f.GCPolicy)
	}
	return nil
}
