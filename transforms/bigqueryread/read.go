// Package bigqueryread provides Read, a parallel BigQuery source for the
// batch pipeline: it reads a table (or the result of a query) through the
// BigQuery Storage Read API, restricted to an event-time range that BigQuery
// applies before any row leaves it, and decodes the rows into events with a
// dead-letter output, as transforms.DecodeJSON does for JSON.
//
// # How it reads in parallel
//
// Beam's Go bigqueryio reads a whole query result from one DoFn through the
// REST API. Read instead:
//
//  1. from an Impulse, one DoFn creates a read session with
//     CreateReadSession: the selected fields are the feature set's declared
//     fields and the row restriction is the event-time range (RowRestriction),
//     so both projection and filter run inside BigQuery. BigQuery divides the
//     matching rows into up to MaxStreams streams (0, the default, lets it
//     choose from the table's size) and the DoFn emits one element per stream;
//  2. a Reshuffle breaks fusion, so the runner spreads the stream elements
//     over bundles and workers instead of reading them all in the bundle that
//     created the session (on Dataflow, fused with the Impulse, that would be
//     a single worker);
//  3. a reading DoFn reads each stream with ReadRows in Arrow format and
//     decodes every row. On a transient error (Unavailable, Internal, Aborted,
//     ResourceExhausted, DeadlineExceeded) it opens the stream again at the
//     offset of the first row it has not yet emitted, so no row is lost or
//     emitted twice; any other error fails the bundle, naming the stream.
//
// One stream is one element, read in one call; streams are the unit of
// parallelism. Dynamic rebalancing (a splittable DoFn over SplitReadStream)
// is left for when a skewed table needs it.
//
// # Data format
//
// Read requests Arrow: a session carries one serialized schema and each
// ReadRows response one record batch, which the Arrow IPC reader decodes
// column by column with no per-row schema interpretation. Column values
// become the Go values FeatureSet.DecodeRecord takes: INT64 → int64,
// FLOAT64 → float64, STRING → string, BOOL → bool, TIMESTAMP → time.Time
// (UTC), NUMERIC/BIGNUMERIC → *big.Rat, DATE → civil.Date, DATETIME →
// time.Time read as UTC, NULL → nil (a missing value); any other column type
// is passed as its string form. DecodeRecord then applies the feature set's
// field types, so a row whose value does not fit (a NULL entity key, a NaN
// amount, a STRING column holding "abc" for a float64 field) is a dead
// letter, not a failure.
//
// # Sources
//
// A table source ("project.dataset.table") is read directly. Its event-time
// column must be a TIMESTAMP, since the restriction compares it with
// TIMESTAMP literals. A query source runs as a query job in the billing
// project (Project) first, wrapped as
//
//	SELECT * FROM (
//	<query>
//	) WHERE `<event_time>` >= @from AND `<event_time>` < @to
//
// with @from and @to bound to the range as TIMESTAMP query parameters, so the
// query may use @from and @to itself (to prune partitions of the tables it
// reads, for example); its anonymous destination table is then read as
// above. A query needs the BigQuery REST API as well as the Storage Read API.
package bigqueryread

import (
	"fmt"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/tandem-fp/tandem/schemas"
)

// Source is the BigQuery data Read reads: exactly one of Table and Query.
type Source struct {
	// Table is "project.dataset.table"; the project may be domain-scoped
	// ("example.com:project").
	Table string `json:"table,omitempty"`
	// Query is a GoogleSQL query; see the package doc for how it is wrapped.
	Query string `json:"query,omitempty"`
}

// SourceOf returns the BigQuery source a feature set declares as its batch
// source, and false if it declares files instead.
func SourceOf(b schemas.BatchSource) (Source, bool) {
	src := Source{Table: b.BigQueryTable, Query: b.BigQueryQuery}
	return src, src.Table != "" || src.Query != ""
}

// Validate reports whether src names exactly one table or query, and a
// table in the form project.dataset.table.
func (src Source) Validate() error {
	switch {
	case src.Table != "" && src.Query != "":
		return fmt.Errorf("bigqueryread: source has both table %q and a query; want one", src.Table)
	case src.Table == "" && strings.TrimSpace(src.Query) == "":
		return fmt.Errorf("bigqueryread: source has neither a table nor a query")
	case src.Table != "":
		_, _, _, err := splitTable(src.Table)
		return err
	}
	return nil
}

// String returns the table, or "query" for a query source.
func (src Source) String() string {
	if src.Table != "" {
		return src.Table
	}
	return "query"
}

// splitTable splits "project.dataset.table", where the project may contain
// dots and a colon, the dataset is [A-Za-z0-9_]+ and the table has no dot.
func splitTable(ref string) (project, dataset, table string, err error) {
	bad := func() (string, string, string, error) {
		return "", "", "", fmt.Errorf("bigqueryread: bad table %q (want project.dataset.table)", ref)
	}
	i := strings.LastIndexByte(ref, '.')
	if i <= 0 || i+1 == len(ref) {
		return bad()
	}
	j := strings.LastIndexByte(ref[:i], '.')
	if j <= 0 || j+1 == i {
		return bad()
	}
	project, dataset, table = ref[:j], ref[j+1:i], ref[i+1:]
	for _, c := range dataset {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return bad()
		}
	}
	if strings.ContainsAny(project+table, "/`") {
		return bad()
	}
	return project, dataset, table, nil
}

// tablePath is the Storage Read API name of a table.
func tablePath(project, dataset, table string) string {
	return "projects/" + project + "/datasets/" + dataset + "/tables/" + table
}

// Option configures Read.
type Option func(*options)

type options struct {
	project       string
	maxStreams    int
	endpoint      string
	restEndpoint  string
	location      string
	retryAttempts int
	retryBackoff  time.Duration
	snapshot      time.Time
}

// Defaults of the options.
const (
	DefaultRetryAttempts = 8                      // transient failures in a row per stream
	DefaultRetryBackoff  = 250 * time.Millisecond // first wait; doubles, at most 30s
)

// Project sets the project that owns the read session and, for a query
// source, runs the query job and is billed for it. The default is the
// table's project; a query source requires it.
func Project(id string) Option { return func(o *options) { o.project = id } }

// MaxStreams caps the streams of the read session, and so the parallelism
// of the read. 0, the default, lets BigQuery choose from the table's size
// (at most 1,000); BigQuery may return fewer streams than asked for.
func MaxStreams(n int) Option { return func(o *options) { o.maxStreams = n } }

// Endpoint points the Storage Read API client at host:port over plaintext
// gRPC with no authentication: for bqfake or another test server. By
// default Read uses BigQuery with Application Default Credentials.
func Endpoint(hostport string) Option { return func(o *options) { o.endpoint = hostport } }

// RESTEndpoint points the BigQuery REST client, which runs the query job of
// a query source, at a base URL with no authentication: for bqfake.
func RESTEndpoint(url string) Option { return func(o *options) { o.restEndpoint = url } }

// Location sets the location a query job runs in ("US", "europe-west1");
// by default BigQuery infers it from the tables the query reads.
func Location(loc string) Option { return func(o *options) { o.location = loc } }

// Retry sets how many transient failures in a row a stream read survives,
// and the first wait between attempts, which doubles up to 30s. A failure
// after progress (rows read since the last one) starts the count again.
func Retry(attempts int, backoff time.Duration) Option {
	return func(o *options) { o.retryAttempts, o.retryBackoff = attempts, backoff }
}

// Read reads the events of set from src whose event time is in [from, to),
// in parallel over the streams of a BigQuery Storage Read session (see the
// package doc), and stamps each with its event time
// (transforms.EventTimestamp). Rows that do not decode go to the second
// output with the reason and the row as JSON, and are counted in
// tandem/<set>_dead_letter_decode, as in transforms.DecodeJSON; decoded
// events are counted in tandem/<set>_events_decoded.
//
// Read panics, while the pipeline is built, if set is nil, src is not
// valid, the range is empty or an option is out of range. Errors from
// BigQuery fail the pipeline at run time.
//
//	() → PCollection<schemas.Event>, PCollection<transforms.DeadLetter>
func Read(s beam.Scope, set *schemas.FeatureSet, src Source, from, to time.Time, opts ...Option) (events, dead beam.PCollection) {
	s = s.Scope("bigqueryread.Read")
	o := readOptions(opts)
	if set == nil {
		panic("bigqueryread.Read: nil feature set")
	}
	if err := src.Validate(); err != nil {
		panic(fmt.Sprintf("bigqueryread.Read(%s): %v", set.Name, err))
	}
	from, to = ceilMicro(from), ceilMicro(to)
	if !from.Before(to) {
		panic(fmt.Sprintf("bigqueryread.Read(%s): empty time range [%s, %s)", set.Name, from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano)))
	}
	if o.project == "" {
		if src.Table == "" {
			panic(fmt.Sprintf("bigqueryread.Read(%s): a query source needs a billing project (bigqueryread.Project)", set.Name))
		}
		o.project, _, _, _ = splitTable(src.Table)
	}
	if o.maxStreams < 0 || o.maxStreams > 1<<20 {
		panic(fmt.Sprintf("bigqueryread.Read(%s): MaxStreams %d out of range", set.Name, o.maxStreams))
	}
	if o.retryAttempts < 0 || o.retryBackoff < 0 {
		panic(fmt.Sprintf("bigqueryread.Read(%s): negative Retry(%d, %s)", set.Name, o.retryAttempts, o.retryBackoff))
	}

	imp := beam.Impulse(s)
	streams := beam.ParDo(s, &sessionFn{
		Set: set, Table: src.Table, Query: src.Query, From: from.UTC(), To: to.UTC(),
		Project: o.project, MaxStreams: o.maxStreams, Location: o.location,
		Endpoint: o.endpoint, RESTEndpoint: o.restEndpoint,
	}, imp)
	streams = beam.Reshuffle(s, streams)
	return beam.ParDo2(s, &readStreamFn{
		Set: set, Endpoint: o.endpoint,
		RetryAttempts: o.retryAttempts, RetryBackoff: o.retryBackoff,
	}, streams)
}

// ceilMicro rounds t up to a whole microsecond, BigQuery's resolution: an
// event at or after ceilMicro(t) is at or after t.
func ceilMicro(t time.Time) time.Time {
	if u := t.Truncate(time.Microsecond); !u.Equal(t) {
		return u.Add(time.Microsecond)
	}
	return t
}

// RowRestriction is the filter Read pushes down for a table source: the
// rows whose event-time column field is in [from, to), both rounded up to
// the microsecond, as TIMESTAMP literals in UTC. For example
//
//	`ts` >= TIMESTAMP("2026-03-01 00:00:00+00") AND `ts` < TIMESTAMP("2026-03-08 00:00:00+00")
func RowRestriction(field string, from, to time.Time) string {
	const layout = "2006-01-02 15:04:05.999999-07"
	return fmt.Sprintf("`%s` >= TIMESTAMP(%q) AND `%s` < TIMESTAMP(%q)",
		field, ceilMicro(from).UTC().Format(layout), field, ceilMicro(to).UTC().Format(layout))
}

// wrapQuery is the SQL of the query job of a query source: query, restricted
// to [@from, @to) on field. Trailing semicolons are dropped; the newlines
// keep a trailing -- comment from swallowing the parenthesis.
func wrapQuery(query, field string) string {
	q := strings.TrimRight(strings.TrimSpace(query), "; \t\r\n")
	return "SELECT * FROM (\n" + q + "\n) WHERE `" + field + "` >= @from AND `" + field + "` < @to"
}
