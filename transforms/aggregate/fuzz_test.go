package aggregate

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/tandem-fp/tandem/schemas"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the generated seed files in testdata/fuzz/FuzzDecode")

// seedEncodings returns valid encodings of every op over every type it
// accepts, empty and not, named for the seed corpus.
func seedEncodings(tb testing.TB) map[string][]byte {
	tb.Helper()
	seeds := make(map[string][]byte)
	for i, c := range allCombos() {
		r := rngFor(tb)
		name := fmt.Sprintf("%s_%s", c.op, c.typ)
		seeds["valid_"+name+"_empty"] = mustEncode(tb, mustNew(tb, c))
		seeds["valid_"+name] = mustEncode(tb, addAll(tb, c, randEvents(r, c.typ, 5+i)))
	}
	// A dense sketch.
	p := mustNew(tb, combo{schemas.OpApproxCountDistinct, schemas.Int64})
	for i := range 20_000 {
		p.Add(i64(int64(i)), 0)
	}
	seeds["valid_approx_count_distinct_int64_dense"] = mustEncode(tb, p)
	// A top_k summary over its capacity, a collapsed percentile sketch, a
	// full histogram with overflow.
	top := mustNew(tb, combo{schemas.OpTopK, schemas.Int64})
	pct := mustNew(tb, combo{schemas.OpApproxPercentile, schemas.Float64})
	hist := mustNew(tb, combo{schemas.OpHistogram, schemas.String})
	for i := range 1000 {
		top.Add(i64(int64(i%300)), 0)
		pct.Add(f64(math.Pow(10, float64(i%400)/10-20)), 0)
		pct.Add(f64(-float64(i)), 0)
		hist.Add(str(fmt.Sprint(i%50)), 0)
	}
	seeds["valid_top_k_int64_full"] = mustEncode(tb, top)
	seeds["valid_approx_percentile_float64_collapsed"] = mustEncode(tb, pct)
	seeds["valid_histogram_string_overflow"] = mustEncode(tb, hist)
	return seeds
}

func FuzzDecode(f *testing.F) {
	// testdata/fuzz/FuzzDecode holds these and hand-made garbage; adding
	// them here too keeps the fuzzer's start current with the code.
	for _, b := range seedEncodings(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("Decode(%x) = %v, want ErrCorrupt or ErrVersion", b, err)
			}
			if p != nil {
				t.Fatalf("Decode(%x) returned a partial with error %v", b, err)
			}
			return
		}
		enc, err := Encode(p)
		if err != nil {
			t.Fatalf("Encode(Decode(%x)) = %v", b, err)
		}
		// Decode accepts only what Encode writes, except that a sketch's
		// buffered keys may come in any order (Encode compacts them).
		// A stddev of tag 8 (Welford's state, written before the sums
		// were exact) decodes into the exact form and is written as tag 9.
		if p.Op() != schemas.OpApproxCountDistinct && b[1] != tagStddev && !bytes.Equal(enc, b) {
			t.Fatalf("Encode(Decode(%x)) = %x", b, enc)
		}
		q, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%x))) = %v", b, err)
		}
		if d := diffResults(combo{}, p, q); d != "" {
			t.Fatalf("re-decoding %x changed the result (-first +second):\n%s", b, d)
		}
		if enc2 := mustEncode(t, q); !bytes.Equal(enc2, enc) {
			t.Fatalf("Encode is not stable: %x, then %x", enc, enc2)
		}
		// Whatever decodes must merge with its own kind.
		c := p.Clone()
		mustMerge(t, c, q)
		mustMerge(t, c, For(schemas.Feature{Op: p.Op(), FieldType: p.(partial).fieldType()}))
		c.Result()
	})
}

// TestWriteFuzzCorpus regenerates the valid_* seed files of FuzzDecode
// when run with -update-corpus (after a format change, say). The other
// files there are hand-made garbage and fuzzer finds; keep them.
func TestWriteFuzzCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to rewrite testdata/fuzz/FuzzDecode/valid_*")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range seedEncodings(t) {
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
