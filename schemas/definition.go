package schemas

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	yamlparser "github.com/goccy/go-yaml/parser"
)

// The keys of each mapping of a definition. Keys may be added, never renamed.
var (
	topKeys      = []string{"name", "entity", "event_time", "fields", "sources", "allowed_lateness", "max_future", "retention", "stale_after", "features", "derived"}
	entityKeys   = []string{"name", "key"}
	sourcesKeys  = []string{"batch", "stream"}
	batchKeys    = []string{"bigquery", "files"}
	bigqueryKeys = []string{"table", "query"}
	streamKeys   = []string{"pubsub"}
	pubsubKeys   = []string{"subscription"}
	featureKeys  = []string{"name", "op", "field", "where", "window", "tile", "k", "percentiles", "buckets"}
	derivedKeys  = []string{"name", "expr"}
)

var (
	// project IDs are 6 to 30 characters in Google Cloud; emulators and
	// fakes accept shorter ones, so only the alphabet is checked, with an
	// optional domain prefix ("example.com:my-project").
	projectPattern  = `(?:[a-z][a-z0-9.-]*:)?[a-z][a-z0-9-]{0,62}`
	bigQueryTableRE = regexp.MustCompile(`^` + projectPattern + `\.[A-Za-z0-9_]+\.[\p{L}\p{M}\p{N}\p{Pc}\p{Pd}\p{Zs}]+$`)
)

// isName reports whether s is a valid feature-set, entity or feature name:
// [a-z][a-z0-9_]*.
func isName(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// isFieldName reports whether s is a valid event field name:
// [A-Za-z_][A-Za-z0-9_]*.
func isFieldName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

const (
	badNameReason      = "bad name %q (want a lowercase letter, then lowercase letters, digits or _)"
	badFieldNameReason = "bad field name %q (want a letter or _, then letters, digits or _)"
)

func opList() string {
	s := make([]string, len(Ops))
	for i, op := range Ops {
		s[i] = string(op)
	}
	return strings.Join(s, ", ")
}

// entityKey parses entity.key at n: one field name, or a list of 2 to
// MaxKeyParts distinct ones (a composite key), each a declared string or
// int64 field. It returns the names read, even after reporting a problem.
func (p *defParser) entityKey(n ast.Node, ref func(ast.Node, string, string) (Type, bool)) []string {
	check := func(n ast.Node, field, s string) {
		if t, ok := ref(n, field, s); ok && t != String && t != Int64 {
			p.errorf(n, field, "field %q has type %s; an entity key must be string or int64", s, t)
		}
	}
	seq, isList := p.resolve(n).(*ast.SequenceNode)
	if !isList {
		s, ok := p.scalar(n, "entity.key")
		if !ok {
			return nil
		}
		check(n, "entity.key", s)
		return []string{s}
	}
	switch l := len(seq.Values); {
	case l == 0:
		p.errorf(n, "entity.key", "list at least one key field")
		return nil
	case l > MaxKeyParts:
		p.errorf(n, "entity.key", "%d key fields, more than the %d a composite key may have", l, MaxKeyParts)
	}
	var keys []string
	first := make(map[string]int, len(seq.Values))
	for i, item := range seq.Values {
		field := fmt.Sprintf("entity.key[%d]", i)
		s, ok := p.scalar(item, field)
		if !ok {
			continue
		}
		if line, dup := first[s]; dup {
			p.errorf(item, field, "field %q is listed twice (first at line %d)", s, line)
			continue
		}
		first[s] = nodeLine(item)
		check(item, field, s)
		keys = append(keys, s)
	}
	return keys
}

// parse builds the FeatureSet defined by data, or returns nil after
// recording errors.
func (p *defParser) parse(data []byte) *FeatureSet {
	root := p.document(data, "empty definition (want name, entity, event_time, fields and features)")
	if root == nil {
		return nil
	}
	top, ok := p.object(root, "", false, topKeys...)
	if !ok {
		return nil
	}
	fs := &FeatureSet{File: p.file}

	fs.Name, fs.nameLine = p.name(top, root)

	// Fields first: the entity key, the event time and the features refer
	// to them. A field with a bad type is declared with type Null so that
	// references to it report nothing more.
	types := make(map[string]Type)
	var names []string
	if e, ok := p.required(top, root, "", "fields"); ok {
		entries, ok := p.pairs(e.value, "fields", false)
		for _, f := range entries {
			path := join("fields", f.key)
			if !isFieldName(f.key) {
				p.errorf(f.keyNode, path, badFieldNameReason, f.key)
			}
			if _, dup := types[f.key]; dup {
				p.errorf(f.keyNode, path, "field declared twice")
				continue
			}
			t := Null
			if s, ok := p.scalar(f.value, path); ok {
				if t2, ok := ParseType(s); ok {
					t = t2
				} else {
					p.errorf(f.value, path, "unknown type %q (want one of string, int64, float64, bool, timestamp)", s)
				}
			}
			types[f.key] = t
			names = append(names, f.key)
			fs.Fields = append(fs.Fields, Field{Name: f.key, Type: t})
		}
		if ok && len(entries) == 0 {
			p.errorf(e.value, "fields", "declare at least one field")
		}
	}
	// ref checks that a field named at node n (path field) is declared; it
	// returns its type, or ok false after reporting.
	ref := func(n ast.Node, field, name string) (Type, bool) {
		t, ok := types[name]
		if !ok {
			hint := ""
			if s := suggest(name, names); s != "" {
				hint = fmt.Sprintf(" (did you mean %s?)", s)
			}
			p.errorf(n, field, "field %q is not declared in fields%s", name, hint)
			return Null, false
		}
		return t, t != Null
	}

	if e, ok := p.required(top, root, "", "entity"); ok {
		if m, ok := p.object(e.value, "entity", false, entityKeys...); ok {
			if n, ok := p.required(m, e.value, "entity", "name"); ok {
				if s, ok := p.scalar(n.value, "entity.name"); ok {
					if !isName(s) {
						p.errorf(n.value, "entity.name", badNameReason, s)
					}
					fs.Entity.Name = s
				}
			}
			if k, ok := p.required(m, e.value, "entity", "key"); ok {
				fs.Entity.Keys = p.entityKey(k.value, ref)
			}
		}
	}

	if e, ok := p.required(top, root, "", "event_time"); ok {
		if s, ok := p.scalar(e.value, "event_time"); ok {
			fs.EventTime = s
			if t, ok := ref(e.value, "event_time", s); ok && t != Timestamp {
				p.errorf(e.value, "event_time", "field %q has type %s; the event time must be a timestamp", s, t)
			}
		}
	}

	if e, ok := top["sources"]; ok {
		if m, ok := p.object(e.value, "sources", true, sourcesKeys...); ok {
			if b, ok := m["batch"]; ok {
				p.batchSource(&fs.Sources.Batch, b.value)
			}
			if s, ok := m["stream"]; ok {
				p.streamSource(&fs.Sources.Stream, s.value)
			}
		}
	}

	if e, ok := top["allowed_lateness"]; ok {
		if d, ok := p.duration(e.value, "allowed_lateness", false); ok {
			fs.AllowedLateness = d
		}
	}
	if e, ok := top["stale_after"]; ok {
		if d, ok := p.duration(e.value, "stale_after", true); ok {
			fs.StaleAfter = d
		}
	}
	fs.MaxFuture = DefaultMaxFuture
	if e, ok := top["max_future"]; ok {
		if d, ok := p.duration(e.value, "max_future", false); ok {
			fs.MaxFuture = d
		}
	}

	env := fs.fieldEnv()
	longest := -1                     // index in fs.Features of the feature with the longest window
	firstLine := make(map[string]int) // feature name → line
	if e, ok := p.required(top, root, "", "features"); ok {
		items, ok := p.sequence(e.value, "features")
		if ok && len(items) == 0 {
			p.errorf(e.value, "features", "define at least one feature")
		}
		for i, item := range items {
			f, ok := p.feature(item, fmt.Sprintf("features[%d]", i), ref, env, firstLine)
			if !ok {
				continue
			}
			if longest < 0 || f.Window > fs.Features[longest].Window {
				longest = len(fs.Features)
			}
			fs.Features = append(fs.Features, f)
		}
	}
	if e, ok := top["derived"]; ok && len(p.errs) == 0 {
		// Derived features refer to the features by name and type: only
		// a definition whose features are valid is worth checking.
		fs.index()
		p.derived(fs, e.value, firstLine)
	}

	var maxWindow time.Duration
	if longest >= 0 {
		maxWindow = fs.Features[longest].Window
	}

	// A read needs one tile more than its window (the window contract's
	// head), so the default retention keeps the longest Window + Tile plus
	// slack, and a given one must keep every feature's Window + Tile.
	var span time.Duration // the longest Window + Tile
	widest := -1
	for i, f := range fs.Features {
		if f.Window+f.Tile > span {
			span, widest = f.Window+f.Tile, i
		}
	}
	fs.Retention = max(maxWindow+DefaultRetentionSlack, span)
	if e, ok := top["retention"]; ok {
		if d, ok := p.duration(e.value, "retention", true); ok {
			fs.Retention = d
			if d < span {
				f := fs.Features[widest]
				p.errorf(e.value, "retention", "%s is shorter than what feature %q reads, its window %s plus one tile %s",
					FormatDuration(d), f.Name, FormatDuration(f.Window), FormatDuration(f.Tile))
			}
		}
	}
	return fs
}

// name returns the required top-level name of a definition (top, at root)
// and its line, reporting a missing or bad one.
func (p *defParser) name(top map[string]entry, root ast.Node) (string, int) {
	e, ok := p.required(top, root, "", "name")
	if !ok {
		return "", 0
	}
	s, ok := p.scalar(e.value, "name")
	if ok && !isName(s) {
		p.errorf(e.value, "name", badNameReason, s)
	}
	return s, nodeLine(e.value)
}

// document parses data, one YAML document, and returns its body with its
// anchors collected, or nil after recording a syntax error or, for a
// document without content, empty.
func (p *defParser) document(data []byte, empty string) ast.Node {
	file, err := yamlparser.ParseBytes(data, 0)
	if err != nil {
		p.syntaxError(err)
		return nil
	}
	var docs []*ast.DocumentNode
	for _, d := range file.Docs {
		if d != nil && d.Body != nil {
			docs = append(docs, d)
		}
	}
	if len(docs) == 0 {
		p.errorf(nil, "", "%s", empty)
		return nil
	}
	if len(docs) > 1 {
		p.errorf(docs[1].Body, "", "a definition file holds one YAML document, found %d", len(docs))
	}
	root := docs[0].Body
	p.collectAnchors(root)
	return root
}

// feature parses the feature at n (path field). firstLine maps the feature
// names seen so far to their lines.
func (p *defParser) feature(n ast.Node, field string, ref func(ast.Node, string, string) (Type, bool), env ExprEnv, firstLine map[string]int) (Feature, bool) {
	m, ok := p.object(n, field, false, featureKeys...)
	if !ok {
		return Feature{}, false
	}
	var f Feature
	if e, ok := p.required(m, n, field, "name"); ok {
		path := field + ".name"
		if s, ok := p.scalar(e.value, path); ok {
			f.Name = s
			if !isName(s) {
				p.errorf(e.value, path, badNameReason, s)
			} else if line, dup := firstLine[s]; dup {
				p.errorf(e.value, path, "duplicate feature name %q (first defined at line %d)", s, line)
			} else {
				firstLine[s] = nodeLine(e.value)
			}
		}
	}

	opOK := false
	if e, ok := p.required(m, n, field, "op"); ok {
		if s, ok := p.scalar(e.value, field+".op"); ok {
			f.Op = Op(s)
			if opOK = f.Op.Known(); !opOK {
				p.errorf(e.value, field+".op", "unknown op %q (want one of %s)", s, opList())
			}
		}
	}

	fe, hasField := m["field"]
	switch path := field + ".field"; {
	case opOK && !f.Op.NeedsField() && hasField:
		p.errorf(fe.value, path, "%s takes no field", f.Op)
	case opOK && f.Op.NeedsField() && !hasField:
		p.errorf(n, path, "required key is missing: %s needs a field", f.Op)
	case hasField:
		if s, ok := p.scalar(fe.value, path); ok {
			f.Field = s
			if t, ok := ref(fe.value, path, s); ok && opOK && !f.Op.Accepts(t) {
				p.errorf(fe.value, path, "%s cannot take field %q of type %s", f.Op, s, t)
			}
		}
	}

	if e, ok := m["where"]; ok {
		if s, ok := p.scalar(e.value, field+".where"); ok {
			f.Where = s
			var err error
			if f.Filter, err = CompileExpr(s, env, Bool); err != nil {
				p.errorf(e.value, field+".where", "%v", err)
			}
		}
	}

	p.opParams(m, n, field, &f, opOK)

	windowOK := false
	if e, ok := p.required(m, n, field, "window"); ok {
		f.Window, windowOK = p.duration(e.value, field+".window", true)
	}
	if e, ok := m["tile"]; ok {
		if tile, ok := p.duration(e.value, field+".tile", true); ok && windowOK {
			f.Tile = tile
			if err := checkTile(f.Window, tile); err != nil {
				p.errorf(e.value, field+".tile", "%v", err)
			}
		}
	} else if windowOK {
		f.Tile = DefaultTile(f.Window)
		if err := checkTile(f.Window, f.Tile); err != nil {
			p.errorf(m["window"].value, field+".window", "%v", err)
		}
	}
	return f, windowOK
}

// derived parses the derived features at n into fs, whose features are
// indexed. firstLine maps the feature names to their lines.
func (p *defParser) derived(fs *FeatureSet, n ast.Node, firstLine map[string]int) {
	p.derivedList(n, "derived", firstLine, func(d Derived) error {
		fs.Derived = append(fs.Derived, d)
		if err := fs.compileDerived(len(fs.Derived) - 1); err != nil {
			fs.Derived = fs.Derived[:len(fs.Derived)-1]
			return err
		}
		return nil
	}, func() { fs.Derived = fs.Derived[:len(fs.Derived)-1] }, func() []int { return fs.Derived[len(fs.Derived)-1].Inputs })
}

// derivedList parses a list of derived features (name, expr) at n (path
// field), of a feature set or a feature service: each name checked
// against firstLine (the names defined so far, with their lines), then
// add appends and compiles it, drop removes the last one added (it reads
// no feature) and inputs returns its inputs.
func (p *defParser) derivedList(n ast.Node, field string, firstLine map[string]int, add func(Derived) error, drop func(), inputs func() []int) {
	items, ok := p.sequence(n, field)
	if !ok {
		return
	}
	for i, item := range items {
		path := fmt.Sprintf("%s[%d]", field, i)
		m, ok := p.object(item, path, false, derivedKeys...)
		if !ok {
			continue
		}
		var d Derived
		e, ok := p.required(m, item, path, "name")
		if !ok {
			continue
		}
		if d.Name, ok = p.scalar(e.value, path+".name"); !ok {
			continue
		}
		if !isName(d.Name) {
			p.errorf(e.value, path+".name", badNameReason, d.Name)
			continue
		}
		if line, dup := firstLine[d.Name]; dup {
			p.errorf(e.value, path+".name", "duplicate feature name %q (first defined at line %d)", d.Name, line)
			continue
		}
		firstLine[d.Name] = nodeLine(e.value)
		x, ok := p.required(m, item, path, "expr")
		if !ok {
			continue
		}
		if d.Expr, ok = p.scalar(x.value, path+".expr"); !ok {
			continue
		}
		if err := add(d); err != nil {
			p.errorf(x.value, path+".expr", "%v", err)
			continue
		}
		if len(inputs()) == 0 {
			p.errorf(x.value, path+".expr", "reads no feature")
			drop()
		}
	}
}

// duration parses the duration at n; positive rejects zero.
func (p *defParser) duration(n ast.Node, field string, positive bool) (time.Duration, bool) {
	s, ok := p.scalar(n, field)
	if !ok {
		return 0, false
	}
	d, err := ParseDuration(s)
	if err != nil {
		p.errorf(n, field, "%v", err)
		return 0, false
	}
	if positive && d == 0 {
		p.errorf(n, field, "must be positive")
		return 0, false
	}
	return d, true
}

// batchSource parses sources.batch at n into b.
func (p *defParser) batchSource(b *BatchSource, n ast.Node) {
	const field = "sources.batch"
	before := len(p.errs)
	m, ok := p.object(n, field, false, batchKeys...)
	if !ok {
		return
	}
	typo := len(p.errs) > before
	bq, hasBQ := m["bigquery"]
	files, hasFiles := m["files"]
	switch {
	case hasBQ && hasFiles:
		p.errorf(files.keyNode, field, "give one of bigquery or files, not both")
	case !hasBQ && !hasFiles && !typo:
		p.errorf(n, field, "want bigquery: {table: ...}, bigquery: {query: ...} or files: GLOB")
	}
	if hasBQ {
		const field = "sources.batch.bigquery"
		bm, ok := p.object(bq.value, field, false, bigqueryKeys...)
		if ok {
			table, hasTable := bm["table"]
			query, hasQuery := bm["query"]
			switch {
			case hasTable && hasQuery:
				p.errorf(query.keyNode, field, "give one of table or query, not both")
			case !hasTable && !hasQuery:
				p.errorf(bq.value, field, "want table: PROJECT.DATASET.TABLE or query: SQL")
			}
			if hasTable {
				if s, ok := p.scalar(table.value, field+".table"); ok {
					b.BigQueryTable = s
					if !bigQueryTableRE.MatchString(s) {
						hint := ""
						if strings.Count(s, ":") == 1 && strings.Count(s, ".") == 1 {
							hint = fmt.Sprintf("; in standard SQL form that is %q", strings.Replace(s, ":", ".", 1))
						}
						p.errorf(table.value, field+".table", "bad table %q (want project.dataset.table)%s", s, hint)
					}
				}
			}
			if hasQuery {
				if s, ok := p.scalar(query.value, field+".query"); ok {
					b.BigQueryQuery = s
					if strings.TrimSpace(s) == "" {
						p.errorf(query.value, field+".query", "must not be empty")
					}
				}
			}
		}
	}
	if hasFiles {
		if s, ok := p.scalar(files.value, field+".files"); ok {
			if _, err := filepath.Match(s, ""); err != nil {
				p.errorf(files.value, field+".files", "bad glob %q: %v", s, err)
			}
			if p.file != "" && !filepath.IsAbs(s) && !strings.Contains(s, "://") {
				s = filepath.Join(filepath.Dir(p.file), s)
			}
			b.Files = s
		}
	}
}

// streamSource parses sources.stream at n into s.
func (p *defParser) streamSource(s *StreamSource, n ast.Node) {
	const field = "sources.stream"
	m, ok := p.object(n, field, false, streamKeys...)
	if !ok {
		return
	}
	ps, ok := p.required(m, n, field, "pubsub")
	if !ok {
		return
	}
	pm, ok := p.object(ps.value, field+".pubsub", false, pubsubKeys...)
	if !ok {
		return
	}
	sub, ok := p.required(pm, ps.value, field+".pubsub", "subscription")
	if !ok {
		return
	}
	if v, ok := p.scalar(sub.value, field+".pubsub.subscription"); ok {
		s.Subscription = v
		if reason := subscriptionProblem(v); reason != "" {
			p.errorf(sub.value, field+".pubsub.subscription", "bad subscription %q: %s", v, reason)
		}
	}
}

// subscriptionProblem returns why name is not a Pub/Sub subscription name
// that Google Cloud accepts, every failing rule, or "" when it is one:
// projects/PROJECT/subscriptions/NAME, where PROJECT is a project ID (6 to
// 30 characters: lowercase letters, digits and hyphens, starting with a
// letter, not ending with a hyphen; optionally after a domain,
// "example.com:my-project") and NAME is 3 to 255 characters (letters,
// digits and - _ . ~ + %), starts with a letter and not with "goog".
func subscriptionProblem(name string) string {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[2] != "subscriptions" {
		return "want projects/PROJECT/subscriptions/NAME"
	}
	var why []string
	project, sub := parts[1], parts[3]
	if i := strings.LastIndexByte(project, ':'); i >= 0 { // domain-scoped project
		if d := project[:i]; d == "" || strings.Trim(d, "abcdefghijklmnopqrstuvwxyz0123456789.-") != "" {
			why = append(why, fmt.Sprintf("project domain %q may hold only lowercase letters, digits, dots and hyphens", d))
		}
		project = project[i+1:]
	}
	switch n := len(project); {
	case n < 6 || n > 30:
		why = append(why, fmt.Sprintf("project ID %q has %s, want 6 to 30", project, characters(n)))
	}
	switch {
	case project == "":
	case project[0] < 'a' || project[0] > 'z':
		why = append(why, fmt.Sprintf("project ID %q must start with a lowercase letter", project))
	case strings.Trim(project, "abcdefghijklmnopqrstuvwxyz0123456789-") != "":
		why = append(why, fmt.Sprintf("project ID %q may hold only lowercase letters, digits and hyphens", project))
	case strings.HasSuffix(project, "-"):
		why = append(why, fmt.Sprintf("project ID %q must not end with a hyphen", project))
	}
	if n := len(sub); n < 3 || n > 255 {
		why = append(why, fmt.Sprintf("subscription name %q has %s, want 3 to 255", sub, characters(n)))
	}
	switch {
	case sub == "":
	case !('a' <= sub[0] && sub[0] <= 'z' || 'A' <= sub[0] && sub[0] <= 'Z'):
		why = append(why, fmt.Sprintf("subscription name %q must start with a letter", sub))
	case strings.HasPrefix(sub, "goog"):
		why = append(why, fmt.Sprintf("subscription name %q must not start with \"goog\"", sub))
	case strings.Trim(sub, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~+%") != "":
		why = append(why, fmt.Sprintf("subscription name %q may hold only letters, digits and - _ . ~ + %%", sub))
	}
	return strings.Join(why, "; ")
}

func characters(n int) string {
	if n == 1 {
		return "1 character"
	}
	return fmt.Sprintf("%d characters", n)
}
