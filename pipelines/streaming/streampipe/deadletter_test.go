package streampipe

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tandem-fp/tandem/transforms"
)

// TestDeadLettersShareFilesystem: every write of the process goes through
// one file system per scheme (issue 14: a new GCS client per dead-letter
// write), and each write is still its own durable file that reads back.
func TestDeadLettersShareFilesystem(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "dl", "stream")
	d := &deadLetters{Prefix: prefix}
	first := []transforms.DeadLetter{{Set: "cards", Stage: transforms.StageDecode, Reason: "bad json", Raw: []byte("{")}}
	second := []transforms.DeadLetter{
		{Set: "cards", Stage: transforms.StageLate, Reason: "late", Raw: []byte(`{"a":1}`)},
		{Set: "cards", Stage: transforms.StageDecode, Reason: "no key", Raw: []byte(`{}`)},
	}
	ctx := context.Background()
	for _, ls := range [][]transforms.DeadLetter{first, second} {
		if err := d.Write(ctx, ls); err != nil {
			t.Fatal(err)
		}
	}
	a, err := sharedFilesystem(prefix + "-a.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	b, err := sharedFilesystem(filepath.Join(t.TempDir(), "other.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Error("two local dead-letter names got two file systems; want one per scheme for the process")
	}
	filesystems.Lock()
	n := len(filesystems.byScheme)
	filesystems.Unlock()
	if n != 1 {
		t.Errorf("%d file systems made for local writes, want 1", n)
	}
	got, err := ReadDeadLetters(prefix)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(prefix + "-*.jsonl")
	if len(files) != 2 {
		t.Errorf("%d dead-letter files, want one per write (2)", len(files))
	}
	// The lines are the batch pipeline's format: the record as text.
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"raw":"{`) {
			t.Errorf("%s: %s, want the record as text in raw", f, b)
		}
	}
	sortLetters := cmpopts.SortSlices(func(x, y transforms.DeadLetter) bool { return x.Reason < y.Reason })
	if diff := cmp.Diff(append(first, second...), got, sortLetters); diff != "" {
		t.Errorf("dead letters read back (-want +got):\n%s", diff)
	}
}
