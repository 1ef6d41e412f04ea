package batchpipe

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/fileio"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/textio"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms"
)

func init() {
	register.DoFn4x1[context.Context, fileio.ReadableFile, func(beam.EventTime, schemas.Event), func(transforms.DeadLetter), error](&readCSVFn{})
	register.Emitter2[beam.EventTime, schemas.Event]()
	register.Emitter1[transforms.DeadLetter]()
}

// format is the format of event files.
type format int

const (
	formatJSONLines format = iota
	formatCSV
)

// fileFormat tells the format of the files a glob names from its extension
// (after an optional .gz): .jsonl, .ndjson or .json for JSON lines, .csv for
// CSV with a header line.
func fileFormat(glob string) (format, error) {
	ext := strings.ToLower(filepath.Ext(strings.TrimSuffix(glob, ".gz")))
	switch ext {
	case ".jsonl", ".ndjson", ".json":
		return formatJSONLines, nil
	case ".csv":
		return formatCSV, nil
	}
	return 0, fmt.Errorf("%w: files %q: cannot tell the format from the extension %q; name files .jsonl, .ndjson, .json (JSON lines) or .csv (CSV with a header), optionally .gz",
		ErrConfig, glob, ext)
}

// ReadFiles reads the events of set from the files that glob matches (a
// local path or gs://...) and decodes them:
//
//   - JSON lines (.jsonl, .ndjson, .json): one JSON object a line, read with
//     textio (large files are split across bundles) and decoded by
//     transforms.DecodeJSON. A blank line is a dead letter too.
//   - CSV (.csv): a header line naming the fields, then one event a record,
//     decoded by schemas.FeatureSet.DecodeRecord (every value is text; an
//     empty value is null but for string fields). Columns that are not
//     fields are ignored. Each file is read in one piece, so quoted values
//     may span lines.
//
// Either format may be gzip-compressed (.gz). Records that do not decode go
// to dead, with the reason, and are counted in
// tandem/<set>_dead_letter_decode; decoded events are counted in
// tandem/<set>_events_decoded and stamped with their event time.
//
//	→ PCollection<schemas.Event>, PCollection<transforms.DeadLetter>
func ReadFiles(s beam.Scope, set *schemas.FeatureSet, glob string) (events, dead beam.PCollection, err error) {
	s = s.Scope("batchpipe.ReadFiles")
	f, err := fileFormat(glob)
	if err != nil {
		return beam.PCollection{}, beam.PCollection{}, err
	}
	if err := checkGlob(glob); err != nil {
		return beam.PCollection{}, beam.PCollection{}, err
	}
	if f == formatCSV {
		files := fileio.ReadMatches(s, fileio.MatchFiles(s, glob, fileio.MatchEmptyDisallow()))
		events, dead = beam.ParDo2(s, &readCSVFn{Set: set}, files)
		return events, dead, nil
	}
	events, dead = transforms.DecodeJSON(s, set, textio.Read(s, glob))
	return events, dead, nil
}

// checkGlob fails fast when a local glob matches no file. Remote globs are
// listed when the pipeline runs.
func checkGlob(glob string) error {
	if strings.Contains(glob, "://") {
		return nil
	}
	m, err := filepath.Glob(glob)
	if err != nil {
		return fmt.Errorf("%w: files %q: %w", ErrConfig, glob, err)
	}
	if len(m) == 0 {
		return fmt.Errorf("%w: files %q: no file matches", ErrConfig, glob)
	}
	return nil
}

// readCSVFn reads the CSV files of a feature set's events.
type readCSVFn struct {
	Set *schemas.FeatureSet `json:"set"`

	decoded beam.Counter
	failed  beam.Counter
}

func (fn *readCSVFn) Setup() {
	// The same counters as transforms.DecodeJSON: one decode stage, whatever
	// the format.
	fn.decoded = beam.NewCounter(transforms.MetricsNamespace, fn.Set.Name+"_events_decoded")
	fn.failed = beam.NewCounter(transforms.MetricsNamespace, fn.Set.Name+"_dead_letter_"+transforms.StageDecode)
}

func (fn *readCSVFn) ProcessElement(ctx context.Context, file fileio.ReadableFile, emit func(beam.EventTime, schemas.Event), dead func(transforms.DeadLetter)) error {
	path := file.Metadata.Path
	rc, err := file.Open(ctx)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer rc.Close()
	rec := NewRecorder(rc)
	r := csv.NewReader(rec)
	r.FieldsPerRecord = -1 // a short or long record is a dead letter, not the end of the file
	r.ReuseRecord = true

	header, err := r.Read()
	if err != nil {
		return fmt.Errorf("read CSV header of %s: %w", path, err)
	}
	col := make(map[string]int, len(header))
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		if _, dup := col[h]; dup {
			return fmt.Errorf("CSV header of %s: column %q appears twice", path, h)
		}
		col[h] = i
	}
	for _, name := range append(slices.Clone(fn.Set.Entity.Keys), fn.Set.EventTime) {
		if _, ok := col[name]; !ok {
			return fmt.Errorf("CSV header of %s: no column %q (the entity key fields and the event time are required)", path, name)
		}
	}
	rec.Consumed(r.InputOffset())

	var fields []string
	get := func(name string) (any, bool) {
		i, ok := col[name]
		if !ok || i >= len(fields) {
			return nil, false
		}
		return fields[i], true
	}
	for {
		fields, err = r.Read()
		if err == io.EOF {
			return nil
		}
		raw := rec.Consumed(r.InputOffset())
		var (
			e    schemas.Event
			line int
		)
		switch {
		case err != nil:
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return fmt.Errorf("read %s: %w", path, err)
			}
			line = pe.StartLine
		case len(fields) != len(header):
			line, _ = r.FieldPos(0)
			err = fmt.Errorf("%w: record has %d fields, the header %d", schemas.ErrBadEvent, len(fields), len(header))
		default:
			line, _ = r.FieldPos(0)
			if e, err = fn.Set.DecodeRecord(get); err == nil {
				err = transforms.CheckEventTime(e)
			}
		}
		if err != nil {
			fn.failed.Inc(ctx, 1)
			dead(transforms.DeadLetter{Set: fn.Set.Name, Stage: transforms.StageDecode,
				Reason: fmt.Sprintf("%s:%d: %v", path, line, err), Raw: raw})
			continue
		}
		fn.decoded.Inc(ctx, 1)
		emit(transforms.EventTimestamp(e), e)
	}
}

// Recorder keeps the bytes a csv.Reader reading through it has read since
// the end of the last record, so that a record's raw text can go to the
// dead-letter output: after each record, Consumed(reader.InputOffset()).
type Recorder struct {
	r    io.Reader
	buf  []byte
	base int64 // input offset of buf[0]
}

func NewRecorder(r io.Reader) *Recorder { return &Recorder{r: r} }

func (rc *Recorder) Read(p []byte) (int, error) {
	n, err := rc.r.Read(p)
	rc.buf = append(rc.buf, p[:n]...)
	return n, err
}

// Consumed returns a copy of the input from the end of the previous record
// up to offset (the reader's InputOffset after a record), without its line
// ending, and forgets it.
func (rc *Recorder) Consumed(offset int64) []byte {
	n := int(offset - rc.base)
	raw := bytes.TrimRight(rc.buf[:n], "\r\n")
	out := bytes.Clone(raw)
	rc.buf = rc.buf[:copy(rc.buf, rc.buf[n:])]
	rc.base = offset
	return out
}
