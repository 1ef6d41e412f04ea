// Package schemastest provides what tests of other packages need to build
// feature sets from inline YAML definitions.
//
// The tests of package schemas itself cannot use it: it imports schemas.
package schemastest

import (
	"testing"
	"time"

	"github.com/tandem-fp/tandem/schemas"
)

// MustParse parses the feature-set definition yaml, failing t (with the
// definition errors, by line) when it is not valid.
func MustParse(t testing.TB, yaml string) *schemas.FeatureSet {
	t.Helper()
	set, err := schemas.Parse("", []byte(yaml))
	if err != nil {
		t.Fatalf("schemas.Parse = %v\n%s", err, yaml)
	}
	return set
}

// DaysAgo returns midnight UTC n days before today, read from the wall
// clock. Tests that write events or tiles which something compares with the
// clock (the emulator's max-age GC, lateness, staleness, the serving `at`
// bounds) build their instants from it, so that they pass on any date:
// DaysAgo(2).Add(10*time.Hour) has the same alignment to every tile size of
// schemas.TileLadder as a fixed "2026-11-20T10:00:00Z" had, and stays a day
// or two old whatever the date.
func DaysAgo(n int) time.Time {
	return time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -n)
}
