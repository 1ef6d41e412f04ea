package localstack

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-fp/tandem/schemas"
)

// TrainingCommand is the training pipeline's command line for a feature
// service over the demo's history: the flags, in order, after
// `go run ./pipelines/training`, each --name=value.
type TrainingCommand struct {
	Service string
	Args    []string
	// Output is the Parquet file the command writes, Spine the spine it
	// reads and SpineRows its number of rows.
	Output, Spine string
	SpineRows     int
}

// String is the command as a shell line.
func (c TrainingCommand) String() string {
	var b strings.Builder
	b.WriteString("go run ./pipelines/training")
	for _, a := range c.Args {
		b.WriteString(" \\\n      ")
		b.WriteString(shellQuote(a))
	}
	return b.String()
}

func shellQuote(s string) string {
	if strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// spineRows is how many labelled examples the demo's spine has.
const spineRows = 500

// writeTrainingSpine writes dir/<service>-spine.csv, labelled examples for
// svc over the demo's history: one row per example, at an instant inside
// the history, keyed by an entity of each of its sets that has events
// there (the entity of a random event, at or after the event), with a
// synthetic 0/1 label `is_fraud`. history holds each set's events by name.
func writeTrainingSpine(dir string, svc *schemas.Service, history map[string][]schemas.Event, seed uint64) (string, int, error) {
	rng := rand.New(rand.NewPCG(seed, 77))
	cols := svc.Keys()
	header := make([]string, 0, len(cols)+2)
	for _, c := range cols {
		header = append(header, c.Name)
	}
	header = append(header, "ts", "is_fraud")
	path := filepath.Join(dir, svc.Name+"-spine.csv")
	f, err := os.Create(path)
	if err != nil {
		return "", 0, fmt.Errorf("training spine of %s: %w", svc.Name, err)
	}
	w := csv.NewWriter(bufio.NewWriter(f))
	w.Write(header) //nolint:errcheck // csv.Writer errors are sticky: Flush reports them
	n := 0
	for range spineRows {
		// The instant: just after an event of the first set (so its
		// features have data), then a key for every other set.
		first := history[svc.Entries[0].Set.Name]
		if len(first) == 0 {
			break
		}
		e := first[rng.IntN(len(first))]
		at := time.UnixMicro(e.Time).Add(time.Duration(rng.Int64N(int64(10 * time.Minute))))
		keys := map[string]string{}
		setKeys(keys, svc.Entries[0], e.Key)
		for _, entry := range svc.Entries[1:] {
			evs := history[entry.Set.Name]
			if len(evs) == 0 {
				continue
			}
			setKeys(keys, entry, evs[rng.IntN(len(evs))].Key)
		}
		rec := make([]string, 0, len(header))
		for _, c := range cols {
			rec = append(rec, keys[c.Name])
		}
		rec = append(rec, at.UTC().Format(time.RFC3339Nano), strconv.Itoa(bool2int(rng.IntN(20) == 0)))
		w.Write(rec) //nolint:errcheck // see above
		n++
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return "", 0, fmt.Errorf("training spine of %s: %w", svc.Name, err)
	}
	if err := f.Close(); err != nil {
		return "", 0, fmt.Errorf("training spine of %s: %w", svc.Name, err)
	}
	return path, n, nil
}

// setKeys sets in keys (column → key text) the columns of entry that
// entity key key of its set fills and keys does not have yet.
func setKeys(keys map[string]string, entry schemas.ServiceEntry, key string) {
	parts, _ := schemas.SplitEntityKey(key, len(entry.Keys)) // generated keys
	for i, col := range entry.Keys {
		if _, ok := keys[col]; !ok {
			keys[col] = parts[i]
		}
	}
}

func bool2int(b bool) int {
	if b {
		return 1
	}
	return 0
}

// trainingCommand is the command that computes svc's training set for the
// spine from the demo's history files (dir/<set>-history.jsonl, which
// RunBatch writes), given to each set with --source since the sets'
// sources.batch name other data.
func trainingCommand(dir string, svc *schemas.Service, spine string, rows int) TrainingCommand {
	c := TrainingCommand{Service: svc.Name, Spine: spine, SpineRows: rows, Output: filepath.Join(dir, svc.Name+"-training.parquet")}
	c.Args = append(c.Args, "--service="+svc.File)
	for _, e := range svc.Entries {
		c.Args = append(c.Args, "--featureset="+e.Set.File)
	}
	for _, e := range svc.Entries {
		c.Args = append(c.Args, "--source="+e.Set.Name+"=files:"+filepath.Join(dir, e.Set.Name+"-history.jsonl"))
	}
	c.Args = append(c.Args, "--spine=files:"+spine, "--spine_time=ts",
		"--output=files:"+c.Output, "--dead_letter="+filepath.Join(dir, "dead_letter", svc.Name+"-training"))
	return c
}

// showTraining writes a spine for each service and prints its training
// command.
func showTraining(out io.Writer, dir string, svcs []*schemas.Service, history map[string][]schemas.Event, seed uint64, kept bool) ([]TrainingCommand, error) {
	var cmds []TrainingCommand
	for _, svc := range svcs {
		spine, n, err := writeTrainingSpine(dir, svc, history, seed)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			continue
		}
		c := trainingCommand(dir, svc, spine, n)
		cmds = append(cmds, c)
		where := "its files are removed when this stops; keep them with --dir"
		if kept {
			where = "its files stay in " + dir
		}
		fmt.Fprintf(out, "\nTraining set of %s: the features of %d labelled examples (%s) at their instants, from the generated history (%s):\n\n  %s\n",
			svc.Name, n, spine, where, c)
	}
	return cmds, nil
}
