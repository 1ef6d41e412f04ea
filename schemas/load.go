package schemas

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
)

// Load reads the feature-set definition in the YAML file at path and
// validates it. A definition that is not valid gives an error matching
// ErrInvalid that lists every problem found, each a *DefinitionError
// ("path:line: field: reason"), joined with errors.Join.
func Load(path string) (*FeatureSet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load feature set: %w", err)
	}
	return Parse(path, data)
}

// Parse validates data, a feature-set definition in YAML, and returns the
// FeatureSet it defines. file names the definition in error messages and
// FeatureSet.File, and relative batch file globs are resolved against its
// directory; it may be "" for a definition that comes from no file (globs
// then stay as written). Errors are as for Load.
func Parse(file string, data []byte) (*FeatureSet, error) {
	p := &defParser{file: file}
	fs := p.parse(data)
	if err := p.err(); err != nil {
		return nil, err
	}
	fs.index()
	return fs, nil
}

// LoadAll loads the feature sets defined by paths, each a YAML file or a
// directory whose *.yaml and *.yml files (not its subdirectories) are
// definitions, in the order given and, within a directory, by file name.
// Every file is loaded even when some fail; the error joins all problems.
// Two definitions with the same feature-set name are an error.
func LoadAll(paths ...string) ([]*FeatureSet, error) {
	files, errs := yamlFiles("feature sets", paths)
	return loadFiles(files, errs, "feature set", Load, func(fs *FeatureSet) (string, string, int) {
		return fs.Name, fs.File, fs.nameLine
	})
}

// loadFiles loads every file with load, even when some fail, and checks
// that the definitions' names (id gives name, file and line) are unique;
// kind names the definitions in that error. errs are earlier problems to
// report with these; the error joins them all.
func loadFiles[T any](files []string, errs []error, kind string, load func(string) (T, error), id func(T) (name, file string, line int)) ([]T, error) {
	var defs []T
	byName := make(map[string]T)
	for _, f := range files {
		d, err := load(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		name, file, line := id(d)
		if prev, ok := byName[name]; ok {
			_, prevFile, prevLine := id(prev)
			errs = append(errs, &DefinitionError{
				File: file, Line: line, Field: "name",
				Reason: fmt.Sprintf("duplicate %s name %q (also defined at %s:%d)", kind, name, prevFile, prevLine),
			})
			continue
		}
		byName[name] = d
		defs = append(defs, d)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return defs, nil
}

// yamlFiles lists the definition files that paths name, each a YAML file or
// a directory whose *.yaml and *.yml files (not its subdirectories) count,
// in the order given and, within a directory, by file name; a file named
// twice is listed once. A path that cannot be read or a directory without
// definitions is an error (what names the definitions in it); the files
// that could be listed are returned too.
func yamlFiles(what string, paths []string) ([]string, []error) {
	var (
		files []string
		seen  = make(map[string]bool)
		errs  []error
	)
	add := func(f string) {
		if c := filepath.Clean(f); !seen[c] {
			seen[c] = true
			files = append(files, f)
		}
	}
	for _, path := range paths {
		st, err := os.Stat(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("load %s: %w", what, err))
			continue
		}
		if !st.IsDir() {
			add(path)
			continue
		}
		entries, err := os.ReadDir(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("load %s: %w", what, err))
			continue
		}
		n := 0
		for _, e := range entries {
			name := e.Name()
			ext := filepath.Ext(name)
			if e.IsDir() || strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml") {
				continue
			}
			add(filepath.Join(path, name))
			n++
		}
		if n == 0 {
			errs = append(errs, fmt.Errorf("load %s: no *.yaml or *.yml files in %s", what, path))
		}
	}
	return files, errs
}

// defParser turns the YAML syntax tree of one definition into a FeatureSet,
// collecting every problem as a *DefinitionError with the line of the node
// at fault.
type defParser struct {
	file    string
	errs    []*DefinitionError
	anchors map[string]ast.Node
}

// err joins the problems recorded, sorted by line, or returns nil.
func (p *defParser) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(p.errs, func(a, b *DefinitionError) int { return a.Line - b.Line })
	errs := make([]error, len(p.errs))
	for i, e := range p.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

func (p *defParser) errorf(n ast.Node, field, format string, args ...any) {
	p.errs = append(p.errs, &DefinitionError{File: p.file, Line: nodeLine(n), Field: field, Reason: fmt.Sprintf(format, args...)})
}

// nodeLine is the 1-based line where n starts.
func nodeLine(n ast.Node) int {
	if n != nil {
		if tk := n.GetToken(); tk != nil && tk.Position != nil && tk.Position.Line > 0 {
			return tk.Position.Line
		}
	}
	return 1
}

// syntaxError records a YAML syntax error with its line.
func (p *defParser) syntaxError(err error) {
	line, msg := 1, err.Error()
	var ye yaml.Error
	if errors.As(err, &ye) {
		msg = ye.GetMessage()
		if tk := ye.GetToken(); tk != nil && tk.Position != nil && tk.Position.Line > 0 {
			line = tk.Position.Line
		}
	}
	p.errs = append(p.errs, &DefinitionError{File: p.file, Line: line, Reason: "YAML syntax error: " + msg})
}

// collectAnchors records the anchors of a document so aliases resolve.
func (p *defParser) collectAnchors(n ast.Node) {
	p.anchors = make(map[string]ast.Node)
	ast.Walk(anchorVisitor(p.anchors), n)
}

type anchorVisitor map[string]ast.Node

func (v anchorVisitor) Visit(n ast.Node) ast.Visitor {
	if a, ok := n.(*ast.AnchorNode); ok && a.Name != nil {
		v[a.Name.String()] = a.Value
	}
	return v
}

// resolve looks through anchors, aliases and tags to the node that holds
// the value.
func (p *defParser) resolve(n ast.Node) ast.Node {
	for range 32 {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			n = v.Value
		case *ast.AliasNode:
			if v.Value == nil {
				return n
			}
			target, ok := p.anchors[v.Value.String()]
			if !ok {
				return n
			}
			n = target
		default:
			return n
		}
	}
	return n
}

// describe names the kind of a YAML node for error messages.
func describe(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.NullNode, nil:
		return "nothing"
	case *ast.AliasNode:
		return "an unknown alias"
	}
	return "a " + strings.ToLower(n.Type().String())
}

// scalar returns the text of the single value n. It reports an empty value
// or a mapping or list and returns ok false.
func (p *defParser) scalar(n ast.Node, field string) (string, bool) {
	switch v := p.resolve(n).(type) {
	case *ast.NullNode, nil:
		p.errorf(n, field, "must not be empty")
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		if v.Value == nil {
			return "", true
		}
		return v.Value.Value, true
	case *ast.MappingNode, *ast.MappingValueNode, *ast.SequenceNode, *ast.AliasNode, *ast.MergeKeyNode:
		p.errorf(n, field, "want a single value, got %s", describe(v))
	case ast.ScalarNode:
		if tk := v.GetToken(); tk != nil {
			return tk.Value, true
		}
		return fmt.Sprint(v.GetValue()), true
	default:
		p.errorf(n, field, "want a single value, got %s", describe(v))
	}
	return "", false
}

// entry is one key: value pair of a mapping.
type entry struct {
	key     string
	keyNode ast.Node
	value   ast.Node
}

// pairs returns the entries of the mapping n in file order. A null n is an
// empty mapping if optional, else an error; anything else that is not a
// mapping is an error (ok false).
func (p *defParser) pairs(n ast.Node, field string, optional bool) ([]entry, bool) {
	var values []*ast.MappingValueNode
	switch v := p.resolve(n).(type) {
	case *ast.MappingNode:
		values = v.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{v}
	case *ast.NullNode, nil:
		if optional {
			return nil, true
		}
		p.errorf(n, field, "must not be empty")
		return nil, false
	default:
		if field == "" {
			p.errorf(n, field, "a feature-set definition must be a mapping (name: ..., entity: ..., fields: ..., features: ...), got %s", describe(v))
		} else {
			p.errorf(n, field, "want a mapping (key: value lines or {key: value}), got %s", describe(v))
		}
		return nil, false
	}
	entries := make([]entry, 0, len(values))
	ok := true
	for _, mv := range values {
		switch k := p.resolve(mv.Key).(type) {
		case *ast.MergeKeyNode:
			p.errorf(mv.Key, join(field, "<<"), "merge keys are not supported")
			ok = false
		case ast.ScalarNode:
			key, kok := p.scalar(k, field)
			if !kok {
				ok = false
				continue
			}
			entries = append(entries, entry{key: key, keyNode: mv.Key, value: mv.Value})
		default:
			p.errorf(mv.Key, field, "want a plain key, got %s", describe(k))
			ok = false
		}
	}
	return entries, ok
}

// object returns the entries of mapping n by key, reporting keys that are
// not among known (with a suggestion for a likely typo).
func (p *defParser) object(n ast.Node, field string, optional bool, known ...string) (map[string]entry, bool) {
	entries, ok := p.pairs(n, field, optional)
	if !ok && entries == nil {
		return nil, false
	}
	m := make(map[string]entry, len(entries))
	for _, e := range entries {
		if !slices.Contains(known, e.key) {
			if s := suggest(e.key, known); s != "" {
				p.errorf(e.keyNode, join(field, e.key), "unknown key (did you mean %s?)", s)
			} else {
				p.errorf(e.keyNode, join(field, e.key), "unknown key (want one of %s)", strings.Join(known, ", "))
			}
			continue
		}
		m[e.key] = e
	}
	return m, true
}

// sequence returns the items of the list n.
func (p *defParser) sequence(n ast.Node, field string) ([]ast.Node, bool) {
	switch v := p.resolve(n).(type) {
	case *ast.SequenceNode:
		return v.Values, true
	default:
		p.errorf(n, field, "want a list, got %s", describe(v))
		return nil, false
	}
}

// required reports a missing key of the mapping at n.
func (p *defParser) required(m map[string]entry, n ast.Node, field, key string) (entry, bool) {
	e, ok := m[key]
	if !ok {
		p.errorf(n, join(field, key), "required key is missing")
	}
	return e, ok
}

// join appends key to the field path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest returns the element of known closest to s if it is close enough to
// be a typo of it, else "".
func suggest(s string, known []string) string {
	best, bestD := "", 1<<30
	for _, k := range known {
		if d := editDistance(s, k); d < bestD {
			best, bestD = k, d
		}
	}
	if bestD <= 2 || bestD <= len(best)/3 {
		return best
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
