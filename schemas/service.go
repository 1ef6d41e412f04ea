package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// ServicesDir is the subdirectory of a directory of feature-set definitions
// that holds the feature services using them (schemas/services/ beside
// schemas/*.yaml). LoadAll does not descend into it.
const ServicesDir = "services"

// The keys of each mapping of a feature-service definition. Keys may be
// added, never renamed.
var (
	serviceKeys      = []string{"name", "description", "features", "derived"}
	serviceEntryKeys = []string{"featureset", "key", "features"}
)

// Service is one loaded and validated feature-service definition: the
// features a model uses, taken from one or more feature sets, and the
// request (or training spine) column that holds each set's entity key.
// LoadService, LoadServices and ParseService are the only constructors; a
// Service is read-only after.
type Service struct {
	Name        string
	Description string
	Entries     []ServiceEntry // in file order, one per feature set
	// Derived are the service's own derived features (YAML key derived),
	// over its feature columns (see service_derived.go).
	Derived []Derived
	// File is the path the definition was loaded from ("" if parsed from bytes).
	File string

	nameLine int
	width    int // len(FeatureColumns())
}

// ServiceEntry is the part of a service that one feature set provides.
type ServiceEntry struct {
	Set *FeatureSet
	// Keys are the request or spine columns that hold the parts of the
	// set's entity key, in key order (one for a single key): YAML key
	// `key`, a column name or, for a composite key, a list of one per
	// part; by default the names of the set's key fields.
	Keys []string
	// Features are the stored features used, in the order listed.
	Features []Feature
	// Outputs are the output indexes (FeatureSet.Output) of every feature
	// listed, stored or derived, in the order listed.
	Outputs []int
}

// KeyColumns are the entry's key columns (Keys), each with the type of the
// set's key field it holds (String or Int64).
func (e ServiceEntry) KeyColumns() []Column {
	cols := e.Set.KeyColumns()
	for i := range cols {
		cols[i].Name = e.Keys[i]
	}
	return cols
}

// FeatureNames returns the names of e's features, in order.
func (e ServiceEntry) FeatureNames() []string {
	names := make([]string, len(e.Outputs))
	for i, o := range e.Outputs {
		names[i] = e.Set.OutputName(o)
	}
	return names
}

// Column is a named, typed column.
type Column struct {
	Name string
	Type Type
}

// Keys returns the key columns of the service, each once, in order of first
// use. The loader guarantees that every entry keyed by one column agrees on
// its type.
func (s *Service) Keys() []Column {
	var cols []Column
	for _, e := range s.Entries {
		for _, k := range e.KeyColumns() {
			if !slices.ContainsFunc(cols, func(c Column) bool { return c.Name == k.Name }) {
				cols = append(cols, k)
			}
		}
	}
	return cols
}

// Sets returns the feature sets the service uses, in order.
func (s *Service) Sets() []*FeatureSet {
	sets := make([]*FeatureSet, len(s.Entries))
	for i, e := range s.Entries {
		sets[i] = e.Set
	}
	return sets
}

// FeatureColumn is the column name of a feature of a set in a training set
// and in full feature names: "<featureset>__<feature>". The loader rejects
// a service in which two features would get the same column (set a__b's
// feature c and set a's feature b__c).
func FeatureColumn(set, feature string) string { return set + "__" + feature }

// serviceJSON is the JSON form of a Service, as the serving API returns it.
type serviceJSON struct {
	Name        string             `json:"name"`
	Description string             `json:"description,omitempty"`
	Keys        []fieldJSON        `json:"keys"`
	Features    []serviceEntryJSON `json:"features"`
	Derived     []derivedJSON      `json:"derived,omitempty"`
}

type serviceEntryJSON struct {
	FeatureSet string      `json:"featureset"`
	Key        string      `json:"key,omitempty"`
	KeyType    string      `json:"key_type,omitempty"`
	Keys       []fieldJSON `json:"keys"`
	Features   []string    `json:"features"`
}

// MarshalJSON encodes s as {"name", "description", "keys": [{"name",
// "type"}], "features": [{"featureset", "key", "key_type", "keys",
// "features"}], "derived": [{"name", "expr", "result_type"}]}: each
// entry's "keys" are its key columns, one per part of the set's entity
// key; "key" and "key_type" name the one column of a single-key set
// (omitted for a composite key); derived only when there are any.
func (s *Service) MarshalJSON() ([]byte, error) {
	j := serviceJSON{Name: s.Name, Description: s.Description, Keys: []fieldJSON{}}
	for _, c := range s.Keys() {
		j.Keys = append(j.Keys, fieldJSON{Name: c.Name, Type: c.Type.String()})
	}
	for _, e := range s.Entries {
		je := serviceEntryJSON{FeatureSet: e.Set.Name, Features: e.FeatureNames()}
		for _, c := range e.KeyColumns() {
			je.Keys = append(je.Keys, fieldJSON{Name: c.Name, Type: c.Type.String()})
		}
		if len(je.Keys) == 1 {
			je.Key, je.KeyType = je.Keys[0].Name, je.Keys[0].Type
		}
		j.Features = append(j.Features, je)
	}
	for _, d := range s.Derived {
		j.Derived = append(j.Derived, derivedJSON{Name: d.Name, Expr: d.Expr, ResultType: d.Type.String()})
	}
	return json.Marshal(j)
}

// LoadService reads the feature-service definition in the YAML file at path
// and validates it against sets, the feature sets it may use. Errors are as
// for Load: an error matching ErrInvalid listing every problem as a
// *DefinitionError ("path:line: field: reason").
func LoadService(path string, sets []*FeatureSet) (*Service, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load feature service: %w", err)
	}
	return ParseService(path, data, sets)
}

// LoadServiceWithSets loads the feature service at path together with the
// feature sets it uses. They are loaded with LoadAll from setPaths or, when
// none is given, from the directory that holds the service's ServicesDir
// (schemas/services/fraud_model.yaml uses the sets of schemas/).
func LoadServiceWithSets(path string, setPaths ...string) (*Service, error) {
	if len(setPaths) == 0 {
		setPaths = []string{filepath.Dir(filepath.Dir(path))}
	}
	sets, err := LoadAll(setPaths...)
	if err != nil {
		return nil, err
	}
	return LoadService(path, sets)
}

// LoadServices loads the feature services defined by paths (YAML files or
// directories of them, as for LoadAll) against sets. Every file is loaded
// even when some fail; the error joins all problems. Two definitions with
// the same service name are an error.
func LoadServices(sets []*FeatureSet, paths ...string) ([]*Service, error) {
	files, errs := yamlFiles("feature services", paths)
	load := func(path string) (*Service, error) { return LoadService(path, sets) }
	return loadFiles(files, errs, "feature service", load, func(svc *Service) (string, string, int) {
		return svc.Name, svc.File, svc.nameLine
	})
}

// LoadServicesBeside loads the feature services that live beside the
// feature sets of setPaths: those of the ServicesDir subdirectory of each
// directory among setPaths that has one (schemas/services/ for schemas/),
// against sets. No such subdirectory means no services, not an error.
func LoadServicesBeside(sets []*FeatureSet, setPaths ...string) ([]*Service, error) {
	var dirs []string
	for _, p := range setPaths {
		if st, err := os.Stat(p); err != nil || !st.IsDir() {
			continue // a definition file (LoadAll reports a bad path)
		}
		dir := filepath.Join(p, ServicesDir)
		switch _, err := os.Stat(dir); {
		case err == nil:
			dirs = append(dirs, dir)
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("load feature services: %w", err)
		}
	}
	if len(dirs) == 0 {
		return nil, nil
	}
	return LoadServices(sets, dirs...)
}

// ParseService validates data, a feature-service definition in YAML, against
// sets and returns the Service it defines. file names the definition in
// error messages and Service.File; it may be "".
func ParseService(file string, data []byte, sets []*FeatureSet) (*Service, error) {
	p := &defParser{file: file}
	svc := p.parseService(data, sets)
	if err := p.err(); err != nil {
		return nil, err
	}
	return svc, nil
}

// reservedColumn cannot be a key column: the serving API's GET takes the
// instant of a read as ?at=.
const reservedColumn = "at"

// keyUse is the first entry of a service keyed by a column.
type keyUse struct {
	t    Type
	set  string
	line int
}

func (p *defParser) parseService(data []byte, sets []*FeatureSet) *Service {
	root := p.document(data, "empty definition (want name and features)")
	if root == nil {
		return nil
	}
	switch v := p.resolve(root).(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
	default:
		p.errorf(root, "", "a feature-service definition must be a mapping (name: ..., features: ...), got %s", describe(v))
		return nil
	}
	top, ok := p.object(root, "", false, serviceKeys...)
	if !ok {
		return nil
	}
	svc := &Service{File: p.file}
	svc.Name, svc.nameLine = p.name(top, root)
	if e, ok := top["description"]; ok {
		if s, ok := p.scalar(e.value, "description"); ok {
			svc.Description = strings.TrimSpace(s)
		}
	}

	byName := make(map[string]*FeatureSet, len(sets))
	names := make([]string, len(sets))
	for i, fs := range sets {
		byName[fs.Name] = fs
		names[i] = fs.Name
	}
	e, ok := p.required(top, root, "", "features")
	if !ok {
		return svc
	}
	items, ok := p.sequence(e.value, "features")
	if ok && len(items) == 0 {
		p.errorf(e.value, "features", "list at least one feature set and its features")
	}
	sp := &serviceParser{defParser: p, byName: byName, names: names,
		setLine: make(map[string]int), keys: make(map[string]keyUse), columns: make(map[string]int)}
	for i, item := range items {
		if entry, ok := sp.entry(item, fmt.Sprintf("features[%d]", i)); ok {
			svc.Entries = append(svc.Entries, entry)
		}
	}
	if d, ok := top["derived"]; ok && len(p.errs) == 0 {
		sp.serviceDerived(svc, d.value)
	}
	svc.width = len(svc.FeatureColumns())
	return svc
}

// serviceParser holds what the entries of one service definition are
// checked against.
type serviceParser struct {
	*defParser
	byName  map[string]*FeatureSet
	names   []string          // of the loaded sets
	setLine map[string]int    // set listed → line
	keys    map[string]keyUse // key column → first use
	columns map[string]int    // FeatureColumn → line
}

// entry parses the entry at n (path field).
func (p *serviceParser) entry(n ast.Node, field string) (ServiceEntry, bool) {
	byName, names, setLine := p.byName, p.names, p.setLine
	m, ok := p.object(n, field, false, serviceEntryKeys...)
	if !ok {
		return ServiceEntry{}, false
	}
	var entry ServiceEntry
	var setNode ast.Node = n
	if fe, ok := p.required(m, n, field, "featureset"); ok {
		setNode = fe.value
		path := field + ".featureset"
		if s, ok := p.scalar(fe.value, path); ok {
			switch fs, line := byName[s], setLine[s]; {
			case fs == nil:
				if h := suggest(s, names); h != "" {
					p.errorf(fe.value, path, "unknown feature set %q (did you mean %s?)", s, h)
				} else {
					p.errorf(fe.value, path, "unknown feature set %q (loaded: %s)", s, strings.Join(names, ", "))
				}
			case line > 0:
				p.errorf(fe.value, path, "feature set %q is listed twice (first at line %d); list all its features in one entry", s, line)
			default:
				setLine[s] = nodeLine(fe.value)
				entry.Set = fs
			}
		}
	}

	keyOK := p.entryKeys(&entry, m, setNode, field)

	featsOK := false
	if fe, ok := p.required(m, n, field, "features"); ok {
		featsOK = p.features(&entry, fe.value, field+".features")
	}
	return entry, entry.Set != nil && keyOK && featsOK
}

// entryKeys parses the key columns of entry (YAML key `key` of m; n is the
// entry's set node, for errors of a missing key): one column, or a list of
// one per part of the set's entity key; by default the key field names.
// Every column keeps one type across the service's entries.
func (p *serviceParser) entryKeys(entry *ServiceEntry, m map[string]entry, n ast.Node, field string) bool {
	keyNodes := []ast.Node{}
	ke, given := m["key"]
	path := field + ".key"
	switch {
	case !given && entry.Set != nil:
		entry.Keys = slices.Clone(entry.Set.Entity.Keys)
		for range entry.Keys {
			keyNodes = append(keyNodes, n)
		}
	case !given:
		return true
	default:
		items := []ast.Node{ke.value}
		if seq, ok := p.resolve(ke.value).(*ast.SequenceNode); ok {
			items = seq.Values
		}
		ok := true
		for i, item := range items {
			ipath := path
			if len(items) > 1 || items[0] != ke.value {
				ipath = fmt.Sprintf("%s[%d]", path, i)
			}
			s, sok := p.scalar(item, ipath)
			switch {
			case !sok:
				ok = false
			case !isFieldName(s):
				p.errorf(item, ipath, "bad column name %q (want a letter or _, then letters, digits or _)", s)
				ok = false
			case s == reservedColumn:
				p.errorf(item, ipath, "key column %q is reserved: it names the instant of a serving request; key the set by another column", reservedColumn)
				ok = false
			case slices.Contains(entry.Keys, s):
				p.errorf(item, ipath, "key column %q is listed twice; give one column per key part", s)
				ok = false
			default:
				entry.Keys = append(entry.Keys, s)
				keyNodes = append(keyNodes, item)
			}
		}
		if !ok {
			return false
		}
		if entry.Set != nil && len(entry.Keys) != len(entry.Set.Entity.Keys) {
			if len(entry.Set.Entity.Keys) == 1 {
				p.errorf(ke.value, path, "feature set %s has a single key (%s): give one key column, not %d", entry.Set.Name, entry.Set.Entity.Keys[0], len(entry.Keys))
			} else {
				p.errorf(ke.value, path, "feature set %s has a composite key %s: give a list of %d key columns, one per part, in that order", entry.Set.Name, entry.Set.Entity.KeyName(), len(entry.Set.Entity.Keys))
			}
			return false
		}
	}
	if entry.Set == nil {
		return true
	}
	if len(entry.Keys) == 1 && entry.Keys[0] == reservedColumn {
		p.errorf(keyNodes[0], path, "key column %q is reserved: it names the instant of a serving request; key the set by another column", reservedColumn)
		return false
	}
	ok := true
	for i, col := range entry.KeyColumns() {
		if prev, seen := p.keys[col.Name]; !seen {
			p.keys[col.Name] = keyUse{t: col.Type, set: entry.Set.Name, line: nodeLine(keyNodes[i])}
		} else if prev.t != col.Type {
			p.errorf(keyNodes[i], path, "key column %q holds %s keys of feature set %s (entity key %s) here, but %s keys of feature set %s at line %d; key them by separate columns",
				col.Name, col.Type, entry.Set.Name, entry.Set.Entity.Keys[i], prev.t, prev.set, prev.line)
			ok = false
		}
	}
	return ok
}

// features parses the feature list at n (path field) of entry.
func (p *serviceParser) features(entry *ServiceEntry, n ast.Node, field string) bool {
	items, ok := p.sequence(n, field)
	if !ok {
		return false
	}
	if len(items) == 0 {
		p.errorf(n, field, "list at least one feature")
		return false
	}
	fs := entry.Set
	var names []string
	if fs != nil {
		names = make([]string, fs.Outputs())
		for i := range names {
			names[i] = fs.OutputName(i)
		}
	}
	firstLine := make(map[string]int, len(items))
	for i, item := range items {
		path := fmt.Sprintf("%s[%d]", field, i)
		s, sok := p.scalar(item, path)
		if !sok {
			ok = false
			continue
		}
		if line, dup := firstLine[s]; dup {
			p.errorf(item, path, "feature %q is listed twice (first at line %d)", s, line)
			ok = false
			continue
		}
		firstLine[s] = nodeLine(item)
		if fs == nil {
			continue
		}
		o, found := fs.Output(s)
		if !found {
			if h := suggest(s, names); h != "" {
				p.errorf(item, path, "feature set %s has no feature %q (did you mean %s?)", fs.Name, s, h)
			} else {
				p.errorf(item, path, "feature set %s has no feature %q (it has %s)", fs.Name, s, strings.Join(names, ", "))
			}
			ok = false
			continue
		}
		col := FeatureColumn(fs.Name, s)
		if line, dup := p.columns[col]; dup {
			p.errorf(item, path, "feature column %q is also the column of the feature at line %d; rename a feature set or feature", col, line)
			ok = false
			continue
		}
		p.columns[col] = nodeLine(item)
		if o < len(fs.Features) {
			entry.Features = append(entry.Features, fs.Features[o])
		}
		entry.Outputs = append(entry.Outputs, o)
	}
	return ok
}
