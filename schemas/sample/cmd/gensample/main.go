// Command gensample writes sample events of feature sets as JSON lines.
//
// By default it writes the sample data shipped with Tandem: for every
// definition in the given files or directories, sample.Shipped events to
// <out>/<name>.jsonl. go generate ./schemas runs it that way:
//
//	go run ./sample/cmd/gensample -out data .
//
// With -n it writes n events of seed -seed over [-start, -end) instead, e.g.
// a million events for a benchmark:
//
//	go run ./schemas/sample/cmd/gensample -n 1000000 -out /tmp/events schemas
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/sample"
)

func main() {
	var (
		out   = flag.String("out", "data", "directory to write <feature set>.jsonl files to")
		n     = flag.Int("n", 0, "number of events per feature set; 0 writes the shipped sample data")
		seed  = flag.Uint64("seed", 1, "random seed (with -n)")
		start = flag.String("start", "2026-03-01T00:00:00Z", "first event time, RFC 3339 (with -n)")
		end   = flag.String("end", "2026-03-03T00:00:00Z", "end of the event times, RFC 3339, exclusive (with -n)")
	)
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: gensample [flags] definition-file-or-dir...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(flag.Args(), *out, *n, *seed, *start, *end); err != nil {
		log.Fatalf("gensample: %v", err)
	}
}

func run(paths []string, out string, n int, seed uint64, startS, endS string) error {
	start, err := time.Parse(time.RFC3339, startS)
	if err != nil {
		return fmt.Errorf("-start: %w", err)
	}
	end, err := time.Parse(time.RFC3339, endS)
	if err != nil {
		return fmt.Errorf("-end: %w", err)
	}
	if !end.After(start) {
		return fmt.Errorf("-end %s is not after -start %s", endS, startS)
	}
	sets, err := schemas.LoadAll(paths...)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, fs := range sets {
		var events []schemas.Event
		if n > 0 {
			events = sample.Events(fs, seed, n, start, end)
		} else {
			events = sample.Shipped(fs)
		}
		path := filepath.Join(out, fs.Name+".jsonl")
		if err := writeFile(path, fs, events); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "gensample: wrote %d events of %s to %s\n", len(events), fs.Name, path)
	}
	return nil
}

func writeFile(path string, fs *schemas.FeatureSet, events []schemas.Event) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	return sample.WriteJSONL(f, fs, events)
}
