package transforms

import (
	"context"
	"fmt"
	"reflect"
	"time"
	"unsafe"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/mtime"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/tandem-fp/tandem/schemas"
)

func init() {
	register.DoFn4x0[context.Context, []byte, func(beam.EventTime, schemas.Event), func(DeadLetter)](&decodeJSONFn{})
	register.DoFn4x0[context.Context, string, func(beam.EventTime, schemas.Event), func(DeadLetter)](&decodeJSONLineFn{})
	register.DoFn2x0[schemas.Event, func(beam.EventTime, schemas.Event)](&stampFn{})
	register.DoFn5x0[context.Context, beam.EventTime, schemas.Event, func(beam.EventTime, schemas.Event), func(DeadLetter)](&rejectFutureFn{})
	register.Emitter2[beam.EventTime, schemas.Event]()
	register.Emitter1[DeadLetter]()
}

// MetricsNamespace is the namespace of every Beam metric Tandem reports.
const MetricsNamespace = "tandem"

// DecodeJSON decodes JSON events of a feature set and stamps each with its
// event time. Records that do not match the schema go, with the reason, to
// the second output; they are counted in the metric
// tandem/<set>_dead_letter_decode, the events in tandem/<set>_events_decoded.
// Records may be []byte (Pub/Sub messages) or strings (lines that
// textio.Read returns, decoded without a copy).
//
//	PCollection<[]byte> or PCollection<string> → PCollection<schemas.Event>, PCollection<DeadLetter>
func DecodeJSON(s beam.Scope, set *schemas.FeatureSet, raw beam.PCollection) (events, dead beam.PCollection) {
	s = s.Scope("transforms.DecodeJSON")
	switch t := raw.Type().Type(); t {
	case reflect.TypeFor[[]byte]():
		return beam.ParDo2(s, &decodeJSONFn{Set: set}, raw)
	case reflect.TypeFor[string]():
		return beam.ParDo2(s, &decodeJSONLineFn{decodeJSONFn{Set: set}}, raw)
	default:
		panic(fmt.Sprintf("transforms.DecodeJSON: records of %s are %v, want []byte or string", set.Name, t))
	}
}

type decodeJSONFn struct {
	Set *schemas.FeatureSet `json:"set"`

	decoded beam.Counter
	failed  beam.Counter
}

func (fn *decodeJSONFn) Setup() {
	fn.decoded = beam.NewCounter(MetricsNamespace, fn.Set.Name+"_events_decoded")
	fn.failed = beam.NewCounter(MetricsNamespace, fn.Set.Name+"_dead_letter_"+StageDecode)
}

func (fn *decodeJSONFn) ProcessElement(ctx context.Context, raw []byte, emit func(beam.EventTime, schemas.Event), dead func(DeadLetter)) {
	e, err := fn.Set.DecodeJSON(raw)
	if err == nil {
		err = CheckEventTime(e)
	}
	if err != nil {
		fn.failed.Inc(ctx, 1)
		dead(DeadLetter{Set: fn.Set.Name, Stage: StageDecode, Reason: err.Error(), Raw: raw})
		return
	}
	fn.decoded.Inc(ctx, 1)
	emit(EventTimestamp(e), e)
}

// decodeJSONLineFn is decodeJSONFn over strings.
type decodeJSONLineFn struct {
	decodeJSONFn
}

func (fn *decodeJSONLineFn) ProcessElement(ctx context.Context, line string, emit func(beam.EventTime, schemas.Event), dead func(DeadLetter)) {
	// DecodeJSON only reads its input and copies what it keeps, so the
	// line's bytes need no copy; a dead letter gets one.
	raw := unsafe.Slice(unsafe.StringData(line), len(line))
	e, err := fn.Set.DecodeJSON(raw)
	if err == nil {
		err = CheckEventTime(e)
	}
	if err != nil {
		fn.failed.Inc(ctx, 1)
		dead(DeadLetter{Set: fn.Set.Name, Stage: StageDecode, Reason: err.Error(), Raw: []byte(line)})
		return
	}
	fn.decoded.Inc(ctx, 1)
	emit(EventTimestamp(e), e)
}

// Stamp sets each event's element timestamp to its event time, for events
// decoded outside DecodeJSON (for example by a BigQuery reader).
//
//	PCollection<schemas.Event> → PCollection<schemas.Event>
func Stamp(s beam.Scope, events beam.PCollection) beam.PCollection {
	s = s.Scope("transforms.Stamp")
	return beam.ParDo(s, &stampFn{}, events)
}

type stampFn struct{}

func (fn *stampFn) ProcessElement(e schemas.Event, emit func(beam.EventTime, schemas.Event)) {
	emit(EventTimestamp(e), e)
}

// EventTimestamp is the Beam element timestamp of an event: its event time
// in milliseconds (Beam's resolution).
func EventTimestamp(e schemas.Event) beam.EventTime {
	return mtime.FromMilliseconds(floorDiv(e.Time, 1000))
}

// CheckEventTime rejects event times Beam cannot represent as an element
// timestamp; every decoder of a pipeline calls it after decoding.
func CheckEventTime(e schemas.Event) error {
	ms := floorDiv(e.Time, 1000)
	if ms < int64(mtime.MinTimestamp) || ms > int64(mtime.EndOfGlobalWindowTime) {
		return fmt.Errorf("%w: event time %s is outside the range a pipeline can process", schemas.ErrBadEvent, e.EventTime())
	}
	return nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// CheckFuture rejects an event stamped more than set.MaxFuture after now
// (Unix microseconds, the pipeline's processing time): it would count in a
// read at "now" before it happened. Both pipelines dead-letter such events
// with stage StageFuture.
func CheckFuture(set *schemas.FeatureSet, e schemas.Event, now int64) error {
	if limit := now + set.MaxFuture.Microseconds(); e.Time > limit {
		return fmt.Errorf("%w: event time %s is more than max_future %s after the pipeline's clock %s",
			schemas.ErrBadEvent, e.EventTime().Format(time.RFC3339Nano), schemas.FormatDuration(set.MaxFuture),
			time.UnixMicro(now).UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// RejectFuture dead-letters the events that CheckFuture rejects at now, the
// processing time of a bounded run, counted in
// tandem/<set>_dead_letter_future; the others pass unchanged.
//
//	PCollection<schemas.Event> → PCollection<schemas.Event>, PCollection<DeadLetter>
func RejectFuture(s beam.Scope, set *schemas.FeatureSet, now time.Time, events beam.PCollection) (kept, dead beam.PCollection) {
	s = s.Scope("transforms.RejectFuture")
	return beam.ParDo2(s, &rejectFutureFn{Set: set, Now: now.UnixMicro()}, events)
}

type rejectFutureFn struct {
	Set *schemas.FeatureSet `json:"set"`
	Now int64               `json:"now"`

	future beam.Counter
}

func (fn *rejectFutureFn) Setup() {
	fn.future = beam.NewCounter(MetricsNamespace, fn.Set.Name+"_dead_letter_"+StageFuture)
}

func (fn *rejectFutureFn) ProcessElement(ctx context.Context, ts beam.EventTime, e schemas.Event, emit func(beam.EventTime, schemas.Event), dead func(DeadLetter)) {
	if err := CheckFuture(fn.Set, e, fn.Now); err != nil {
		fn.future.Inc(ctx, 1)
		// The record as decoded, in JSON: the source's own bytes are gone
		// by now.
		dead(DeadLetter{Set: fn.Set.Name, Stage: StageFuture, Reason: err.Error(), Raw: fn.Set.EncodeJSON(e)})
		return
	}
	emit(ts, e)
}
