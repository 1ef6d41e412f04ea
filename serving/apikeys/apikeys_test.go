package apikeys

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
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
	k, err := Load(path, nil)
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
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), nil); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}

// TestKeyFileHardening covers issue 15 point 11.
func TestKeyFileHardening(t *testing.T) {
	t.Run("a sha256 entry cannot admit a short key", func(t *testing.T) {
		k, err := Parse([]byte("keys:\n  - {name: weak, sha256: \"" + Digest("a") + "\", featuresets: [\"*\"]}\n"))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := k.Lookup("a"); ok {
			t.Error(`Lookup("a") matched a digest of "a": the 16-byte minimum is bypassed`)
		}
		long := "a-long-enough-key-0123"
		k, _ = Parse([]byte("keys:\n  - {name: ok, sha256: \"" + Digest(long) + "\", featuresets: [\"*\"]}\n"))
		if _, ok := k.Lookup(long); !ok {
			t.Error("a long key's digest does not match")
		}
	})
	const secret = "0x0123456789abcdef" // 16 bytes; YAML reads it unquoted as the number 81985529216486895
	tests := []struct{ name, file, want string }{
		{"hex number", "keys:\n  - name: a\n    key: " + secret + "\n    featuresets: ['*']\n", "line 3: keys[0] (a).key: want a quoted string, got a number"},
		{"underscores", "keys:\n  - name: a\n    key: 1_000_000_000_000_000_000\n    featuresets: ['*']\n", "line 3: keys[0] (a).key: want a quoted string, got a number"},
		{"octal", "keys:\n  - name: a\n    key: 0o1234567012345670123\n    featuresets: ['*']\n", "got a number"},
		{"float", "keys:\n  - name: a\n    sha256: 0.5\n    featuresets: ['*']\n", "line 3: keys[0] (a).sha256: want a quoted string, got a number"},
		{"bool", "keys:\n  - name: a\n    key: true\n    featuresets: ['*']\n", "got a bool"},
		{"number name", "keys:\n  - name: 12\n    key: 'good-key-0123456789'\n    featuresets: ['*']\n", "line 2: keys[0].name: want a quoted string, got a number"},
		{"number feature set", "keys:\n  - name: a\n    key: 'good-key-0123456789'\n    featuresets: [1]\n", "keys[0] (a).featuresets[0]: want a quoted string"},
		{"sha256 of 63 digits", "keys:\n  - name: a\n    sha256: '" + Digest("x")[:63] + "'\n    featuresets: ['*']\n", "line 3: keys[0] (a): sha256 is not 64 hex digits"},
		{"sha256 of 66 digits", "keys:\n  - name: a\n    sha256: '" + Digest("x") + "00'\n    featuresets: ['*']\n", "sha256 is not 64 hex digits"},
		{"short key on its line", "keys:\n  - name: a\n    featuresets: ['*']\n    key: 'short'\n", "line 4: keys[0] (a): key is shorter than 16 bytes"},
		{"unknown field by line", "keys:\n  - name: a\n    key: 'good-key-0123456789'\n    tdk_secret_pasted_as_field: x\n    featuresets: ['*']\n", "line 4: keys[0] (a): unknown field"},
		{"syntax error by position", "keys:\n  - name: a\n    key: \"" + secret + "\n", "not valid YAML or JSON"},
		{"tab syntax error", "keys:\n\t- name: " + secret + "\n", "line 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file))
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse = %v, want an ErrInvalid containing %q", err, tc.want)
			}
			for _, leak := range []string{secret, "81985529216486895", "tdk_secret", "good-key", "'short'", "1_000_000", "0o1234"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error quotes the file (%q): %v", leak, err)
				}
			}
		})
	}
	t.Run("quoted keys load", func(t *testing.T) {
		if _, err := Parse([]byte("keys:\n  - name: a\n    key: \"" + secret + "\"\n    featuresets: ['*']\n")); err != nil {
			t.Error(err)
		}
	})
}

func TestLoadWarnsOnReadableFile(t *testing.T) {
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{{0o600, false}, {0o640, true}, {0o644, true}, {0o400, false}} {
		path := filepath.Join(t.TempDir(), "keys.yaml")
		if err := os.WriteFile(path, []byte("keys: [{name: a, key: 'good-key-0123456789', featuresets: ['*']}]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		if _, err := Load(path, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "chmod 600"); got != tc.warn {
			t.Errorf("mode %v: warned %v, want %v: %s", tc.mode, got, tc.warn, logs.String())
		}
		if strings.Contains(logs.String(), "good-key") {
			t.Errorf("the warning shows a key: %s", logs.String())
		}
	}
}

func TestAppendNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.yaml")
	k1, err := AppendNew(path, "scorer", []string{"card_activity"})
	if err != nil {
		t.Fatal(err)
	}
	k2, err := AppendNew(path, "analytics", []string{"*"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AppendNew(path, "scorer", []string{"*"}); err == nil || !strings.Contains(err.Error(), `already has a key named "scorer"`) {
		t.Errorf("a second scorer: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, %v, want 0600", fi.Mode().Perm(), err)
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), k1) || strings.Contains(string(data), k2) {
		t.Errorf("the file holds a key:\n%s", data)
	}
	k, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{k1: "scorer", k2: "analytics"} {
		if !strings.HasPrefix(key, KeyPrefix) || len(key) != len(KeyPrefix)+43 {
			t.Errorf("generated key %q: want %s and 43 base64url characters", key, KeyPrefix)
		}
		if p, ok := k.Lookup(key); !ok || p.Name != want {
			t.Errorf("Lookup(new key) = %v, %v, want %s", p, ok, want)
		}
	}
	if p, _ := k.Lookup(k1); p.Allows("user_sessions") || !p.Allows("card_activity") {
		t.Errorf("scorer's sets = %v", p.FeatureSets())
	}
	if k1 == k2 || k1 == Generate() {
		t.Error("keys repeat")
	}
}
