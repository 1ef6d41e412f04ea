package datecheck

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkerCases are Go sources and the lines Check must report.
//
// fixed dates: these are inputs of the checker, never instants of a test.
var checkerCases = []struct {
	name, src string
	want      []int // lines reported
}{
	{"time.Date", "package p\nimport \"time\"\nvar t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)\n", []int{3}},
	{"time.Date from the clock", "package p\nimport \"time\"\nvar t0 = time.Date(time.Now().Year(), 1, 1, 0, 0, 0, 0, time.UTC)\n", nil},
	{"time.Unix literal", "package p\nimport \"time\"\nvar t0 = time.Unix(1763632800, 0)\n", []int{3}},
	{"RFC 3339 in JSON", "package p\nvar ev = `{\"ts\":\"2026-11-20T10:00:00Z\"}`\n", []int{2}},
	{"BigQuery literal", "package p\nvar q = \"`ts` >= TIMESTAMP(\\\"2026-03-01 00:00:00+00\\\")\"\n", []int{2}},
	{"not a date", "package p\nvar s = \"2026-13-45 and 12-11-2026 and v2026\"\n", nil},
	{"trailing annotation", "package p\nimport \"time\"\nvar t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC) // fixed date: parsing only\nvar t1 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)\n", []int{4}},
	{"trailing annotation covers its line only", "package p\nvar a = []string{ // fixed date: no\n\t\"2026-03-01\",\n}\n", []int{3}},
	{"annotation above a statement", "package p\nfunc f() {\n\t// Fixed date: the clock is injected.\n\tx := []string{\n\t\t\"2026-03-01\",\n\t\t\"2026-03-02\",\n\t}\n\t_ = x\n\ty := \"2026-03-03\"\n\t_ = y\n}\n", []int{9}},
	{"doc comment covers the function", "package p\n// TestX decodes.\n//\n// fixed dates: decoding only.\nfunc TestX() {\n\t_ = \"2026-03-01\"\n\t_ = \"2026-03-02\"\n}\nfunc TestY() { _ = \"2026-03-03\" }\n", []int{9}},
	{"an annotation not right above does not cover", "package p\n// fixed date: here\n\nvar a = \"2026-03-01\"\n", []int{4}},
}

func TestCheck(t *testing.T) {
	for _, tc := range checkerCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Check("x_test.go", []byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			var lines []int
			for _, f := range got {
				lines = append(lines, f.Pos.Line)
			}
			if !equalInts(lines, tc.want) {
				t.Errorf("Check(%q) reports lines %v, want %v: %v", tc.src, lines, tc.want, got)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestModuleTestsHaveNoCalendarDates is the guard: it fails, naming file
// and line, for every calendar date in a test file of the module that is
// neither computed from the clock nor annotated. See the package doc.
func TestModuleTestsHaveNoCalendarDates(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root %s: %v", root, err)
	}
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || !(strings.HasSuffix(path, "_test.go") || strings.HasSuffix(filepath.Base(filepath.Dir(path)), "test")) {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		found, err := Check(rel, src)
		if err != nil {
			return err
		}
		files++
		for _, f := range found {
			t.Error(f)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 20 {
		t.Fatalf("checked only %d test files under %s; the walk is broken", files, root)
	}
	t.Logf("checked %d test files", files)
}
