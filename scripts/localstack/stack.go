package localstack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tandem-fp/tandem/pipelines/batch/batchpipe"
	"github.com/tandem-fp/tandem/pipelines/streaming/streampipe"
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/sample"
	"github.com/tandem-fp/tandem/serving"
)

// RunBatch writes events to a JSON-lines file under dir and runs the batch
// pipeline of set over it as of asOf, into the backends' table.
func (b *Backends) RunBatch(ctx context.Context, set *schemas.FeatureSet, events []schemas.Event, asOf time.Time, dir string) (batchpipe.Result, error) {
	file := filepath.Join(dir, set.Name+"-history.jsonl")
	f, err := os.Create(file)
	if err != nil {
		return batchpipe.Result{}, fmt.Errorf("write history of %s: %w", set.Name, err)
	}
	if err := sample.WriteJSONL(f, set, events); err != nil {
		f.Close()
		return batchpipe.Result{}, fmt.Errorf("write history of %s: %w", set.Name, err)
	}
	if err := f.Close(); err != nil {
		return batchpipe.Result{}, fmt.Errorf("write history of %s: %w", set.Name, err)
	}
	launching.Lock() // a batch run is bounded: hold the gate to its end
	defer launching.Unlock()
	return batchpipe.Run(ctx, batchpipe.Config{
		Set:        set,
		Source:     schemas.BatchSource{Files: file},
		AsOf:       asOf,
		Bigtable:   b.Bigtable,
		DeadLetter: filepath.Join(dir, "dead_letter", set.Name+"-batch"),
		AllowEmpty: true,
	})
}

// launching lets one pipeline of this process start at a time: prism
// (v2.77) stages a job's artifacts into one map without a lock, so two jobs
// submitted at once can end the process with "concurrent map writes" (seen
// once in 63 runs of this package's tests, when the demo started its
// streaming pipelines together). RunBatch holds it for the whole run,
// StartStream until the pipeline runs.
var launching sync.Mutex

// Stream is a streaming pipeline running in this process.
type Stream struct {
	Set   string
	drain string
	done  chan struct{}

	mu     sync.Mutex
	result streampipe.Result
	err    error
}

// StreamOptions tune StartStream.
type StreamOptions struct {
	// MaxIdle, when positive, ends the run after that long without messages.
	MaxIdle time.Duration
	// DeadLetter is the dead-letter prefix; default under the system temp dir.
	DeadLetter string
}

// StartStream starts the streaming pipeline of set on prism, in process.
// Stop drains it; Wait waits for it to end by itself (MaxIdle).
func (b *Backends) StartStream(ctx context.Context, set *schemas.FeatureSet, o StreamOptions) *Stream {
	st := &Stream{Set: set.Name, drain: fmt.Sprintf("local-%s-%d", set.Name, time.Now().UnixNano()), done: make(chan struct{})}
	if o.DeadLetter == "" {
		o.DeadLetter = filepath.Join(os.TempDir(), "tandem-dead-letter", set.Name+"-stream")
	}
	launching.Lock()
	defer launching.Unlock()
	go func() {
		defer close(st.done)
		res, err := streampipe.Run(ctx, streampipe.Options{
			Set:        set,
			Bigtable:   b.Bigtable,
			PubSub:     b.PubSub,
			DeadLetter: o.DeadLetter,
			MaxIdle:    o.MaxIdle,
			DrainName:  st.drain,
		})
		st.mu.Lock()
		st.result, st.err = res, err
		st.mu.Unlock()
	}()
	select { // the next pipeline starts once this one runs (see launching)
	case <-streampipe.Started(st.drain):
	case <-st.done:
	case <-ctx.Done():
	}
	return st
}

// Stop drains the pipeline (stop pulling, write and acknowledge what it
// holds) and waits for it to end, at most until ctx is done.
func (st *Stream) Stop(ctx context.Context) (streampipe.Result, error) {
	streampipe.Drain(st.drain)
	return st.Wait(ctx)
}

// Wait waits for the pipeline to end.
func (st *Stream) Wait(ctx context.Context) (streampipe.Result, error) {
	select {
	case <-st.done:
	case <-ctx.Done():
		return streampipe.Result{}, fmt.Errorf("streaming pipeline of %s did not stop: %w", st.Set, ctx.Err())
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.result, st.err
}

// Done is closed when the pipeline has ended.
func (st *Stream) Done() <-chan struct{} { return st.done }

// NewServer returns the serving API over the backends' table.
func (b *Backends) NewServer(cfg serving.Config) (*serving.Server, error) {
	cfg.Sets, cfg.Table = b.Sets, b.Table
	return serving.New(cfg)
}
