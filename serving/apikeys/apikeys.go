// Package apikeys provides the API keys of the Tandem serving API: a key
// file that names each key and the feature sets it may read, and a lookup
// that compares a presented key with every configured key in constant time.
// Keys are kept only as SHA-256 digests once loaded, and no error or String
// method of this package ever prints one.
//
// A key file is YAML (or JSON, which is YAML too):
//
//	keys:
//	  - name: fraud-scoring          # what logs show instead of the key
//	    key: 3q2+7w-example-secret   # the bearer token, at least 16 bytes
//	    featuresets: [card_activity]
//	  - name: analytics
//	    sha256: 5e88...c1            # or the hex SHA-256 of the token
//	    featuresets: ["*"]           # every feature set
package apikeys

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
)

// ErrInvalid matches every error Parse and Load return for a key file that
// is not valid (as opposed to one that cannot be read).
var ErrInvalid = errors.New("apikeys: invalid key file")

// MinKeyLength is the shortest key accepted, in bytes.
const MinKeyLength = 16

// All is the feature-set name that grants every feature set.
const All = "*"

// Keys is a loaded key file. Its methods are safe for concurrent use.
type Keys struct {
	entries []entry
}

type entry struct {
	digest [sha256.Size]byte
	p      *Principal
}

// Principal is who a valid key belongs to.
type Principal struct {
	// Name is the key's name from the key file, safe to log.
	Name string
	all  bool
	sets map[string]bool
}

// Allows reports whether p may read the named feature set.
func (p *Principal) Allows(set string) bool { return p.all || p.sets[set] }

// FeatureSets returns the feature sets p may read ("*" for all), sorted.
func (p *Principal) FeatureSets() []string {
	if p.all {
		return []string{All}
	}
	out := make([]string, 0, len(p.sets))
	for s := range p.sets {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

type fileJSON struct {
	Keys []keyJSON `yaml:"keys"`
}

type keyJSON struct {
	Name        string   `yaml:"name"`
	Key         string   `yaml:"key"`
	SHA256      string   `yaml:"sha256"`
	FeatureSets []string `yaml:"featuresets"`
}

// Load reads and validates the key file at path.
func Load(path string) (*Keys, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load API keys: %w", err)
	}
	k, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load API keys from %s: %w", path, err)
	}
	return k, nil
}

// Parse validates a key file's contents. Every key needs a unique name,
// exactly one of key (at least MinKeyLength bytes) or sha256 (64 hex
// digits), and at least one feature set. Errors name the key by its name or
// position, never by its value.
func Parse(data []byte) (*Keys, error) {
	var f fileJSON
	if err := yaml.UnmarshalWithOptions(data, &f, yaml.DisallowUnknownField()); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, yamlMessage(err))
	}
	if len(f.Keys) == 0 {
		return nil, fmt.Errorf("%w: no keys (want keys: [{name, key, featuresets}, ...])", ErrInvalid)
	}
	k := &Keys{}
	var errs []error
	names := make(map[string]bool)
	digests := make(map[[sha256.Size]byte]string)
	for i, kj := range f.Keys {
		where := fmt.Sprintf("keys[%d]", i)
		if kj.Name != "" {
			where = fmt.Sprintf("keys[%d] (%s)", i, kj.Name)
		}
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalid, where, fmt.Sprintf(format, args...)))
		}
		if kj.Name == "" {
			bad("name is empty")
		} else if names[kj.Name] {
			bad("duplicate name")
		}
		names[kj.Name] = true
		var d [sha256.Size]byte
		switch {
		case kj.Key != "" && kj.SHA256 != "":
			bad("give key or sha256, not both")
			continue
		case kj.Key != "":
			if len(kj.Key) < MinKeyLength {
				bad("key is shorter than %d bytes", MinKeyLength)
				continue
			}
			d = sha256.Sum256([]byte(kj.Key))
		case kj.SHA256 != "":
			b, err := hex.DecodeString(kj.SHA256)
			if err != nil || len(b) != sha256.Size {
				bad("sha256 is not 64 hex digits")
				continue
			}
			copy(d[:], b)
		default:
			bad("no key or sha256")
			continue
		}
		if other, dup := digests[d]; dup {
			bad("same key as %s", other)
			continue
		}
		digests[d] = where
		p := &Principal{Name: kj.Name, sets: make(map[string]bool)}
		for _, s := range kj.FeatureSets {
			if s == All {
				p.all = true
			} else if s == "" {
				bad("empty feature-set name")
			} else {
				p.sets[s] = true
			}
		}
		if len(kj.FeatureSets) == 0 {
			bad("featuresets is empty (list feature sets, or \"*\" for all)")
		}
		k.entries = append(k.entries, entry{digest: d, p: p})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return k, nil
}

// CheckFeatureSets reports keys that name a feature set not among known,
// which is most likely a typo in the key file.
func (k *Keys) CheckFeatureSets(known []string) error {
	var errs []error
	for _, e := range k.entries {
		for _, s := range e.p.FeatureSets() {
			if s != All && !slices.Contains(known, s) {
				errs = append(errs, fmt.Errorf("%w: key %s: unknown feature set %q (loaded: %s)", ErrInvalid, e.p.Name, s, strings.Join(known, ", ")))
			}
		}
	}
	return errors.Join(errs...)
}

// Len is the number of keys.
func (k *Keys) Len() int { return len(k.entries) }

// Lookup returns the principal of key. It hashes key and compares the
// digest with every configured digest using crypto/subtle, without an early
// exit, so neither the time taken nor its variation with the key's length
// tells which key matched or how much of one.
func (k *Keys) Lookup(key string) (*Principal, bool) {
	d := sha256.Sum256([]byte(key))
	found := -1
	for i := range k.entries {
		eq := subtle.ConstantTimeCompare(d[:], k.entries[i].digest[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return nil, false
	}
	return k.entries[found].p, true
}

// yamlMessage describes a YAML error by line and message only: the library's
// own formatting quotes the source, which holds keys.
func yamlMessage(err error) string {
	var ye yaml.Error
	if errors.As(err, &ye) {
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			return fmt.Sprintf("line %d: %s", tk.Position.Line, ye.GetMessage())
		}
		return ye.GetMessage()
	}
	return "not a valid YAML or JSON key file"
}
