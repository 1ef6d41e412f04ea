package bigqueryread

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"cloud.google.com/go/bigquery"
	storage "cloud.google.com/go/bigquery/storage/apiv1"
	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms"
)

func init() {
	beam.RegisterType(reflect.TypeOf((*readStream)(nil)).Elem())
	register.DoFn3x1[context.Context, []byte, func(readStream), error](&sessionFn{})
	register.Emitter1[readStream]()
}

// readStream is one stream of a read session: the unit of work of the
// reading DoFn. It carries the session's Arrow schema, which every record
// batch of the stream needs to be decoded.
type readStream struct {
	Name   string // projects/P/locations/L/sessions/S/streams/N
	Table  string // the table read, for messages
	Schema []byte // serialized Arrow schema of the session
}

// sessionFn creates the read session (after running the query job of a
// query source) and emits one readStream per stream.
type sessionFn struct {
	Set          *schemas.FeatureSet `json:"set"`
	Table        string              `json:"table,omitempty"`
	Query        string              `json:"query,omitempty"`
	From         time.Time           `json:"from"`
	To           time.Time           `json:"to"`
	Project      string              `json:"project"`
	MaxStreams   int                 `json:"max_streams"`
	Location     string              `json:"location,omitempty"`
	Endpoint     string              `json:"endpoint,omitempty"`
	RESTEndpoint string              `json:"rest_endpoint,omitempty"`

	client  *storage.BigQueryReadClient
	conn    *grpc.ClientConn // the plaintext connection to Endpoint, if set
	streams beam.Counter
}

func (fn *sessionFn) Setup(ctx context.Context) error {
	var err error
	fn.client, fn.conn, err = newReadClient(ctx, fn.Endpoint)
	fn.streams = beam.NewCounter(transforms.MetricsNamespace, fn.Set.Name+"_bigquery_streams")
	return err
}

func (fn *sessionFn) Teardown() error { return closeReadClient(fn.client, fn.conn) }

// newReadClient connects to the Storage Read API: to BigQuery with
// Application Default Credentials, or to endpoint in plaintext with no
// authentication.
func newReadClient(ctx context.Context, endpoint string) (*storage.BigQueryReadClient, *grpc.ClientConn, error) {
	var opts []option.ClientOption
	var conn *grpc.ClientConn
	if endpoint != "" {
		var err error
		conn, err = grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, nil, fmt.Errorf("bigqueryread: connect to %s: %w", endpoint, err)
		}
		opts = append(opts, option.WithGRPCConn(conn))
	}
	c, err := storage.NewBigQueryReadClient(ctx, opts...)
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, nil, fmt.Errorf("bigqueryread: create Storage Read client: %w", err)
	}
	return c, conn, nil
}

func closeReadClient(c *storage.BigQueryReadClient, conn *grpc.ClientConn) error {
	var err error
	if c != nil {
		err = c.Close()
	}
	if conn != nil {
		if cerr := conn.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("bigqueryread: close Storage Read client: %w", err)
	}
	return nil
}

func (fn *sessionFn) ProcessElement(ctx context.Context, _ []byte, emit func(readStream)) error {
	table, restriction := fn.Table, RowRestriction(fn.Set.EventTime, fn.From, fn.To)
	if fn.Query != "" {
		var err error
		params := []bigquery.QueryParameter{{Name: "from", Value: fn.From}, {Name: "to", Value: fn.To}}
		if table, err = runQuery(ctx, fn.Project, fn.Location, fn.RESTEndpoint, wrapQuery(fn.Query, fn.Set.EventTime), params); err != nil {
			return fmt.Errorf("bigqueryread: feature set %s: %w", fn.Set.Name, err)
		}
		restriction = "" // the query job applied it
	}
	fields := make([]string, len(fn.Set.Fields))
	for i, f := range fn.Set.Fields {
		fields[i] = f.Name
	}
	session, err := createSession(ctx, fn.client, fn.Project, table, fields, restriction, fn.MaxStreams, time.Time{})
	if err != nil {
		return fmt.Errorf("bigqueryread: feature set %s: %w", fn.Set.Name, err)
	}
	slog.InfoContext(ctx, "bigqueryread: read session created",
		"set", fn.Set.Name, "table", table, "session", session.GetName(), "streams", len(session.GetStreams()),
		"estimated_rows", session.GetEstimatedRowCount(), "estimated_bytes", session.GetEstimatedTotalBytesScanned())
	schema := session.GetArrowSchema().GetSerializedSchema()
	for _, st := range session.GetStreams() {
		emit(readStream{Name: st.GetName(), Table: table, Schema: schema})
	}
	fn.streams.Inc(ctx, int64(len(session.GetStreams())))
	return nil
}

// createSession creates an Arrow read session of table billed to project:
// the fields (all when empty), the rows restriction keeps (all when
// empty), at most maxStreams streams (0: BigQuery chooses), as of snapshot
// (zero: now).
func createSession(ctx context.Context, client *storage.BigQueryReadClient, project, table string, fields []string, restriction string, maxStreams int, snapshot time.Time) (*storagepb.ReadSession, error) {
	p, dataset, tbl, err := splitTable(table)
	if err != nil {
		return nil, err
	}
	rs := &storagepb.ReadSession{
		Table:      tablePath(p, dataset, tbl),
		DataFormat: storagepb.DataFormat_ARROW,
		ReadOptions: &storagepb.ReadSession_TableReadOptions{
			SelectedFields: fields,
			RowRestriction: restriction,
		},
	}
	if !snapshot.IsZero() {
		rs.TableModifiers = &storagepb.ReadSession_TableModifiers{SnapshotTime: timestamppb.New(snapshot)}
	}
	session, err := client.CreateReadSession(ctx, &storagepb.CreateReadSessionRequest{
		Parent:         "projects/" + project,
		ReadSession:    rs,
		MaxStreamCount: int32(maxStreams),
	})
	if err != nil {
		return nil, fmt.Errorf("create read session for %s (billing project %s): %w", table, project, err)
	}
	if len(session.GetArrowSchema().GetSerializedSchema()) == 0 {
		return nil, fmt.Errorf("read session %s for %s has no Arrow schema", session.GetName(), table)
	}
	return session, nil
}

// runQuery runs a query job in project (and location, if set) through the
// REST API at restEndpoint (default BigQuery) and returns its destination
// table.
func runQuery(ctx context.Context, project, location, restEndpoint, sql string, params []bigquery.QueryParameter) (string, error) {
	var opts []option.ClientOption
	if restEndpoint != "" {
		opts = append(opts, option.WithEndpoint(restEndpoint), option.WithoutAuthentication())
	}
	c, err := bigquery.NewClient(ctx, project, opts...)
	if err != nil {
		return "", fmt.Errorf("create BigQuery client for project %s: %w", project, err)
	}
	defer c.Close()
	q := c.Query(sql)
	q.Parameters = params
	q.Location = location
	job, err := q.Run(ctx)
	if err != nil {
		return "", fmt.Errorf("start query job in project %s: %w", project, err)
	}
	status, err := job.Wait(ctx)
	if err == nil {
		err = status.Err()
	}
	if err != nil {
		return "", fmt.Errorf("query job %s: %w", job.ID(), err)
	}
	// The job returned by Run holds the configuration as inserted; the
	// destination table is known once the job is done.
	done, err := c.JobFromIDLocation(ctx, job.ID(), job.Location())
	if err != nil {
		return "", fmt.Errorf("get query job %s: %w", job.ID(), err)
	}
	cfg, err := done.Config()
	if err != nil {
		return "", fmt.Errorf("query job %s configuration: %w", job.ID(), err)
	}
	qc, ok := cfg.(*bigquery.QueryConfig)
	if !ok || qc.Dst == nil {
		return "", fmt.Errorf("query job %s has no destination table", job.ID())
	}
	return qc.Dst.ProjectID + "." + qc.Dst.DatasetID + "." + qc.Dst.TableID, nil
}
