package batchpipe

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"cloud.google.com/go/bigtable"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/filesystem"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/log"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
	"github.com/tandem-fp/tandem/transforms"
)

func init() {
	register.Function1x2[transforms.DeadLetter, string, error](formatDeadLetter)
	register.DoFn4x1[context.Context, []byte, func(*string) bool, func(int64), error](&writeDeadLettersFn{})
	register.Iter1[string]()
	register.Emitter1[int64]()
	register.DoFn4x1[context.Context, []byte, func(*int64) bool, func(*int64) bool, error](&commitFn{})
	register.Iter1[int64]()
}

func formatDeadLetter(d transforms.DeadLetter) (string, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("format dead letter of %s: %w", d.Set, err)
	}
	return string(b), nil
}

// WriteDeadLetters writes dead letters to the file at path (local or
// gs://...), one JSON object a line:
//
//	{"set":"card_activity","stage":"decode","reason":"schemas: bad event: ...","raw":"{\"card_id\":..."}
//
// raw is the record as received; a record that is not valid UTF-8 comes as
// raw_base64 instead (transforms.DeadLetter's JSON, the streaming
// pipeline's format too). One worker writes the file once the dead letters are
// all known, even when there are none, replacing a file of the same name.
// The lines are counted in tandem/<set>_dead_letters_written. It returns the
// number written, one element emitted after the file is closed.
//
//	PCollection<transforms.DeadLetter> → PCollection<int64>
func WriteDeadLetters(s beam.Scope, set, path string, dead beam.PCollection) beam.PCollection {
	s = s.Scope("batchpipe.WriteDeadLetters")
	filesystem.ValidateScheme(path)
	lines := beam.ParDo(s, formatDeadLetter, dead)
	return beam.ParDo(s, &writeDeadLettersFn{Set: set, Path: path}, beam.Impulse(s), beam.SideInput{Input: lines})
}

type writeDeadLettersFn struct {
	Set  string `json:"set"`
	Path string `json:"path"`
}

func (fn *writeDeadLettersFn) ProcessElement(ctx context.Context, _ []byte, lines func(*string) bool, emit func(int64)) error {
	fsys, err := filesystem.New(ctx, fn.Path)
	if err != nil {
		return fmt.Errorf("dead letters of %s to %s: %w", fn.Set, fn.Path, err)
	}
	defer fsys.Close()
	f, err := fsys.OpenWrite(ctx, fn.Path)
	if err != nil {
		return fmt.Errorf("dead letters of %s: create %s: %w", fn.Set, fn.Path, err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var n int64
	var line string
	for lines(&line) {
		w.WriteString(line) // bufio.Writer errors are sticky: Flush reports them
		w.WriteByte('\n')
		n++
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("dead letters of %s: write %s: %w", fn.Set, fn.Path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("dead letters of %s: close %s: %w", fn.Set, fn.Path, err)
	}
	beam.NewCounter(transforms.MetricsNamespace, fn.Set+"_dead_letters_written").Inc(ctx, n)
	if n > 0 {
		log.Warnf(ctx, "batch: %d dead letters of %s written to %s", n, fn.Set, fn.Path)
	}
	emit(n)
	return nil
}

// CommitWatermark writes the batch watermark of a feature set, asOf, to the
// metadata row of the table (bigtablestore.WriteMeta), as the run's last
// write. written is the per-bundle counts of rows written that
// bigtablewrite.Write emits once a bundle's writes are acknowledged, and
// deadWritten the count WriteDeadLetters emits once the dead-letter file is
// closed; both are side inputs of the commit, so it runs only after every
// write bundle has finished and the dead letters are saved. A run that
// fails before, fails without moving the watermark.
//
// A run that wrote no row fails here, leaving the watermark, unless
// allowEmpty: an empty history usually means a wrong source or as_of.
// Commits are counted in tandem/<set>_batch_watermark_commits.
//
//	PCollection<int64>, PCollection<int64> → ()
func CommitWatermark(s beam.Scope, cfg bigtablestore.Config, set string, asOf time.Time, allowEmpty bool, written, deadWritten beam.PCollection) {
	s = s.Scope("batchpipe.CommitWatermark")
	if err := cfg.Validate(); err != nil {
		panic(fmt.Sprintf("batchpipe.CommitWatermark: %v", err))
	}
	fn := &commitFn{Config: cfg, Set: set, AsOf: asOf.UTC().Format(time.RFC3339Nano), AllowEmpty: allowEmpty}
	beam.ParDo0(s, fn, beam.Impulse(s), beam.SideInput{Input: written}, beam.SideInput{Input: deadWritten})
}

type commitFn struct {
	Config     bigtablestore.Config `json:"config"`
	Set        string               `json:"set"`
	AsOf       string               `json:"as_of"` // RFC 3339
	AllowEmpty bool                 `json:"allow_empty"`

	client *bigtable.Client
}

func (fn *commitFn) Setup(ctx context.Context) error {
	cl, err := fn.Config.NewClient(ctx)
	if err != nil {
		return err
	}
	fn.client = cl
	return nil
}

func (fn *commitFn) ProcessElement(ctx context.Context, _ []byte, written, deadWritten func(*int64) bool) error {
	asOf, err := time.Parse(time.RFC3339Nano, fn.AsOf)
	if err != nil {
		return fmt.Errorf("batch watermark of %s: %w", fn.Set, err)
	}
	var rows, dead, n int64
	for written(&n) {
		rows += n
	}
	for deadWritten(&n) {
		dead += n
	}
	if rows == 0 && !fn.AllowEmpty {
		return fmt.Errorf("batch watermark of %s: the run wrote no tile (%d dead letters); not moving the watermark to %s: check the source and as_of, or allow an empty run",
			fn.Set, dead, fn.AsOf)
	}
	if err := bigtablestore.WriteMeta(ctx, fn.client.Open(fn.Config.Table), fn.Set, schemas.QualifierBatchWatermark, asOf); err != nil {
		return err
	}
	beam.NewCounter(transforms.MetricsNamespace, fn.Set+"_batch_watermark_commits").Inc(ctx, 1)
	log.Infof(ctx, "batch: watermark of %s committed at %s after %d rows written", fn.Set, fn.AsOf, rows)
	return nil
}

func (fn *commitFn) Teardown() error {
	if fn.client == nil {
		return nil
	}
	err := fn.client.Close()
	fn.client = nil
	return err
}
