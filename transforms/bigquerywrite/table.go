package bigquerywrite

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

// ErrTable matches, with errors.Is, the errors of CheckTable for a table
// that cannot take the rows: an incompatible schema, or rows where
// WriteEmpty wants none.
var ErrTable = errors.New("bigquerywrite: unusable table")

// Disposition says what to do with a table that already has rows, as
// BigQuery's writeDisposition does (WRITE_TRUNCATE is not offered: the
// Storage Write API cannot replace a table's rows atomically).
type Disposition string

const (
	// WriteEmpty, the default, writes only to a table with no rows: a
	// second run into the same table fails instead of doubling it.
	WriteEmpty Disposition = "WRITE_EMPTY"
	// WriteAppend adds the rows to those already there.
	WriteAppend Disposition = "WRITE_APPEND"
)

// ParseDisposition parses WRITE_EMPTY or WRITE_APPEND (case-insensitive);
// "" is WriteEmpty.
func ParseDisposition(s string) (Disposition, error) {
	switch d := Disposition(strings.ToUpper(s)); d {
	case "", WriteEmpty:
		return WriteEmpty, nil
	case WriteAppend:
		return d, nil
	}
	return "", fmt.Errorf("write disposition %q: want WRITE_EMPTY or WRITE_APPEND (WRITE_TRUNCATE is not supported: drop the table or write a new one)", s)
}

// CheckTable makes sure table ("project.dataset.table") can take rows of
// schema, once, before a pipeline that writes it is built: it creates the
// table if it does not exist (tables.insert; the dataset must exist), and
// otherwise checks that every column of schema is in the table with the
// same type and mode (nested fields too; the table may have more NULLABLE
// columns, in any order) and, for WriteEmpty, that the table has no rows
// (committed or in its streaming buffer). A table that does not fit is an
// ErrTable error of one line saying what differs and what to do.
//
// The check is not a lock: rows another writer commits between the check
// and the pipeline's commit are kept, beside the pipeline's.
func CheckTable(ctx context.Context, table string, schema bigquery.Schema, d Disposition, opts ...Option) (created bool, err error) {
	o := newOptions(opts)
	p, ds, tbl, err := SplitTable(table)
	if err != nil {
		return false, err
	}
	var copts []option.ClientOption
	if o.restEndpoint != "" {
		copts = append(copts, option.WithEndpoint(o.restEndpoint), option.WithoutAuthentication())
	}
	c, err := bigquery.NewClient(ctx, p, copts...)
	if err != nil {
		return false, fmt.Errorf("bigquerywrite: create BigQuery client for project %s: %w", p, err)
	}
	defer c.Close()
	t := c.Dataset(ds).Table(tbl)
	md, err := t.Metadata(ctx)
	if isStatus(err, http.StatusNotFound) {
		err = t.Create(ctx, &bigquery.TableMetadata{Schema: schema})
		if err == nil {
			return true, nil
		}
		if !isStatus(err, http.StatusConflict) { // created meanwhile: check it
			return false, fmt.Errorf("bigquerywrite: create table %s: %w", table, err)
		}
		md, err = t.Metadata(ctx)
	}
	if err != nil {
		return false, fmt.Errorf("bigquerywrite: get table %s: %w", table, err)
	}
	if diff := schemaDiff("", schema, md.Schema); diff != "" {
		return false, fmt.Errorf("%w: BigQuery table %s does not fit the rows: %s; write to a new table, or drop this one (bq rm -t %s:%s.%s)",
			ErrTable, table, diff, p, ds, tbl)
	}
	rows := md.NumRows
	if md.StreamingBuffer != nil {
		rows += md.StreamingBuffer.EstimatedRows
	}
	if d != WriteAppend && rows > 0 {
		return false, fmt.Errorf("%w: BigQuery table %s already has %d rows; write to a new table, or add to them with write disposition %s",
			ErrTable, table, rows, WriteAppend)
	}
	return false, nil
}

func isStatus(err error, code int) bool {
	var gerr *googleapi.Error
	return errors.As(err, &gerr) && gerr.Code == code
}

// schemaDiff says how table, a table's schema, cannot take rows of want,
// or "" if it can; path prefixes nested names.
func schemaDiff(path string, want, table bigquery.Schema) string {
	byName := make(map[string]*bigquery.FieldSchema, len(table))
	for _, f := range table {
		byName[strings.ToLower(f.Name)] = f
	}
	for _, w := range want {
		name := path + w.Name
		f, ok := byName[strings.ToLower(w.Name)]
		if !ok {
			return fmt.Sprintf("it has no column %s (%s)", name, describe(w))
		}
		delete(byName, strings.ToLower(w.Name))
		if typeName(f.Type) != typeName(w.Type) || f.Repeated != w.Repeated || f.Required && !w.Required {
			return fmt.Sprintf("its column %s is %s, the rows have %s", name, describe(f), describe(w))
		}
		if w.Type == bigquery.RecordFieldType {
			if d := schemaDiff(name+".", w.Schema, f.Schema); d != "" {
				return d
			}
		}
	}
	for _, f := range table {
		if _, left := byName[strings.ToLower(f.Name)]; left && f.Required {
			return fmt.Sprintf("its column %s%s is REQUIRED and the rows have no such column", path, f.Name)
		}
	}
	return ""
}

// typeName is a field type's standard SQL name (the REST API may answer
// with legacy names, INTEGER for INT64).
func typeName(t bigquery.FieldType) string {
	switch t {
	case bigquery.IntegerFieldType, "INT64":
		return "INT64"
	case bigquery.FloatFieldType, "FLOAT64":
		return "FLOAT64"
	case bigquery.BooleanFieldType, "BOOL":
		return "BOOL"
	case bigquery.RecordFieldType, "STRUCT":
		return "STRUCT"
	}
	return string(t)
}

// describe is a field's mode and type, as messages give it: REPEATED
// INT64, NULLABLE STRUCT.
func describe(f *bigquery.FieldSchema) string {
	mode := "NULLABLE"
	switch {
	case f.Repeated:
		mode = "REPEATED"
	case f.Required:
		mode = "REQUIRED"
	}
	return mode + " " + typeName(f.Type)
}
