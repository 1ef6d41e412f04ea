// Package apikeys provides the API keys of the Tandem serving API: a key
// file that names each key and the feature sets it may read, and a lookup
// that compares a presented key with every configured key in constant time.
// Keys are kept only as SHA-256 digests once loaded, and no error or String
// method of this package ever prints one.
//
// A key file is YAML (or JSON, which is YAML too):
//
//	keys:
//	  - name: fraud-scoring              # what logs show instead of the key
//	    sha256: "5e88...c1"              # the hex SHA-256 of the token
//	    featuresets: [card_activity]
//	  - name: analytics
//	    key: "3q2+7w-example-secret"     # or the token itself, at least 16 bytes
//	    featuresets: ["*"]               # every feature set
//
// Prefer sha256 entries, made by AppendNew (`serve keygen`), which
// generates a random key of 32 bytes (tdk_ and 43 base64url characters),
// prints it once and stores only its digest: a digest does not show how
// strong its key is, so a sha256 entry should only ever be a generated
// key's. Whatever the entries, Lookup never accepts a key shorter than
// MinKeyLength. Quote keys: YAML reads some unquoted text as numbers, and
// Parse rejects those rather than guess. Keep the file private (mode
// 0600); Load warns when its group or others may read it.
package apikeys

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
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

// Load reads and validates the key file at path. It warns on log (the
// default logger when nil) when the file is readable by its group or by
// others: it names the keys and what they may read, and holds the keys
// themselves unless every entry is a sha256.
func Load(path string, log *slog.Logger) (*Keys, error) {
	if log == nil {
		log = slog.Default()
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load API keys: %w", err)
	}
	k, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load API keys from %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the API key file is readable by its group or others; make it private (chmod 600)", "file", path, "mode", fi.Mode().Perm().String())
	}
	return k, nil
}

// Parse validates a key file's contents. Every key needs a unique name,
// exactly one of key (at least MinKeyLength bytes) or sha256 (exactly 64
// hex digits), and at least one feature set. name, key and sha256 must be
// YAML strings: an unquoted value that YAML reads as something else (0x1F,
// 1_000, 0o17, 1e3, true, null) is an error, not silently turned into
// other text. Errors give the line and the key's name or position, never
// a key's value, and quote no text of the file.
func Parse(data []byte) (*Keys, error) {
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, syntaxMessage(err))
	}
	var root ast.Node
	for _, d := range file.Docs {
		if d != nil && d.Body != nil {
			root = d.Body
			break
		}
	}
	if root == nil {
		return nil, fmt.Errorf("%w: no keys (want keys: [{name, key, featuresets}, ...])", ErrInvalid)
	}
	p := &fileParser{}
	var items []ast.Node
	for _, mv := range p.mapping(root, "the file") {
		switch name := p.keyName(mv); name {
		case "keys":
			items = p.sequence(mv.Value, "keys")
		case "":
		default:
			p.errorf(mv.Key, "unknown field (want keys)")
		}
	}
	if len(items) == 0 && len(p.errs) == 0 {
		return nil, fmt.Errorf("%w: no keys (want keys: [{name, key, featuresets}, ...])", ErrInvalid)
	}
	k := &Keys{}
	names := make(map[string]bool)
	digests := make(map[[sha256.Size]byte]string)
	for i, item := range items {
		var name, key, digest string
		var sets []string
		var nameNode, keyNode, digestNode, setsNode ast.Node
		where := fmt.Sprintf("keys[%d]", i)
		fields := p.mapping(item, where)
		var unknown []ast.Node
		for _, mv := range fields {
			switch p.keyName(mv) {
			case "name":
				nameNode = mv.Value
			case "key":
				keyNode = mv.Value
			case "sha256":
				digestNode = mv.Value
			case "featuresets":
				setsNode = mv.Value
			case "":
			default:
				unknown = append(unknown, mv.Key)
			}
		}
		nameOK, keyOK, digestOK := true, true, true
		if nameNode != nil {
			name, nameOK = p.str(nameNode, where+".name")
			if name != "" {
				where = fmt.Sprintf("keys[%d] (%s)", i, name)
			}
		}
		for _, n := range unknown {
			p.errorf(n, "%s: unknown field (want name, key, sha256, featuresets)", where)
		}
		if keyNode != nil {
			key, keyOK = p.str(keyNode, where+".key")
		}
		if digestNode != nil {
			digest, digestOK = p.str(digestNode, where+".sha256")
		}
		if !nameOK || !keyOK || !digestOK {
			continue // reported; no further errors about what it would be
		}
		setsOK := true
		if setsNode != nil {
			for j, n := range p.sequence(setsNode, where+".featuresets") {
				s, ok := p.str(n, fmt.Sprintf("%s.featuresets[%d]", where, j))
				setsOK = setsOK && ok
				sets = append(sets, s)
			}
		}
		at := item
		switch {
		case name == "":
			p.errorf(at, "%s: name is empty", where)
		case names[name]:
			p.errorf(nameNode, "%s: duplicate name", where)
		}
		names[name] = true
		var d [sha256.Size]byte
		switch {
		case keyNode != nil && digestNode != nil:
			p.errorf(at, "%s: give key or sha256, not both", where)
			continue
		case keyNode != nil:
			if len(key) < MinKeyLength {
				p.errorf(keyNode, "%s: key is shorter than %d bytes", where, MinKeyLength)
				continue
			}
			d = sha256.Sum256([]byte(key))
		case digestNode != nil:
			b, err := hex.DecodeString(digest)
			if err != nil || len(digest) != 2*sha256.Size {
				p.errorf(digestNode, "%s: sha256 is not 64 hex digits", where)
				continue
			}
			copy(d[:], b)
		default:
			p.errorf(at, "%s: no key or sha256", where)
			continue
		}
		if other, dup := digests[d]; dup {
			p.errorf(at, "%s: same key as %s", where, other)
			continue
		}
		digests[d] = where
		pr := &Principal{Name: name, sets: make(map[string]bool)}
		for _, s := range sets {
			if s == All {
				pr.all = true
			} else if s == "" && setsOK {
				p.errorf(setsNode, "%s: empty feature-set name", where)
			} else {
				pr.sets[s] = true
			}
		}
		if len(sets) == 0 && setsOK {
			p.errorf(at, "%s: featuresets is empty (list feature sets, or \"*\" for all)", where)
		}
		k.entries = append(k.entries, entry{digest: d, p: pr})
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return k, nil
}

// fileParser walks a key file's YAML nodes, collecting errors.
type fileParser struct {
	errs []error
}

func (p *fileParser) errorf(n ast.Node, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%w: line %d: %s", ErrInvalid, line(n), fmt.Sprintf(format, args...)))
}

func line(n ast.Node) int {
	if n != nil {
		if tk := n.GetToken(); tk != nil && tk.Position != nil && tk.Position.Line > 0 {
			return tk.Position.Line
		}
	}
	return 1
}

// mapping returns the key: value pairs of n, a mapping.
func (p *fileParser) mapping(n ast.Node, what string) []*ast.MappingValueNode {
	switch v := n.(type) {
	case *ast.MappingNode:
		return v.Values
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{v}
	}
	p.errorf(n, "%s: want a mapping, got %s", what, describe(n))
	return nil
}

// sequence returns the items of n, a list.
func (p *fileParser) sequence(n ast.Node, what string) []ast.Node {
	if v, ok := n.(*ast.SequenceNode); ok {
		return v.Values
	}
	p.errorf(n, "%s: want a list, got %s", what, describe(n))
	return nil
}

// keyName is the name of a mapping key, "" after reporting one that is not
// a plain name.
func (p *fileParser) keyName(mv *ast.MappingValueNode) string {
	if s, ok := mv.Key.(*ast.StringNode); ok {
		return s.Value
	}
	p.errorf(mv.Key, "want a field name, got %s", describe(mv.Key))
	return ""
}

// str returns the string n holds, which must be a YAML string (quoted, or
// plain text that YAML reads as a string).
func (p *fileParser) str(n ast.Node, what string) (string, bool) {
	if s, ok := n.(*ast.StringNode); ok {
		return s.Value, true
	}
	p.errorf(n, "%s: want a quoted string, got %s (YAML reads unquoted 0x…, 0o…, 1_000, 1e3, true or null as other types)", what, describe(n))
	return "", false
}

// describe names the kind of a node without its text.
func describe(n ast.Node) string {
	switch n.(type) {
	case nil, *ast.NullNode:
		return "null"
	case *ast.IntegerNode, *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "a bool"
	case *ast.StringNode:
		return "a string"
	case *ast.LiteralNode:
		return "a block scalar"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.TagNode:
		return "a tagged value"
	case *ast.AnchorNode, *ast.AliasNode:
		return "an anchor or alias"
	}
	return "another YAML value"
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
// tells which key matched or how much of one. A key shorter than
// MinKeyLength never matches, so that a sha256 entry cannot admit a short
// key either.
func (k *Keys) Lookup(key string) (*Principal, bool) {
	if len(key) < MinKeyLength {
		// No key this short is accepted, whatever the file's sha256
		// entries are digests of.
		return nil, false
	}
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

// syntaxMessage describes a YAML syntax error by its position only: the
// parser's messages and formatting may quote the source, which holds keys.
func syntaxMessage(err error) string {
	var ye yaml.Error
	if errors.As(err, &ye) {
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			return fmt.Sprintf("line %d column %d: not valid YAML or JSON", tk.Position.Line, tk.Position.Column)
		}
	}
	return "not valid YAML or JSON"
}
