package bigqueryread

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	storage "cloud.google.com/go/bigquery/storage/apiv1"
	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms"
)

func init() {
	register.DoFn4x1[context.Context, readStream, func(beam.EventTime, schemas.Event), func(transforms.DeadLetter), error](&readStreamFn{})
	register.Emitter2[beam.EventTime, schemas.Event]()
	register.Emitter1[transforms.DeadLetter]()
}

// maxRetryBackoff bounds the wait between attempts on a stream.
const maxRetryBackoff = 30 * time.Second

// readStreamFn reads one stream of a read session and decodes its rows.
type readStreamFn struct {
	Set           *schemas.FeatureSet `json:"set"`
	Endpoint      string              `json:"endpoint,omitempty"`
	RetryAttempts int                 `json:"retry_attempts"`
	RetryBackoff  time.Duration       `json:"retry_backoff"`

	client  *storage.BigQueryReadClient
	conn    *grpc.ClientConn
	decoded beam.Counter
	failed  beam.Counter
	retries beam.Counter
}

func (fn *readStreamFn) Setup(ctx context.Context) error {
	var err error
	fn.client, fn.conn, err = newReadClient(ctx, fn.Endpoint)
	fn.decoded = beam.NewCounter(transforms.MetricsNamespace, fn.Set.Name+"_events_decoded")
	fn.failed = beam.NewCounter(transforms.MetricsNamespace, fn.Set.Name+"_dead_letter_"+transforms.StageDecode)
	fn.retries = beam.NewCounter(transforms.MetricsNamespace, fn.Set.Name+"_bigquery_read_retries")
	return err
}

func (fn *readStreamFn) Teardown() error { return closeReadClient(fn.client, fn.conn) }

// ProcessElement reads stream st from the start to its end. On a transient
// error it reads again from the first row not yet emitted; rows are emitted
// only once their whole record batch has decoded, so the offset always
// counts exactly the rows emitted.
func (fn *readStreamFn) ProcessElement(ctx context.Context, st readStream, emit func(beam.EventTime, schemas.Event), dead func(transforms.DeadLetter)) error {
	dec, err := newBatchDecoder(fn.Set, st.Schema)
	if err != nil {
		return fmt.Errorf("bigqueryread: stream %s of %s: %w", st.Name, st.Table, err)
	}
	r := streamReader{client: fn.client, attempts: fn.RetryAttempts, backoff: fn.RetryBackoff, retried: func(ctx context.Context) { fn.retries.Inc(ctx, 1) }}
	return r.read(ctx, st, func(offset int64, batch []byte) (int64, error) {
		return dec.decode(batch, func(r row) { fn.decodeRow(ctx, r, emit, dead) })
	})
}

// streamReader reads streams of a read session, resuming after transient
// errors.
type streamReader struct {
	client   *storage.BigQueryReadClient
	attempts int
	backoff  time.Duration
	retried  func(context.Context) // called before each retry, if set
}

// read reads st from the start to its end, calling fn with each record
// batch and the offset of its first row; fn returns the batch's row count.
// On a transient error it reads again from the first row after the last
// batch fn took, with exponential backoff; any other error, or one that
// outlasts the attempts, is returned naming the stream and the offset.
func (r streamReader) read(ctx context.Context, st readStream, fn func(offset int64, batch []byte) (int64, error)) error {
	var offset int64
	failures := 0
	backoff := r.backoff
	for {
		before := offset
		err := r.readFrom(ctx, st, &offset, fn)
		if err == nil {
			return nil
		}
		if offset > before { // progress: a fresh run of attempts
			failures, backoff = 0, r.backoff
		}
		failures++
		if !transient(err) || ctx.Err() != nil || failures > r.attempts {
			return fmt.Errorf("bigqueryread: read stream %s of %s at row %d (attempt %d): %w", st.Name, st.Table, offset, failures, err)
		}
		slog.WarnContext(ctx, "bigqueryread: transient error, resuming stream", "stream", st.Name, "offset", offset, "attempt", failures, "error", err)
		if r.retried != nil {
			r.retried(ctx)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bigqueryread: read stream %s of %s at row %d: %w (after %v)", st.Name, st.Table, offset, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxRetryBackoff)
	}
}

// readFrom reads st from *offset to its end, advancing *offset past every
// batch fn takes.
func (r streamReader) readFrom(ctx context.Context, st readStream, offset *int64, fn func(int64, []byte) (int64, error)) error {
	ctx, cancel := context.WithCancel(ctx) // ends the call on an early return
	defer cancel()
	rows, err := r.client.ReadRows(ctx, &storagepb.ReadRowsRequest{ReadStream: st.Name, Offset: *offset})
	if err != nil {
		return err
	}
	for {
		resp, err := rows.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		batch := resp.GetArrowRecordBatch()
		if batch == nil {
			if resp.GetRowCount() != 0 {
				return fmt.Errorf("response of %d rows has no Arrow record batch", resp.GetRowCount())
			}
			continue // a response with only stats or throttle state
		}
		n, err := fn(*offset, batch.GetSerializedRecordBatch())
		if err != nil {
			// Corrupt data will not get better on a retry.
			return permanent{fmt.Errorf("decode record batch at row %d: %w", *offset, err)}
		}
		if want := resp.GetRowCount(); want != 0 && n != want {
			return permanent{fmt.Errorf("record batch at row %d has %d rows, response says %d", *offset, n, want)}
		}
		*offset += n
	}
}

// decodeRow decodes one row into an event or a dead letter.
func (fn *readStreamFn) decodeRow(ctx context.Context, r row, emit func(beam.EventTime, schemas.Event), dead func(transforms.DeadLetter)) {
	e, err := fn.Set.DecodeRecord(r.get)
	if err == nil {
		err = transforms.CheckEventTime(e)
	}
	if err != nil {
		fn.failed.Inc(ctx, 1)
		dead(transforms.DeadLetter{Set: fn.Set.Name, Stage: transforms.StageDecode, Reason: err.Error(), Raw: r.json()})
		return
	}
	fn.decoded.Inc(ctx, 1)
	emit(transforms.EventTimestamp(e), e)
}

// permanent marks an error that a retry cannot fix.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// transient reports whether err is worth reading the stream again for:
// the codes BigQuery documents as retryable for ReadRows.
func transient(err error) bool {
	var p permanent
	if errors.As(err, &p) {
		return false
	}
	s, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch s.Code() {
	case codes.Unavailable, codes.Internal, codes.Aborted, codes.ResourceExhausted, codes.DeadlineExceeded:
		return true
	}
	return false
}
