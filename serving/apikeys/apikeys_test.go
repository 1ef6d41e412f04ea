package apikeys

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseAndLookup(t *testing.T) {
	digest := sha256.Sum256([]byte("hashed-key-0123456789"))
	k, err := Parse([]byte(`
keys:
  - {name: cards, key: "cards-key-0123456789", featuresets: [card_activity]}
  - name: all
    sha256: ` + hex.EncodeToString(digest[:]) + `
    featuresets: ["*"]
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key     string
		name    string
		allowed []string
		denied  []string
	}{
		{"cards-key-0123456789", "cards", []string{"card_activity"}, []string{"user_sessions"}},
		{"hashed-key-0123456789", "all", []string{"card_activity", "user_sessions"}, nil},
		{"cards-key-012345678", "", nil, nil},
		{"", "", nil, nil},
	}
	for _, tc := range tests {
		p, ok := k.Lookup(tc.key)
		if ok != (tc.name != "") {
			t.Errorf("Lookup(%q) ok = %v, want %v", tc.key, ok, tc.name != "")
			continue
		}
		if !ok {
			continue
		}
		if p.Name != tc.name {
			t.Errorf("Lookup(%q) = %s, want %s", tc.key, p.Name, tc.name)
		}
		for _, s := range tc.allowed {
			if !p.Allows(s) {
				t.Errorf("%s may not read %s", p.Name, s)
			}
		}
		for _, s := range tc.denied {
			if p.Allows(s) {
				t.Errorf("%s may read %s", p.Name, s)
			}
		}
	}
	if err := k.CheckFeatureSets([]string{"card_activity"}); err != nil {
		t.Errorf("CheckFeatureSets: %v", err)
	}
	if err := k.CheckFeatureSets([]string{"other"}); err == nil || !strings.Contains(err.Error(), `unknown feature set "card_activity"`) {
		t.Errorf("CheckFeatureSets with a typo = %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	const secret = "s3cret-value-0123456789"
	tests := []struct {
		name, file, want string
	}{
		{"empty", ``, "no keys"},
		{"not yaml", `keys: [`, "line"},
		{"unknown field", `{"keys": [{"name": "a", "key": "` + secret + `", "featuresets": ["*"], "sets": []}]}`, "keys"},
		{"no name", `{"keys": [{"key": "` + secret + `", "featuresets": ["*"]}]}`, "keys[0]: name is empty"},
		{"short key", `{"keys": [{"name": "a", "key": "short", "featuresets": ["*"]}]}`, "keys[0] (a): key is shorter than 16 bytes"},
		{"no key", `{"keys": [{"name": "a", "featuresets": ["*"]}]}`, "no key or sha256"},
		{"both", `{"keys": [{"name": "a", "key": "` + secret + `", "sha256": "00", "featuresets": ["*"]}]}`, "not both"},
		{"bad sha", `{"keys": [{"name": "a", "sha256": "zz", "featuresets": ["*"]}]}`, "64 hex digits"},
		{"no sets", `{"keys": [{"name": "a", "key": "` + secret + `"}]}`, "featuresets is empty"},
		{"duplicate name", `{"keys": [{"name": "a", "key": "` + secret + `", "featuresets": ["*"]}, {"name": "a", "key": "` + secret + `x", "featuresets": ["*"]}]}`, "duplicate name"},
		{"duplicate key", `{"keys": [{"name": "a", "key": "` + secret + `", "featuresets": ["*"]}, {"name": "b", "key": "` + secret + `", "featuresets": ["*"]}]}`, "same key as keys[0] (a)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file))
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse = %v, want an ErrInvalid containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the key: %v", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(path, []byte("keys:\n  - {name: a, key: 0123456789abcdef, featuresets: [x, y]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := k.Lookup("0123456789abcdef")
	if !ok {
		t.Fatal("key not found")
	}
	if diff := cmp.Diff([]string{"x", "y"}, p.FeatureSets()); diff != "" {
		t.Errorf("FeatureSets (-want +got):\n%s", diff)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}
