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
		if table, err = fn.runQuery(ctx); err != nil {
			return err
		}
		restriction = "" // the query job applied it
	}
	project, dataset, tbl, err := splitTable(table)
	if err != nil {
		return err
	}
	fields := make([]string, len(fn.Set.Fields))
	for i, f := range fn.Set.Fields {
		fields[i] = f.Name
	}
	session, err := fn.client.CreateReadSession(ctx, &storagepb.CreateReadSessionRequest{
		Parent: "projects/" + fn.Project,
		ReadSession: &storagepb.ReadSession{
			Table:      tablePath(project, dataset, tbl),
			DataFormat: storagepb.DataFormat_ARROW,
			ReadOptions: &storagepb.ReadSession_TableReadOptions{
				SelectedFields: fields,
				RowRestriction: restriction,
			},
		},
		MaxStreamCount: int32(fn.MaxStreams),
	})
	if err != nil {
		return fmt.Errorf("bigqueryread: create read session for %s (feature set %s, billing project %s): %w", table, fn.Set.Name, fn.Project, err)
	}
	schema := session.GetArrowSchema().GetSerializedSchema()
	if len(schema) == 0 {
		return fmt.Errorf("bigqueryread: read session %s for %s has no Arrow schema", session.GetName(), table)
	}
	slog.InfoContext(ctx, "bigqueryread: read session created",
		"set", fn.Set.Name, "table", table, "session", session.GetName(), "streams", len(session.GetStreams()),
		"estimated_rows", session.GetEstimatedRowCount(), "estimated_bytes", session.GetEstimatedTotalBytesScanned())
	for _, st := range session.GetStreams() {
		emit(readStream{Name: st.GetName(), Table: table, Schema: schema})
	}
	fn.streams.Inc(ctx, int64(len(session.GetStreams())))
	return nil
}

// runQuery runs the query job of a query source and returns its
// destination table.
func (fn *sessionFn) runQuery(ctx context.Context) (string, error) {
	var opts []option.ClientOption
	if fn.RESTEndpoint != "" {
		opts = append(opts, option.WithEndpoint(fn.RESTEndpoint), option.WithoutAuthentication())
	}
	c, err := bigquery.NewClient(ctx, fn.Project, opts...)
	if err != nil {
		return "", fmt.Errorf("bigqueryread: create BigQuery client for project %s: %w", fn.Project, err)
	}
	defer c.Close()
	q := c.Query(wrapQuery(fn.Query, fn.Set.EventTime))
	q.Parameters = []bigquery.QueryParameter{{Name: "from", Value: fn.From}, {Name: "to", Value: fn.To}}
	q.Location = fn.Location
	job, err := q.Run(ctx)
	if err != nil {
		return "", fmt.Errorf("bigqueryread: start query job for %s in project %s: %w", fn.Set.Name, fn.Project, err)
	}
	status, err := job.Wait(ctx)
	if err == nil {
		err = status.Err()
	}
	if err != nil {
		return "", fmt.Errorf("bigqueryread: query job %s for %s: %w", job.ID(), fn.Set.Name, err)
	}
	// The job returned by Run holds the configuration as inserted; the
	// destination table is known once the job is done.
	done, err := c.JobFromIDLocation(ctx, job.ID(), job.Location())
	if err != nil {
		return "", fmt.Errorf("bigqueryread: get query job %s: %w", job.ID(), err)
	}
	cfg, err := done.Config()
	if err != nil {
		return "", fmt.Errorf("bigqueryread: query job %s configuration: %w", job.ID(), err)
	}
	qc, ok := cfg.(*bigquery.QueryConfig)
	if !ok || qc.Dst == nil {
		return "", fmt.Errorf("bigqueryread: query job %s has no destination table", job.ID())
	}
	return qc.Dst.ProjectID + "." + qc.Dst.DatasetID + "." + qc.Dst.TableID, nil
}
