package schemas_test

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/sample"
)

// TestShippedData checks that the sample data under data/ decodes and is
// what go generate writes, so it stays in step with the definitions and the
// generator.
func TestShippedData(t *testing.T) {
	sets, err := schemas.LoadAll(".")
	if err != nil {
		t.Fatalf("LoadAll(.) error = %v", err)
	}
	for _, fs := range sets {
		t.Run(fs.Name, func(t *testing.T) {
			path := fs.Sources.Batch.Files
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read sample data: %v", err)
			}
			lines := 0
			for line := range bytes.Lines(got) {
				lines++
				if _, err := fs.DecodeJSON(line); err != nil {
					t.Errorf("%s:%d: DecodeJSON(%q) error = %v", path, lines, line, err)
				}
			}
			var want bytes.Buffer
			if err := sample.WriteJSONL(&want, fs, sample.Shipped(fs)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Errorf("%s differs from what the generator writes; run go generate ./schemas", path)
			}
		})
	}
}

// TestBadData checks the reason DecodeJSON gives for every line of
// data/card_activity_bad.jsonl, the dead-letter sample.
//
// fixed dates: decoding only; the sample's dates meet no clock.
func TestBadData(t *testing.T) {
	fs, err := schemas.Load("card_activity.yaml")
	if err != nil {
		t.Fatalf("Load error = %v", err)
	}
	want := []string{ // "" for a line that decodes
		1:  "",
		2:  `field "amount": want float64, got string "41.20"`,
		3:  `missing entity key "card_id"`,
		4:  "", // an offset, and extra members of any type
		5:  `field "approved": want bool, got string "yes"`,
		6:  `field "ts": want an RFC 3339 timestamp (2006-01-02T15:04:05Z), got string "2026-03-01 08:09:00"`,
		7:  `invalid JSON: unexpected end of input`,
		8:  `invalid JSON: invalid literal at offset 0, found 'n'`,
		9:  `empty entity key "card_id"`,
		10: "", // a duplicate member: the last one counts
		11: `missing event time "ts"`,
		12: `want a JSON object, got array`,
		13: `field "amount": float64 out of range: 1e400`,
		14: `field "card_id": want string, got number 1009`,
		15: "", // a null
	}
	f, err := os.Open(filepath.Join("data", "card_activity_bad.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		if n >= len(want) {
			t.Fatalf("line %d: more lines than expected", n)
		}
		_, err := fs.DecodeJSON(sc.Bytes())
		switch {
		case want[n] == "" && err != nil:
			t.Errorf("line %d: DecodeJSON(%q) error = %v, want nil", n, sc.Bytes(), err)
		case want[n] != "" && (err == nil || !errors.Is(err, schemas.ErrBadEvent) || !strings.HasSuffix(err.Error(), ": "+want[n])):
			t.Errorf("line %d: DecodeJSON(%q) error = %v, want %s", n, sc.Bytes(), err, want[n])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(want)-1 {
		t.Errorf("read %d lines, want %d", n, len(want)-1)
	}
}
