package streampipe_test

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/mtime"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/state"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/timers"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/util/reflectx"
)

// runnerState plays the part of Dataflow's per-key state and timers for a
// stateful DoFn driven directly by a test: what a bundle writes is held
// apart until the bundle is committed, and a failed bundle's writes are
// discarded, as Dataflow discards the state changes, timers and outputs of
// a work item that did not commit. Values are stored encoded with their
// Beam coders, so a read returns a copy, as from a real runner.
type runnerState struct {
	values map[string]map[string]codedValue // key → state ID → value
	timers map[string]map[string]int64      // key → timer family → firing time (µs)

	pendValues map[string]map[string]*codedValue // nil: cleared
	pendTimers map[string]map[string]*int64      // nil: cleared

	// Calls counts state reads, writes and clears, and timer sets.
	Reads, Writes, Clears, TimerSets int
}

type codedValue struct {
	typ reflect.Type
	enc []byte
}

func newRunnerState() *runnerState {
	return &runnerState{values: map[string]map[string]codedValue{}, timers: map[string]map[string]int64{}}
}

// begin starts a bundle.
func (r *runnerState) begin() {
	r.pendValues = map[string]map[string]*codedValue{}
	r.pendTimers = map[string]map[string]*int64{}
}

// commit makes the bundle's state writes and timers durable.
func (r *runnerState) commit() {
	for key, ids := range r.pendValues {
		for id, v := range ids {
			if r.values[key] == nil {
				r.values[key] = map[string]codedValue{}
			}
			if v == nil {
				delete(r.values[key], id)
			} else {
				r.values[key][id] = *v
			}
		}
	}
	for key, fams := range r.pendTimers {
		for fam, at := range fams {
			if r.timers[key] == nil {
				r.timers[key] = map[string]int64{}
			}
			if at == nil {
				delete(r.timers[key], fam)
			} else {
				r.timers[key][fam] = *at
			}
		}
	}
	r.pendValues, r.pendTimers = nil, nil
}

// discard drops the bundle's state writes and timers: the bundle failed
// after processing and will be retried.
func (r *runnerState) discard() { r.pendValues, r.pendTimers = nil, nil }

// entries is the number of state values held, over all keys.
func (r *runnerState) entries() int {
	n := 0
	for _, ids := range r.values {
		n += len(ids)
	}
	return n
}

// next returns the earliest timer at or before w (µs), if any.
func (r *runnerState) next(w int64) (key, family string, at int64, ok bool) {
	var keys []string
	for k := range r.timers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for fam, t := range r.timers[k] {
			if t <= w && (!ok || t < at) {
				key, family, at, ok = k, fam, t, true
			}
		}
	}
	return key, family, at, ok
}

// forKey returns the state and timer providers of one key in the bundle.
func (r *runnerState) forKey(key string) (state.Provider, timers.Provider) {
	p := &keyProvider{r: r, key: key}
	return p, p
}

type keyProvider struct {
	r   *runnerState
	key string
}

func (p *keyProvider) ReadValueState(id string) (any, []state.Transaction, error) {
	p.r.Reads++
	if v, ok := p.r.pendValues[p.key][id]; ok {
		if v == nil {
			return nil, nil, nil
		}
		return decodeValue(*v), nil, nil
	}
	if v, ok := p.r.values[p.key][id]; ok {
		return decodeValue(v), nil, nil
	}
	return nil, nil, nil
}

func (p *keyProvider) WriteValueState(t state.Transaction) error {
	p.r.Writes++
	v, err := encodeValue(t.Val)
	if err != nil {
		return err
	}
	p.pend()[t.Key] = &v
	return nil
}

func (p *keyProvider) ClearValueState(t state.Transaction) error {
	p.r.Clears++
	p.pend()[t.Key] = nil
	return nil
}

func (p *keyProvider) pend() map[string]*codedValue {
	if p.r.pendValues[p.key] == nil {
		p.r.pendValues[p.key] = map[string]*codedValue{}
	}
	return p.r.pendValues[p.key]
}

// Set records a timer (timers.Provider).
func (p *keyProvider) Set(t timers.TimerMap) {
	p.r.TimerSets++
	if p.r.pendTimers[p.key] == nil {
		p.r.pendTimers[p.key] = map[string]*int64{}
	}
	if t.Clear {
		p.r.pendTimers[p.key][t.Family] = nil
		return
	}
	at := mtime.Time(t.FireTimestamp).ToTime().UnixMicro()
	p.r.pendTimers[p.key][t.Family] = &at
}

func encodeValue(v any) (codedValue, error) {
	t := reflect.TypeOf(v)
	var b bytes.Buffer
	if err := beam.NewElementEncoder(t).Encode(v, &b); err != nil {
		return codedValue{}, fmt.Errorf("encode state %T: %w", v, err)
	}
	return codedValue{typ: t, enc: b.Bytes()}, nil
}

func decodeValue(v codedValue) any {
	out, err := beam.NewElementDecoder(v.typ).Decode(bytes.NewReader(v.enc))
	if err != nil {
		panic(fmt.Sprintf("decode state %v: %v", v.typ, err))
	}
	return out
}

// The rest of state.Provider is unused by the DoFns under test.

func (p *keyProvider) ReadBagState(string) ([]any, []state.Transaction, error) { panic("bag state") }
func (p *keyProvider) WriteBagState(state.Transaction) error                   { panic("bag state") }
func (p *keyProvider) ClearBagState(state.Transaction) error                   { panic("bag state") }
func (p *keyProvider) CreateAccumulatorFn(string) reflectx.Func                { panic("combining state") }
func (p *keyProvider) AddInputFn(string) reflectx.Func                         { panic("combining state") }
func (p *keyProvider) MergeAccumulatorsFn(string) reflectx.Func                { panic("combining state") }
func (p *keyProvider) ExtractOutputFn(string) reflectx.Func                    { panic("combining state") }
func (p *keyProvider) ReadMapStateValue(string, any) (any, []state.Transaction, error) {
	panic("map state")
}
func (p *keyProvider) ReadMapStateKeys(string) ([]any, []state.Transaction, error) {
	panic("map state")
}
func (p *keyProvider) WriteMapState(state.Transaction) error    { panic("map state") }
func (p *keyProvider) ClearMapStateKey(state.Transaction) error { panic("map state") }
func (p *keyProvider) ClearMapState(state.Transaction) error    { panic("map state") }
func (p *keyProvider) ReadOrderedListState(string) ([]any, []state.Transaction, error) {
	panic("ordered list state")
}
func (p *keyProvider) WriteOrderedListState(state.Transaction) error { panic("ordered list state") }
func (p *keyProvider) ClearOrderedListState(state.Transaction) error { panic("ordered list state") }

var _ = time.Second
