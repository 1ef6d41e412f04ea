package bigqueryread_test

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/metrics"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/schemastest"
	"github.com/tandem-fp/tandem/transforms"
	"github.com/tandem-fp/tandem/transforms/bigqueryread"
	"github.com/tandem-fp/tandem/transforms/bigqueryread/bqfake"
)

func TestMain(m *testing.M) { ptest.Main(m) }

func init() {
	register.Function2x1[beam.EventTime, schemas.Event, string](formatStamped)
	register.Function1x1[transforms.DeadLetter, string](formatDeadLetter)
}

// The feature set under test declares every field type; fee is a NUMERIC
// column read into a float64 field.
const testDef = `
name: cards
entity: {name: card, key: card_id}
event_time: ts
fields:
  card_id: string
  merchant: string
  amount: float64
  qty: int64
  approved: bool
  settled: timestamp
  fee: float64
  ts: timestamp
features:
  - {name: n_1h, op: count, window: 1h}
  - {name: amount_sum_1h, op: sum, field: amount, window: 1h}
`

func testSet(t *testing.T) *schemas.FeatureSet {
	t.Helper()
	return schemastest.MustParse(t, testDef)
}

// The table's columns: the declared fields, plus one that is not declared
// and so must not be selected.
var testColumns = []bqfake.Column{
	{Name: "card_id", Type: bqfake.String},
	{Name: "merchant", Type: bqfake.String},
	{Name: "amount", Type: bqfake.Float64},
	{Name: "qty", Type: bqfake.Int64},
	{Name: "approved", Type: bqfake.Bool},
	{Name: "settled", Type: bqfake.Timestamp},
	{Name: "fee", Type: bqfake.Numeric},
	{Name: "ts", Type: bqfake.Timestamp},
	{Name: "internal_note", Type: bqfake.String},
}

const testTable = "tandem-test.payments.card_events"

// The read range of the tests. The BigQuery fake filters by it; nothing
// compares it with the clock.
var (
	from = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC) // fixed date: see above
	to   = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC) // fixed date: see above
)

// formatStamped renders an event with its element timestamp, so that
// expectations read as text and the stamping is checked too.
func formatStamped(ts beam.EventTime, e schemas.Event) string {
	return fmt.Sprintf("%s @%d", formatEvent(e), int64(ts))
}

func formatEvent(e schemas.Event) string {
	vals := make([]string, len(e.Values))
	for i, v := range e.Values {
		vals[i] = v.Type.String() + ":" + v.String()
	}
	return fmt.Sprintf("%s %s [%s]", e.Key, e.EventTime().Format(time.RFC3339Nano), strings.Join(vals, " "))
}

func formatDeadLetter(d transforms.DeadLetter) string {
	return fmt.Sprintf("%s/%s: %s | %s", d.Set, d.Stage, d.Reason, d.Raw)
}

// want is the expected rendering of an event with these values, in field
// order, stamped at its event time in milliseconds.
func want(key string, ts time.Time, vals ...schemas.Value) string {
	e := schemas.Event{Key: key, Time: ts.UnixMicro(), Values: vals}
	return fmt.Sprintf("%s @%d", formatEvent(e), ts.UnixMilli())
}

var null = schemas.Value{}

func at(h, m int) time.Time {
	return from.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
}

// goodRows returns the rows of the main table and the events Read must
// produce from them: rows covering every type mapping and NULL, regular
// rows, and rows outside [from, to) that the pushed-down restriction must
// keep inside BigQuery.
//
// fixed dates: rows of the BigQuery fake, which filters by the range pushed down, never by the clock.
func goodRows() (rows []map[string]any, wants []string) {
	settled := time.Date(2026, 3, 3, 12, 0, 0, 123456000, time.UTC)
	ts := at(1, 2).Add(789 * time.Microsecond)
	rows = append(rows, map[string]any{ // every type, no NULL
		"card_id": "c1", "merchant": "m1", "amount": 41.25, "qty": int64(3), "approved": true,
		"settled": settled, "fee": "0.125", "ts": ts, "internal_note": "secret",
	})
	wants = append(wants, want("c1", ts, schemas.StringValue("c1"), schemas.StringValue("m1"), schemas.Float64Value(41.25),
		schemas.Int64Value(3), schemas.BoolValue(true), schemas.TimestampValue(settled), schemas.Float64Value(0.125), schemas.TimestampValue(ts)))
	rows = append(rows, map[string]any{ // every nullable column NULL
		"card_id": "c2", "merchant": nil, "amount": nil, "qty": nil, "approved": nil, "settled": nil, "fee": nil, "ts": at(2, 0),
	})
	wants = append(wants, want("c2", at(2, 0), schemas.StringValue("c2"), null, null, null, null, null, null, schemas.TimestampValue(at(2, 0))))
	rows = append(rows, map[string]any{ // edge values
		"card_id": "", "merchant": "é\u00a0x", "amount": -0.5, "qty": int64(math.MinInt64), "approved": false,
		"fee": "-12345678901234567890.123456789", "ts": at(3, 0),
	})
	// An empty key is not a valid entity key: this row is a dead letter
	// (checked in TestReadDeadLetters); replace it here by a valid one.
	rows[len(rows)-1]["card_id"] = "c3"
	wants = append(wants, want("c3", at(3, 0), schemas.StringValue("c3"), schemas.StringValue("é\u00a0x"), schemas.Float64Value(-0.5),
		schemas.Int64Value(math.MinInt64), schemas.BoolValue(false), null, schemas.Float64Value(-12345678901234567890.123456789), schemas.TimestampValue(at(3, 0))))
	for i := range 12 { // regular rows over several entities
		key := fmt.Sprintf("k%d", i%4)
		ts := at(4+i, 7*i)
		rows = append(rows, map[string]any{"card_id": key, "merchant": fmt.Sprintf("m%d", i%3), "amount": float64(i) + 0.5, "qty": i, "approved": i%2 == 0, "ts": ts})
		wants = append(wants, want(key, ts, schemas.StringValue(key), schemas.StringValue(fmt.Sprintf("m%d", i%3)), schemas.Float64Value(float64(i)+0.5),
			schemas.Int64Value(int64(i)), schemas.BoolValue(i%2 == 0), null, null, schemas.TimestampValue(ts)))
	}
	rows = append(rows, // outside the range, or no event time: never leave BigQuery
		map[string]any{"card_id": "early", "ts": from.Add(-time.Microsecond)},
		map[string]any{"card_id": "at_to", "ts": to},
		map[string]any{"card_id": "late", "ts": to.Add(48 * time.Hour)},
		map[string]any{"card_id": "no_ts", "ts": nil},
	)
	rows = append(rows, map[string]any{"card_id": "at_from", "ts": from}) // inclusive
	wants = append(wants, want("at_from", from, schemas.StringValue("at_from"), null, null, null, null, null, null, schemas.TimestampValue(from)))
	return rows, wants
}

func newFake(t *testing.T) *bqfake.Server {
	t.Helper()
	srv, err := bqfake.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func loadTable(t *testing.T, srv *bqfake.Server, ref string, cols []bqfake.Column, rows []map[string]any) {
	t.Helper()
	if err := srv.AddTable(ref, cols, rows); err != nil {
		t.Fatalf("AddTable(%s) = %v", ref, err)
	}
}

func counter(t *testing.T, res beam.PipelineResult, name string) int64 {
	t.Helper()
	var sum int64
	for _, c := range res.Metrics().Query(func(r metrics.SingleResult) bool {
		return r.Namespace() == transforms.MetricsNamespace && r.Name() == name
	}).Counters() {
		sum += c.Result()
	}
	return sum
}

// TestRead reads a table over several streams of several pages each and
// checks every event, the type mapping (NULL included), the requests the
// fake received (selected fields, the pushed-down time range, one ReadRows
// per stream from offset 0) and the counters.
//
// fixed dates: the read range and rows of the BigQuery fake; nothing compares them with the clock.
func TestRead(t *testing.T) {
	set := testSet(t)
	srv := newFake(t)
	rows, wants := goodRows()
	loadTable(t, srv, testTable, testColumns, rows)
	srv.SetPageRows(2)

	p, s := beam.NewPipelineWithRoot()
	events, dead := bigqueryread.Read(s, set, bigqueryread.Source{Table: testTable}, from, to,
		bigqueryread.Project("billing-project"), bigqueryread.MaxStreams(3), bigqueryread.Endpoint(srv.Addr))
	passert.Equals(s, beam.ParDo(s, formatStamped, events), toAny(wants)...)
	passert.Empty(s, dead)
	res := ptest.RunAndValidate(t, p)

	reqs := srv.SessionRequests()
	if len(reqs) != 1 {
		t.Fatalf("got %d CreateReadSession requests, want 1", len(reqs))
	}
	wantReq := &storagepb.CreateReadSessionRequest{
		Parent: "projects/billing-project",
		ReadSession: &storagepb.ReadSession{
			Table:      "projects/tandem-test/datasets/payments/tables/card_events",
			DataFormat: storagepb.DataFormat_ARROW,
			ReadOptions: &storagepb.ReadSession_TableReadOptions{
				SelectedFields: []string{"card_id", "merchant", "amount", "qty", "approved", "settled", "fee", "ts"},
				RowRestriction: "`ts` >= TIMESTAMP(\"2026-03-01 00:00:00+00\") AND `ts` < TIMESTAMP(\"2026-03-02 00:00:00+00\")",
			},
		},
		MaxStreamCount: 3,
	}
	if diff := cmp.Diff(wantReq, reqs[0], protocmp.Transform()); diff != "" {
		t.Errorf("CreateReadSession request mismatch (-want +got):\n%s", diff)
	}
	var reads []string
	for _, r := range srv.ReadRequests() {
		reads = append(reads, fmt.Sprintf("%s@%d", r.GetReadStream()[strings.LastIndexByte(r.GetReadStream(), '/')+1:], r.GetOffset()))
	}
	slices.Sort(reads)
	if diff := cmp.Diff([]string{"stream0@0", "stream1@0", "stream2@0"}, reads); diff != "" {
		t.Errorf("ReadRows requests mismatch (-want +got):\n%s", diff)
	}
	if got := counter(t, res, "cards_events_decoded"); got != int64(len(wants)) {
		t.Errorf("counter cards_events_decoded = %d, want %d", got, len(wants))
	}
	if got := counter(t, res, "cards_bigquery_streams"); got != 3 {
		t.Errorf("counter cards_bigquery_streams = %d, want 3", got)
	}
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// TestReadEmpty reads a range with no rows: BigQuery returns a session with
// no streams, and the read succeeds with no events.
func TestReadEmpty(t *testing.T) {
	set := testSet(t)
	srv := newFake(t)
	rows, _ := goodRows()
	loadTable(t, srv, testTable, testColumns, rows)

	p, s := beam.NewPipelineWithRoot()
	events, dead := bigqueryread.Read(s, set, bigqueryread.Source{Table: testTable}, to.Add(time.Hour), to.Add(2*time.Hour),
		bigqueryread.Endpoint(srv.Addr))
	passert.Empty(s, events)
	passert.Empty(s, dead)
	ptest.RunAndValidate(t, p)
	if reqs := srv.SessionRequests(); len(reqs) != 1 || reqs[0].GetParent() != "projects/tandem-test" {
		t.Errorf("CreateReadSession requests = %v, want one with the table's project as parent", reqs)
	}
}

// TestReadDeadLetters checks that rows that do not decode go to the
// dead-letter output with the reason and the row as JSON (selected columns
// only), are counted, and do not stop the run.
//
// fixed dates: rows that fail to decode; nothing compares them with the clock.
func TestReadDeadLetters(t *testing.T) {
	set := testSet(t)
	srv := newFake(t)
	cols := slices.Clone(testColumns)
	cols[2] = bqfake.Column{Name: "amount", Type: bqfake.String} // a STRING column read into a float64 field
	ts := at(5, 0)
	rows := []map[string]any{
		{"card_id": "ok", "amount": "12.5", "ts": ts}, // a string that parses: not a dead letter
		{"card_id": nil, "amount": "1", "ts": ts, "internal_note": "x"},
		{"card_id": "", "ts": ts},
		{"card_id": "bad_amount", "amount": "abc", "ts": ts},
	}
	loadTable(t, srv, testTable, cols, rows)
	nanTable := testTable + "_nan"
	loadTable(t, srv, nanTable, testColumns, []map[string]any{
		{"card_id": "nan", "amount": math.NaN(), "fee": "1.5", "settled": ts, "ts": ts},
		{"card_id": "inf", "amount": math.Inf(-1), "ts": ts},
	})

	p, s := beam.NewPipelineWithRoot()
	ev1, dead1 := bigqueryread.Read(s, set, bigqueryread.Source{Table: testTable}, from, to, bigqueryread.Endpoint(srv.Addr))
	ev2, dead2 := bigqueryread.Read(s, set, bigqueryread.Source{Table: nanTable}, from, to, bigqueryread.Endpoint(srv.Addr))
	passert.Equals(s, beam.ParDo(s, formatStamped, beam.Flatten(s, ev1, ev2)),
		want("ok", ts, schemas.StringValue("ok"), null, schemas.Float64Value(12.5), null, null, null, null, schemas.TimestampValue(ts)))
	passert.Equals(s, beam.ParDo(s, formatDeadLetter, beam.Flatten(s, dead1, dead2)),
		`cards/decode: schemas: bad event: missing entity key "card_id" | {"amount":"1","approved":null,"card_id":null,"fee":null,"merchant":null,"qty":null,"settled":null,"ts":"2026-03-01T05:00:00Z"}`,
		`cards/decode: schemas: bad event: empty entity key "card_id" | {"amount":null,"approved":null,"card_id":"","fee":null,"merchant":null,"qty":null,"settled":null,"ts":"2026-03-01T05:00:00Z"}`,
		`cards/decode: schemas: bad event: field "amount": want a finite float64, got string "abc" | {"amount":"abc","approved":null,"card_id":"bad_amount","fee":null,"merchant":null,"qty":null,"settled":null,"ts":"2026-03-01T05:00:00Z"}`,
		`cards/decode: schemas: bad event: field "amount": want a finite float64, got NaN | {"amount":"NaN","approved":null,"card_id":"nan","fee":1.5,"merchant":null,"qty":null,"settled":"2026-03-01T05:00:00Z","ts":"2026-03-01T05:00:00Z"}`,
		`cards/decode: schemas: bad event: field "amount": want a finite float64, got -Inf | {"amount":"-Inf","approved":null,"card_id":"inf","fee":null,"merchant":null,"qty":null,"settled":null,"ts":"2026-03-01T05:00:00Z"}`,
	)
	res := ptest.RunAndValidate(t, p)
	if got := counter(t, res, "cards_dead_letter_decode"); got != 5 {
		t.Errorf("counter cards_dead_letter_decode = %d, want 5", got)
	}
	if got := counter(t, res, "cards_events_decoded"); got != 1 {
		t.Errorf("counter cards_events_decoded = %d, want 1", got)
	}
}

// TestReadResumes injects transient errors mid-stream: each stream is read
// to the end exactly once, resuming at the offset of the first row not yet
// emitted, with no row lost or duplicated.
func TestReadResumes(t *testing.T) {
	unavailable := status.Error(codes.Unavailable, "connection reset")
	internal := status.Error(codes.Internal, "Received RST_STREAM with error code 2")
	for _, tc := range []struct {
		name   string
		faults []bqfake.Fault
		// wantReads are the ReadRows requests as stream@offset, sorted.
		wantReads []string
	}{
		{
			name:      "unavailable mid-stream",
			faults:    []bqfake.Fault{{Method: bqfake.ReadRows, Stream: 1, Offset: 3, Err: unavailable, Times: 1}},
			wantReads: []string{"stream0@0", "stream1@0", "stream1@4", "stream2@0"},
		},
		{
			name:      "unavailable before the first row",
			faults:    []bqfake.Fault{{Method: bqfake.ReadRows, Stream: 0, Offset: 0, Err: unavailable, Times: 1}},
			wantReads: []string{"stream0@0", "stream0@0", "stream1@0", "stream2@0"},
		},
		{
			name: "internal twice on every stream",
			faults: []bqfake.Fault{
				{Method: bqfake.ReadRows, Stream: bqfake.AnyStream, Offset: 2, Err: internal, Times: 1},
				{Method: bqfake.ReadRows, Stream: bqfake.AnyStream, Offset: 4, Err: internal, Times: 1},
			},
			wantReads: []string{"stream0@0", "stream0@2", "stream0@4", "stream1@0", "stream1@2", "stream1@4", "stream2@0", "stream2@2", "stream2@4"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := testSet(t)
			srv := newFake(t)
			rows, wants := goodRows()
			loadTable(t, srv, testTable, testColumns, rows)
			srv.SetPageRows(2)
			for _, f := range tc.faults {
				srv.InjectFault(f)
			}

			p, s := beam.NewPipelineWithRoot()
			events, dead := bigqueryread.Read(s, set, bigqueryread.Source{Table: testTable}, from, to,
				bigqueryread.MaxStreams(3), bigqueryread.Endpoint(srv.Addr), bigqueryread.Retry(3, time.Millisecond))
			passert.Equals(s, beam.ParDo(s, formatStamped, events), toAny(wants)...)
			passert.Empty(s, dead)
			res := ptest.RunAndValidate(t, p)

			var reads []string
			for _, r := range srv.ReadRequests() {
				reads = append(reads, fmt.Sprintf("%s@%d", r.GetReadStream()[strings.LastIndexByte(r.GetReadStream(), '/')+1:], r.GetOffset()))
			}
			slices.Sort(reads)
			if diff := cmp.Diff(tc.wantReads, reads); diff != "" {
				t.Errorf("ReadRows requests mismatch (-want +got):\n%s", diff)
			}
			if got, want := counter(t, res, "cards_bigquery_read_retries"), int64(len(tc.wantReads)-3); got != want {
				t.Errorf("counter cards_bigquery_read_retries = %d, want %d", got, want)
			}
		})
	}
}

// TestReadFails checks that permanent errors, and transient ones that
// outlast the retries, fail the pipeline with a message naming what failed.
func TestReadFails(t *testing.T) {
	for _, tc := range []struct {
		name   string
		src    bigqueryread.Source
		fault  *bqfake.Fault
		opts   []bigqueryread.Option
		errHas []string
	}{
		{
			name:   "missing table",
			src:    bigqueryread.Source{Table: "tandem-test.payments.no_such_table"},
			errHas: []string{"create read session for tandem-test.payments.no_such_table", "NotFound", "Not found: Table tandem-test:payments.no_such_table"},
		},
		{
			name:   "permission denied",
			src:    bigqueryread.Source{Table: testTable},
			fault:  &bqfake.Fault{Method: bqfake.CreateReadSession, Err: status.Error(codes.PermissionDenied, "User does not have bigquery.readsessions.create permission")},
			errHas: []string{"create read session for " + testTable, "PermissionDenied", "bigquery.readsessions.create"},
		},
		{
			name:   "permanent error mid-stream",
			src:    bigqueryread.Source{Table: testTable},
			fault:  &bqfake.Fault{Method: bqfake.ReadRows, Stream: 0, Offset: 2, Err: status.Error(codes.FailedPrecondition, "session expired")},
			errHas: []string{"read stream projects/tandem-test/locations/us/sessions/session1/streams/stream0 of " + testTable + " at row 2", "FailedPrecondition", "session expired"},
		},
		{
			name:   "transient error that does not stop",
			src:    bigqueryread.Source{Table: testTable},
			fault:  &bqfake.Fault{Method: bqfake.ReadRows, Stream: 1, Offset: 2, Err: status.Error(codes.Unavailable, "backend down")},
			opts:   []bigqueryread.Option{bigqueryread.Retry(2, time.Millisecond)},
			errHas: []string{"streams/stream1 of " + testTable + " at row 2 (attempt 3)", "Unavailable", "backend down"},
		},
		{
			name:   "unknown column",
			src:    bigqueryread.Source{Table: "tandem-test.payments.narrow"},
			errHas: []string{"create read session for tandem-test.payments.narrow", "InvalidArgument", "selected fields do not exist", "settled"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := testSet(t)
			srv := newFake(t)
			rows, _ := goodRows()
			loadTable(t, srv, testTable, testColumns, rows)
			loadTable(t, srv, "tandem-test.payments.narrow", slices.DeleteFunc(slices.Clone(testColumns), func(c bqfake.Column) bool { return c.Name == "settled" }), nil)
			if tc.fault != nil {
				srv.InjectFault(*tc.fault)
			}
			p, s := beam.NewPipelineWithRoot()
			opts := append([]bigqueryread.Option{bigqueryread.MaxStreams(3), bigqueryread.Endpoint(srv.Addr)}, tc.opts...)
			events, _ := bigqueryread.Read(s, set, tc.src, from, to, opts...)
			beam.ParDo(s, formatStamped, events)
			err := ptest.Run(p)
			if err == nil {
				t.Fatalf("Run() = nil, want an error containing %q", tc.errHas)
			}
			for _, sub := range tc.errHas {
				if !strings.Contains(err.Error(), sub) {
					t.Errorf("Run() = %v\nwant it to contain %q", err, sub)
				}
			}
		})
	}
}

// TestReadQuery reads a query source: the query job goes to the REST fake
// with the range as @from/@to TIMESTAMP parameters, and its destination
// table is read through the Storage Read API with no row restriction.
//
// fixed dates: query parameters of the BigQuery fake; nothing compares them with the clock.
func TestReadQuery(t *testing.T) {
	set := testSet(t)
	srv := newFake(t)
	rows, wants := goodRows()
	const result = "billing-project._anon123.anon_result"
	// The fake has no SQL engine: the "result" is the rows in range.
	var inRange []map[string]any
	for _, r := range rows {
		if ts, ok := r["ts"].(time.Time); ok && !ts.Before(from) && ts.Before(to) {
			inRange = append(inRange, r)
		}
	}
	loadTable(t, srv, result, testColumns, inRange)
	srv.HandleQueries(func(q bqfake.Query) (string, error) { return result, nil })

	const query = "SELECT * FROM `tandem-test.payments.card_events` WHERE ts >= @from -- prune\n;"
	p, s := beam.NewPipelineWithRoot()
	events, dead := bigqueryread.Read(s, set, bigqueryread.Source{Query: query}, from, to,
		bigqueryread.Project("billing-project"), bigqueryread.Location("EU"),
		bigqueryread.Endpoint(srv.Addr), bigqueryread.RESTEndpoint(srv.URL))
	passert.Equals(s, beam.ParDo(s, formatStamped, events), toAny(wants)...)
	passert.Empty(s, dead)
	ptest.RunAndValidate(t, p)

	wantQ := []bqfake.Query{{
		Project:  "billing-project",
		Location: "EU",
		SQL:      "SELECT * FROM (\nSELECT * FROM `tandem-test.payments.card_events` WHERE ts >= @from -- prune\n) WHERE `ts` >= @from AND `ts` < @to",
		Params:   map[string]string{"from": "2026-03-01 00:00:00+00:00", "to": "2026-03-02 00:00:00+00:00"},
		Types:    map[string]string{"from": "TIMESTAMP", "to": "TIMESTAMP"},
	}}
	if diff := cmp.Diff(wantQ, srv.Queries()); diff != "" {
		t.Errorf("query jobs mismatch (-want +got):\n%s", diff)
	}
	reqs := srv.SessionRequests()
	if len(reqs) != 1 {
		t.Fatalf("got %d CreateReadSession requests, want 1", len(reqs))
	}
	if got, want := reqs[0].GetReadSession().GetTable(), "projects/billing-project/datasets/_anon123/tables/anon_result"; got != want {
		t.Errorf("session table = %q, want %q", got, want)
	}
	if got := reqs[0].GetReadSession().GetReadOptions().GetRowRestriction(); got != "" {
		t.Errorf("session row restriction = %q, want none (the query applied it)", got)
	}
}

// TestReadQueryFails checks that a failed query job fails the pipeline
// with BigQuery's message.
func TestReadQueryFails(t *testing.T) {
	set := testSet(t)
	srv := newFake(t)
	srv.HandleQueries(func(q bqfake.Query) (string, error) {
		return "", fmt.Errorf("Syntax error: Unexpected identifier \"SELEC\" at [2:1]")
	})
	p, s := beam.NewPipelineWithRoot()
	events, _ := bigqueryread.Read(s, set, bigqueryread.Source{Query: "SELEC 1"}, from, to,
		bigqueryread.Project("billing-project"), bigqueryread.Endpoint(srv.Addr), bigqueryread.RESTEndpoint(srv.URL))
	beam.ParDo(s, formatStamped, events)
	err := ptest.Run(p)
	if err == nil || !strings.Contains(err.Error(), "query job") || !strings.Contains(err.Error(), "Unexpected identifier") {
		t.Fatalf("Run() = %v, want a query job error with BigQuery's message", err)
	}
}

// TestReadValidates checks that Read rejects bad arguments while the
// pipeline is built.
func TestReadValidates(t *testing.T) {
	set := testSet(t)
	for _, tc := range []struct {
		name     string
		set      *schemas.FeatureSet
		src      bigqueryread.Source
		from, to time.Time
		opts     []bigqueryread.Option
		want     string
	}{
		{"nil set", nil, bigqueryread.Source{Table: testTable}, from, to, nil, "nil feature set"},
		{"no source", set, bigqueryread.Source{}, from, to, nil, "neither a table nor a query"},
		{"both", set, bigqueryread.Source{Table: testTable, Query: "SELECT 1"}, from, to, nil, "both table"},
		{"bad table", set, bigqueryread.Source{Table: "payments.card_events"}, from, to, nil, `bad table "payments.card_events"`},
		{"empty range", set, bigqueryread.Source{Table: testTable}, to, from, nil, "empty time range"},
		{"query without project", set, bigqueryread.Source{Query: "SELECT 1"}, from, to, nil, "billing project"},
		{"negative streams", set, bigqueryread.Source{Table: testTable}, from, to, []bigqueryread.Option{bigqueryread.MaxStreams(-1)}, "MaxStreams -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(fmt.Sprint(r), tc.want) {
					t.Errorf("Read panicked with %v, want a panic containing %q", r, tc.want)
				}
			}()
			_, s := beam.NewPipelineWithRoot()
			bigqueryread.Read(s, tc.set, tc.src, tc.from, tc.to, tc.opts...)
		})
	}
}

func TestSourceOf(t *testing.T) {
	for _, tc := range []struct {
		in     schemas.BatchSource
		want   bigqueryread.Source
		wantOK bool
	}{
		{schemas.BatchSource{BigQueryTable: testTable}, bigqueryread.Source{Table: testTable}, true},
		{schemas.BatchSource{BigQueryQuery: "SELECT 1"}, bigqueryread.Source{Query: "SELECT 1"}, true},
		{schemas.BatchSource{Files: "data/*.jsonl"}, bigqueryread.Source{}, false},
	} {
		got, ok := bigqueryread.SourceOf(tc.in)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("SourceOf(%+v) = %+v, %v, want %+v, %v", tc.in, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestSourceValidate(t *testing.T) {
	for _, tc := range []struct {
		table string
		ok    bool
	}{
		{"p.d.t", true},
		{"example.com:my-project.payments.card events", true},
		{"my-project.payments.card_events", true},
		{"payments.card_events", false},
		{"p..t", false},
		{"p.d.", false},
		{".d.t", false},
		{"p.d-x.t", false},
		{"p.d.t`; DROP", false},
	} {
		err := bigqueryread.Source{Table: tc.table}.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("Source{Table: %q}.Validate() = %v, want ok %v", tc.table, err, tc.ok)
		}
	}
}
