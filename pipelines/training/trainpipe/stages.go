package trainpipe

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/log"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms"
)

func init() {
	beam.RegisterType(reflect.TypeOf((*Row)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*Query)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*OutRow)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*SetValues)(nil)).Elem())
	register.DoFn4x1[context.Context, string, func(Row), func(transforms.DeadLetter), error](&readSpineFn{})
	register.Emitter1[Row]()
	register.Emitter1[transforms.DeadLetter]()
	register.DoFn3x0[context.Context, schemas.Event, func(string, schemas.Event)](&keyEventsFn{})
	register.Emitter2[string, schemas.Event]()
	register.DoFn2x0[Row, func(string, Query)](&queriesFn{})
	register.Emitter2[string, Query]()
	register.DoFn6x1[context.Context, string, func(*schemas.Event) bool, func(*Query) bool, func(OutRow), func(string, SetValues), error](&sweepFn{})
	register.Iter1[schemas.Event]()
	register.Iter1[Query]()
	register.Emitter1[OutRow]()
	register.Emitter2[string, SetValues]()
	register.Function1x2[Row, string, Row](rowByID)
	register.DoFn4x1[string, func(*Row) bool, func(*SetValues) bool, func(OutRow), error](&joinFn{})
	register.Iter1[Row]()
	register.Iter1[SetValues]()
	register.DoFn4x1[context.Context, []byte, func(*int64) bool, func(*int64) bool, error](&checkFn{})
}

// OutRow is one output row: the spine row's values, then the features'.
type OutRow struct {
	Values []schemas.Value
}

// SetValues are one feature set's values for one spine row, placed at
// Offset in the output row.
type SetValues struct {
	Offset int
	Values []schemas.Value
}

// readSpine reads the spine (files, or a BigQuery table) and checks each row: the time parses and
// every request's key is there. Good rows are counted in
// tandem/training_spine_rows, bad ones go to dead with the reason and are
// counted in tandem/training_spine_dead_letters.
//
//	→ PCollection<Row>, PCollection<transforms.DeadLetter>
func readSpine(s beam.Scope, cfg *Config, files []string) (rows, dead beam.PCollection) {
	s = s.Scope("trainpipe.ReadSpine")
	fn := &readSpineFn{Format: cfg.Spine.Format, Columns: cfg.Spine.Columns, Time: cfg.Spine.Time}
	for _, r := range cfg.Requests {
		var parts []spineKey
		for i, col := range r.Set.KeyColumns() {
			parts = append(parts, spineKey{Column: columnIndex(cfg.Spine.Columns, r.Keys[i]), Type: col.Type})
		}
		fn.Keys = append(fn.Keys, requestKey{Set: r.Set.Name, Key: r.Set.Entity.KeyName(), Parts: parts})
	}
	if cfg.Spine.Table != "" {
		return readSpineBigQuery(s, cfg, fn)
	}
	paths := beam.Reshuffle(s, beam.CreateList(s, files))
	return beam.ParDo2(s, fn, paths)
}

func columnIndex(cols []Column, name string) int {
	for i, c := range cols {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// spineKey is where a part of a request's entity key is in a spine row,
// and the type of the set's key field.
type spineKey struct {
	Column int          `json:"column"`
	Type   schemas.Type `json:"type"`
}

// requestKey is where a request's entity key is in a spine row: one
// spineKey per part, in key order.
type requestKey struct {
	Set   string     `json:"set"`
	Key   string     `json:"key"` // Entity.KeyName, for reasons
	Parts []spineKey `json:"parts"`
}

type readSpineFn struct {
	Format  Format       `json:"format"`
	Columns []Column     `json:"columns"`
	Time    int          `json:"time"`
	Keys    []requestKey `json:"keys"`

	rows, bad beam.Counter
}

func (fn *readSpineFn) Setup() {
	fn.rows = beam.NewCounter(transforms.MetricsNamespace, "training_spine_rows")
	fn.bad = beam.NewCounter(transforms.MetricsNamespace, "training_spine_dead_letters")
}

func (fn *readSpineFn) ProcessElement(ctx context.Context, path string, emit func(Row), dead func(transforms.DeadLetter)) error {
	index := fn.index()
	return readSpineFile(ctx, path, fn.Format, func(rec record) error {
		fn.take(ctx, path, rec, index, emit, dead)
		return nil
	})
}

// index maps column names to their index in fn.Columns.
func (fn *readSpineFn) index() map[string]int {
	index := make(map[string]int, len(fn.Columns))
	for i, c := range fn.Columns {
		index[c.Name] = i
	}
	return index
}

// take emits rec, record number rec.num of the file or stream named where,
// as a Row, or as a dead letter with the reason it is bad.
func (fn *readSpineFn) take(ctx context.Context, where string, rec record, index map[string]int, emit func(Row), dead func(transforms.DeadLetter)) {
	row, reason := fn.row(rec, index)
	if reason != "" {
		fn.bad.Inc(ctx, 1)
		dead(transforms.DeadLetter{Set: DeadLetterSet, Stage: "spine",
			Reason: fmt.Sprintf("%s:%d: %s", where, rec.line, reason), Raw: rec.raw()})
		return
	}
	row.ID = strconv.FormatInt(rec.num, 10) + "@" + where
	fn.rows.Inc(ctx, 1)
	emit(row)
}

// row checks rec and returns it as a Row, or the reason it is bad.
func (fn *readSpineFn) row(rec record, index map[string]int) (Row, string) {
	if reason, bad := badRecord(rec); bad {
		return Row{}, reason
	}
	vals := make([]schemas.Value, len(fn.Columns))
	for i, name := range rec.names {
		j, ok := index[name]
		if !ok {
			return Row{}, fmt.Sprintf("column %q is not in the spine's columns (read from its files when the run started)", name)
		}
		v, err := coerce(rec.vals[i], fn.Columns[j].Type)
		if err != nil {
			return Row{}, fmt.Sprintf("column %q: %v", name, err)
		}
		vals[j] = v
	}
	at, err := parseInstant(vals[fn.Time])
	if err != nil {
		return Row{}, fmt.Sprintf("column %q: %v", fn.Columns[fn.Time].Name, err)
	}
	row := Row{Values: vals, At: at, Keys: make([]string, len(fn.Keys))}
	for i, k := range fn.Keys {
		if len(k.Parts) == 1 {
			key, err := entityKey(vals[k.Parts[0].Column], k.Parts[0].Type)
			if err != nil {
				return Row{}, fmt.Sprintf("column %q: %v", fn.Columns[k.Parts[0].Column].Name, err)
			}
			row.Keys[i] = key
			continue
		}
		parts := make([]string, len(k.Parts))
		for j, p := range k.Parts {
			part, err := entityKey(vals[p.Column], p.Type)
			if err != nil {
				return Row{}, fmt.Sprintf("column %q: %v (part %d of %d of the entity key %s of feature set %s)",
					fn.Columns[p.Column].Name, err, j+1, len(k.Parts), k.Key, k.Set)
			}
			parts[j] = part
		}
		key := schemas.EntityKey(parts...)
		if len(key) > schemas.MaxKeyLen {
			return Row{}, fmt.Sprintf("entity key %s of feature set %s: %d bytes encoded, longer than %d", k.Key, k.Set, len(key), schemas.MaxKeyLen)
		}
		row.Keys[i] = key
	}
	return row, ""
}

// entityKey is a spine value as the entity key of a set whose key field
// has type t: int64 keys in decimal, as events carry them.
func entityKey(v schemas.Value, t schemas.Type) (string, error) {
	var key string
	switch v.Type {
	case schemas.Null:
		return "", fmt.Errorf("missing entity key")
	case schemas.Int64:
		key = strconv.FormatInt(v.Int, 10)
	case schemas.String:
		key = v.Str
		if t == schemas.Int64 && key != "" {
			i, err := strconv.ParseInt(key, 10, 64)
			if err != nil {
				return "", fmt.Errorf("entity key %q is not an int64", key)
			}
			key = strconv.FormatInt(i, 10)
		}
	default:
		return "", fmt.Errorf("entity key is a %s", v.Type)
	}
	if key == "" {
		return "", fmt.Errorf("empty entity key")
	}
	if len(key) > schemas.MaxKeyLen {
		return "", fmt.Errorf("entity key of %d bytes, longer than %d", len(key), schemas.MaxKeyLen)
	}
	return key, nil
}

// computeFeatures computes the features of request ri for every spine row:
// the events in [from, to) and the rows' queries are grouped by entity and
// swept (Sweep). With a single request the rows come out whole
// (PCollection<OutRow>), else as the request's values by row ID, to be
// placed at offset (PCollection<KV<string, SetValues>>).
//
//	PCollection<schemas.Event>, PCollection<Row> → PCollection<OutRow> | PCollection<KV<string, SetValues>>
func computeFeatures(s beam.Scope, cfg *Config, ri, offset int, single bool, from, to time.Time, events, rows beam.PCollection) beam.PCollection {
	s = s.Scope("trainpipe.Features")
	r := cfg.Requests[ri]
	keyed := beam.ParDo(s, &keyEventsFn{Set: r.Set.Name, From: from.UnixMicro(), To: to.UnixMicro()}, events)
	queries := beam.ParDo(s, &queriesFn{Request: ri, Carry: single}, rows)
	grouped := beam.CoGroupByKey(s, keyed, queries)
	fn := &sweepFn{Set: r.Set, Features: r.feats, Offset: offset, Single: single}
	whole, bySet := beam.ParDo2(s, fn, grouped)
	if single {
		return whole
	}
	return bySet
}

// keyEventsFn keys the events in [From, To) by entity; the others are
// skipped and counted in tandem/<set>_training_events_out_of_range.
type keyEventsFn struct {
	Set  string `json:"set"`
	From int64  `json:"from"` // Unix microseconds, inclusive
	To   int64  `json:"to"`   // Unix microseconds, exclusive

	in, out beam.Counter
}

func (fn *keyEventsFn) Setup() {
	fn.in = beam.NewCounter(transforms.MetricsNamespace, fn.Set+"_training_events_in_range")
	fn.out = beam.NewCounter(transforms.MetricsNamespace, fn.Set+"_training_events_out_of_range")
}

func (fn *keyEventsFn) ProcessElement(ctx context.Context, e schemas.Event, emit func(string, schemas.Event)) {
	if e.Time < fn.From || e.Time >= fn.To {
		fn.out.Inc(ctx, 1)
		return
	}
	fn.in.Inc(ctx, 1)
	emit(e.Key, e)
}

// queriesFn keys a spine row's query by the entity key of one request.
type queriesFn struct {
	Request int  `json:"request"`
	Carry   bool `json:"carry"` // carry the row's values in the query
}

func (fn *queriesFn) ProcessElement(r Row, emit func(string, Query)) {
	q := Query{ID: r.ID, At: r.At}
	if fn.Carry {
		q.Row = r.Values
	}
	emit(r.Keys[fn.Request], q)
}

// sweepFn sweeps one entity's events and queries (Sweep).
type sweepFn struct {
	Set      *schemas.FeatureSet `json:"set"`
	Features []int               `json:"features"`
	Offset   int                 `json:"offset"`
	Single   bool                `json:"single"`

	entities, hot beam.Counter
}

// hotEntity is the number of events or queries of one entity from which
// the sweep logs it: a skewed key is worth knowing about.
const hotEntity = 1_000_000

func (fn *sweepFn) Setup() {
	fn.entities = beam.NewCounter(transforms.MetricsNamespace, fn.Set.Name+"_training_entities")
}

func (fn *sweepFn) ProcessElement(ctx context.Context, key string, eventIter func(*schemas.Event) bool, queryIter func(*Query) bool, whole func(OutRow), bySet func(string, SetValues)) error {
	var queries []Query
	var q Query
	for queryIter(&q) {
		queries = append(queries, q)
	}
	if len(queries) == 0 {
		return nil // an entity no spine row asks about
	}
	fn.entities.Inc(ctx, 1)
	var events []schemas.Event
	var e schemas.Event
	for eventIter(&e) {
		events = append(events, e)
	}
	if len(events) >= hotEntity || len(queries) >= hotEntity {
		log.Infof(ctx, "training: entity %s/%s has %d events and %d spine rows", fn.Set.Name, key, len(events), len(queries))
	}
	err := Sweep(fn.Set, fn.Features, events, queries, func(q Query, vals []schemas.Value) {
		if fn.Single {
			whole(OutRow{Values: append(q.Row, vals...)})
			return
		}
		bySet(q.ID, SetValues{Offset: fn.Offset, Values: vals})
	})
	if err != nil {
		return fmt.Errorf("features of %s/%s: %w", fn.Set.Name, key, err)
	}
	return nil
}

func rowByID(r Row) (string, Row) { return r.ID, r }

// joinRows puts each spine row and its sets' values together.
//
//	PCollection<Row>, PCollection<KV<string, SetValues>> → PCollection<OutRow>
func joinRows(s beam.Scope, width int, rows, values beam.PCollection) beam.PCollection {
	s = s.Scope("trainpipe.JoinRows")
	grouped := beam.CoGroupByKey(s, beam.ParDo(s, rowByID, rows), values)
	return beam.ParDo(s, &joinFn{Width: width}, grouped)
}

type joinFn struct {
	Width int `json:"width"`
}

func (fn *joinFn) ProcessElement(id string, rows func(*Row) bool, values func(*SetValues) bool, emit func(OutRow)) error {
	var r Row
	if !rows(&r) {
		return fmt.Errorf("training: values for spine row %s, which is not there", id)
	}
	out := make([]schemas.Value, fn.Width)
	copy(out, r.Values)
	var sv SetValues
	for values(&sv) {
		copy(out[sv.Offset:], sv.Values)
	}
	emit(OutRow{Values: out})
	return nil
}

// checkRun fails the run when no spine row could be used, after the output
// and the dead letters are written.
func checkRun(s beam.Scope, deadPath string, written, deadWritten beam.PCollection) {
	s = s.Scope("trainpipe.Check")
	beam.ParDo0(s, &checkFn{DeadLetter: deadPath}, beam.Impulse(s), beam.SideInput{Input: written}, beam.SideInput{Input: deadWritten})
}

type checkFn struct {
	DeadLetter string `json:"dead_letter"`
}

func (fn *checkFn) ProcessElement(ctx context.Context, _ []byte, written, deadWritten func(*int64) bool) error {
	var rows, dead, n int64
	for written(&n) {
		rows += n
	}
	for deadWritten(&n) {
		dead += n
	}
	if rows == 0 {
		return fmt.Errorf("training: no spine row could be used (%d dead letters, reasons in %s)", dead, fn.DeadLetter)
	}
	log.Infof(ctx, "training: %d rows written, %d dead letters", rows, dead)
	return nil
}
