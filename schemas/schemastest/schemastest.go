// Package schemastest provides what tests of other packages need to build
// feature sets from inline YAML definitions.
//
// The tests of package schemas itself cannot use it: it imports schemas.
package schemastest

import (
	"testing"

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
