// Package datecheck finds calendar dates written into Tandem's tests, the
// time bombs of issue 9: a test that writes events at 2026-11-20 passes
// until the emulator's max-age GC, a lateness bound, a staleness rule or a
// serving `at` bound, all measured against the wall clock, overtakes the
// date; then it fails for no change of code.
//
// Check reports, in Go source, every
//
//   - call time.Date(YEAR, ...) with a literal year,
//   - call time.Unix, time.UnixMilli or time.UnixMicro with a literal
//     argument (an instant written as a number),
//   - string literal holding a calendar date (YYYY-MM-DD, as in RFC 3339,
//     BigQuery TIMESTAMP literals and JSON events),
//
// that carries no annotation. An annotation is a comment containing
// "fixed date" (for example `// fixed date: decoding only, no clock`) that
// says why nothing compares the date with the clock. It covers
//
//   - the line it ends (a trailing comment), and
//   - when it stands on lines of its own (or is a doc comment), the whole
//     syntax node that starts on the line right after it: a statement, a
//     composite-literal element, a function with all its body.
//
// The test of this package runs Check over every test file of the module
// (every *_test.go, and the test-helper packages whose directory ends in
// "test"), so `go test ./...`, and with it .ci/run, fails on a new
// unannotated date. The runtime half of the guard is in
// bigtablestore.StartEmulatorAt: the emulator rejects a cell older than its
// family's max-age GC instead of deleting it silently.
package datecheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"strconv"
	"strings"
)

// Marker is the text an annotation comment contains.
const Marker = "fixed date"

// Finding is one unannotated calendar date.
type Finding struct {
	Pos  token.Position
	What string // the offending expression, shortened
}

func (f Finding) String() string {
	return fmt.Sprintf("%s: calendar date %s in a test; compute it from time.Now() (or inject a clock), or annotate why nothing compares it with the clock: // %s: <why>", f.Pos, f.What, Marker)
}

var dateRE = regexp.MustCompile(`\b(19|20)\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])`)

// date returns the first calendar date in s other than Go's reference
// date 2006-01-02 (a layout, not an instant), or "".
func date(s string) string {
	for _, d := range dateRE.FindAllString(s, -1) {
		if d != "2006-01-02" {
			return d
		}
	}
	return ""
}

// Check parses one Go file and returns its unannotated calendar dates.
func Check(filename string, src []byte) ([]Finding, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filename, src, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	covered := coveredLines(fset, f, src)
	var out []Finding
	report := func(n ast.Node, what string) {
		p := fset.Position(n.Pos())
		if !covered[p.Line] {
			out = append(out, Finding{Pos: p, What: shorten(what)})
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			if fn := timeFunc(n); fn != "" && len(n.Args) > 0 {
				if lit, ok := n.Args[0].(*ast.BasicLit); ok && lit.Kind == token.INT {
					report(n, "time."+fn+"("+lit.Value+", ...)")
				}
			}
		case *ast.BasicLit:
			if n.Kind == token.STRING {
				s, err := strconv.Unquote(n.Value)
				if err != nil {
					s = n.Value
				}
				if d := date(s); d != "" {
					report(n, strconv.Quote(d)+" in "+n.Value)
				}
			}
		}
		return true
	})
	return out, nil
}

// timeFunc returns Date, Unix, UnixMilli or UnixMicro when call is a call
// of that function of package time, or "".
func timeFunc(call *ast.CallExpr) string {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return ""
	}
	if id, ok := sel.X.(*ast.Ident); !ok || id.Name != "time" {
		return ""
	}
	switch sel.Sel.Name {
	case "Date", "Unix", "UnixMilli", "UnixMicro":
		return sel.Sel.Name
	}
	return ""
}

// coveredLines returns the lines covered by annotations.
func coveredLines(fset *token.FileSet, f *ast.File, src []byte) map[int]bool {
	covered := map[int]bool{}
	// startsAt[line] is the last line of the largest node starting on line.
	startsAt := map[int]int{}
	ast.Inspect(f, func(n ast.Node) bool {
		if n == nil {
			return false
		}
		if _, ok := n.(*ast.Comment); ok {
			return false
		}
		if _, ok := n.(*ast.CommentGroup); ok {
			return false
		}
		from, to := fset.Position(n.Pos()).Line, fset.Position(n.End()).Line
		startsAt[from] = max(startsAt[from], to)
		return true
	})
	for _, cg := range f.Comments {
		if !strings.Contains(strings.ToLower(cg.Text()), Marker) {
			continue
		}
		first, last := fset.Position(cg.Pos()).Line, fset.Position(cg.End()).Line
		for l := first; l <= last; l++ {
			covered[l] = true
		}
		if to, ok := startsAt[last+1]; ok && !codeBefore(fset, src, cg) {
			for l := last + 1; l <= to; l++ {
				covered[l] = true
			}
		}
	}
	return covered
}

// codeBefore reports whether code precedes cg on its first line (a
// trailing comment covers its own line only).
func codeBefore(fset *token.FileSet, src []byte, cg *ast.CommentGroup) bool {
	p := fset.Position(cg.Pos())
	start := p.Offset - (p.Column - 1)
	return strings.TrimSpace(string(src[start:p.Offset])) != ""
}

func shorten(s string) string {
	if len(s) > 90 {
		return s[:87] + "..."
	}
	return s
}
