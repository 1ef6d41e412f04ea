package batchpipe

import (
	"fmt"
	"strings"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/transforms/bigqueryread"
)

// Source prefixes of the --source flag.
const (
	sourceBigQuery = "bq:"
	sourceFiles    = "files:"
)

// ParseSource parses a --source value: bq:PROJECT.DATASET.TABLE or
// files:GLOB (JSON lines or CSV with a header, by extension; see ReadFiles).
func ParseSource(s string) (schemas.BatchSource, error) {
	var src schemas.BatchSource
	switch {
	case strings.HasPrefix(s, sourceBigQuery):
		src.BigQueryTable = strings.TrimPrefix(s, sourceBigQuery)
	case strings.HasPrefix(s, sourceFiles):
		src.Files = strings.TrimPrefix(s, sourceFiles)
	default:
		return src, fmt.Errorf("%w: source %q: want bq:PROJECT.DATASET.TABLE or files:GLOB", ErrConfig, s)
	}
	return src, checkSource(src)
}

// DefaultSource is the batch source of the feature set's definition.
func DefaultSource(set *schemas.FeatureSet) (schemas.BatchSource, error) {
	src := set.Sources.Batch
	if src == (schemas.BatchSource{}) {
		return src, fmt.Errorf("%w: feature set %s has no sources.batch; give --source", ErrConfig, set.Name)
	}
	return src, checkSource(src)
}

// SourceString formats src the way --source takes it (a query as bq-query:SQL).
func SourceString(src schemas.BatchSource) string {
	switch {
	case src.Files != "":
		return sourceFiles + src.Files
	case src.BigQueryTable != "":
		return sourceBigQuery + src.BigQueryTable
	case src.BigQueryQuery != "":
		return "bq-query:" + src.BigQueryQuery
	}
	return ""
}

// checkSource reports a source that is not exactly one well-formed kind.
func checkSource(src schemas.BatchSource) error {
	n := 0
	for _, v := range []string{src.BigQueryTable, src.BigQueryQuery, src.Files} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("%w: give exactly one batch source (BigQuery table, BigQuery query or files), got %d", ErrConfig, n)
	}
	if bq, ok := bigqueryread.SourceOf(src); ok {
		if err := bq.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	if f := src.Files; f != "" {
		if _, err := fileFormat(f); err != nil {
			return err
		}
	}
	return nil
}
