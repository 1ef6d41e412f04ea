package batchpipe

import (
	"fmt"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms/bigqueryread"
)

// BigQueryConfig is how a run reaches BigQuery, for a BigQuery source.
type BigQueryConfig struct {
	// Project owns the read sessions and runs (and pays for) a query
	// source's query job. The default is the table's project; a query
	// source needs it.
	Project string `json:"project,omitempty"`
	// MaxStreams caps the streams of the read session, the read's
	// parallelism (0: BigQuery chooses from the table's size).
	MaxStreams int `json:"max_streams,omitempty"`
	// Endpoint, when set, is the host:port of a Storage Read API server
	// reached over plaintext gRPC with no authentication, such as the
	// in-process fake bqfake; RESTEndpoint the base URL of its REST API,
	// for a query source.
	Endpoint     string `json:"endpoint,omitempty"`
	RESTEndpoint string `json:"rest_endpoint,omitempty"`
}

// check reports a BigQuery config that cannot read src.
func (c BigQueryConfig) check(src schemas.BatchSource) error {
	if src.BigQueryQuery != "" && c.Project == "" {
		return fmt.Errorf("%w: a BigQuery query source needs a billing project (--bigquery_project)", ErrConfig)
	}
	if c.MaxStreams < 0 {
		return fmt.Errorf("%w: BigQuery max streams %d is negative", ErrConfig, c.MaxStreams)
	}
	return nil
}

// ReadEvents reads the events of set from src: files (ReadFiles, which
// reads them all; the caller skips events outside [from, to)) or BigQuery
// (bigqueryread.Read, the range [from, to) pushed down).
//
//	→ PCollection<schemas.Event>, PCollection<transforms.DeadLetter>
func ReadEvents(s beam.Scope, set *schemas.FeatureSet, src schemas.BatchSource, bq BigQueryConfig, from, to time.Time) (events, dead beam.PCollection, err error) {
	if src.Files != "" {
		return ReadFiles(s, set, src.Files)
	}
	events, dead = readBigQuery(s, set, src, bq, from, to)
	return events, dead, nil
}

// CheckSource reports a source that is not exactly one well-formed kind, or
// that bq cannot read.
func CheckSource(src schemas.BatchSource, bq BigQueryConfig) error {
	if err := checkSource(src); err != nil {
		return err
	}
	return bq.check(src)
}

// readBigQuery reads the events of set in [from, to) from BigQuery, the
// range pushed down to BigQuery (bigqueryread.Read).
func readBigQuery(s beam.Scope, set *schemas.FeatureSet, src schemas.BatchSource, bq BigQueryConfig, from, to time.Time) (events, dead beam.PCollection) {
	source, _ := bigqueryread.SourceOf(src)
	return bigqueryread.Read(s, set, source, from, to, bq.Options()...)
}

// Options are the bigqueryread options of c.
func (c BigQueryConfig) Options() []bigqueryread.Option {
	var opts []bigqueryread.Option
	if c.Project != "" {
		opts = append(opts, bigqueryread.Project(c.Project))
	}
	if c.MaxStreams > 0 {
		opts = append(opts, bigqueryread.MaxStreams(c.MaxStreams))
	}
	if c.Endpoint != "" {
		opts = append(opts, bigqueryread.Endpoint(c.Endpoint))
	}
	if c.RESTEndpoint != "" {
		opts = append(opts, bigqueryread.RESTEndpoint(c.RESTEndpoint))
	}
	return opts
}
