package bqfake

import (
	"encoding/json"
	"fmt"
	"net/http"

	bq "google.golang.org/api/bigquery/v2"
)

// getTable answers tables.get: the schema and the number of committed rows
// (there is no streaming buffer: committed rows count at once).
func (s *Server) getTable(w http.ResponseWriter, ref string) {
	s.mu.Lock()
	t, ok := s.tables[ref]
	var cols []Column
	var n int
	if ok {
		cols, n = t.cols, len(t.rows)
	}
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "notFound", "Not found: Table "+ref)
		return
	}
	p, d, tbl, _ := splitRef(ref)
	writeJSON(w, http.StatusOK, &bq.Table{
		Kind:           "bigquery#table",
		Id:             p + ":" + d + "." + tbl,
		TableReference: &bq.TableReference{ProjectId: p, DatasetId: d, TableId: tbl},
		Type:           "TABLE",
		Schema:         &bq.TableSchema{Fields: restFields(cols)},
		NumRows:        uint64(n),
	})
}

// insertTable answers tables.insert: a table with a schema of the types the
// fake serves, in any dataset (the fake has no datasets).
func (s *Server) insertTable(w http.ResponseWriter, r *http.Request, project, dataset string) {
	var t bq.Table
	if err := json.NewDecoder(r.Body).Decode(&t); err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "bqfake: bad table: "+err.Error())
		return
	}
	if t.TableReference == nil || t.TableReference.TableId == "" || t.Schema == nil {
		writeError(w, http.StatusBadRequest, "invalid", "bqfake: a table needs a reference and a schema")
		return
	}
	cols, err := fakeColumns(t.Schema.Fields)
	if err == nil {
		err = checkColumns(cols)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "bqfake: "+err.Error())
		return
	}
	ref := project + "." + dataset + "." + t.TableReference.TableId
	s.mu.Lock()
	_, exists := s.tables[ref]
	if !exists {
		s.tables[ref] = &table{cols: cols}
	}
	s.mu.Unlock()
	if exists {
		writeError(w, http.StatusConflict, "duplicate", "Already Exists: Table "+ref)
		return
	}
	s.getTable(w, ref)
}

// restTypes maps the REST API's type names, legacy and standard SQL, to
// the fake's.
var restTypes = map[string]Type{
	"INTEGER": Int64, "INT64": Int64, "FLOAT": Float64, "FLOAT64": Float64, "STRING": String,
	"BOOLEAN": Bool, "BOOL": Bool, "TIMESTAMP": Timestamp, "NUMERIC": Numeric, "RECORD": Record, "STRUCT": Record,
}

func fakeColumns(fields []*bq.TableFieldSchema) ([]Column, error) {
	cols := make([]Column, len(fields))
	for i, f := range fields {
		typ, ok := restTypes[f.Type]
		if !ok {
			return nil, fmt.Errorf("column %q: type %q is not served", f.Name, f.Type)
		}
		c := Column{Name: f.Name, Type: typ}
		switch f.Mode {
		case "", "NULLABLE":
		case "REQUIRED", "REPEATED":
			c.Mode = Mode(f.Mode)
		default:
			return nil, fmt.Errorf("column %q: bad mode %q", f.Name, f.Mode)
		}
		if len(f.Fields) > 0 {
			var err error
			if c.Fields, err = fakeColumns(f.Fields); err != nil {
				return nil, fmt.Errorf("column %q: %w", f.Name, err)
			}
		}
		cols[i] = c
	}
	return cols, nil
}

// restFields is a schema as tables.get returns it: legacy type names.
func restFields(cols []Column) []*bq.TableFieldSchema {
	legacy := map[Type]string{Int64: "INTEGER", Float64: "FLOAT", Bool: "BOOLEAN"}
	out := make([]*bq.TableFieldSchema, len(cols))
	for i, c := range cols {
		typ := string(c.Type)
		if l, ok := legacy[c.Type]; ok {
			typ = l
		}
		out[i] = &bq.TableFieldSchema{Name: c.Name, Type: typ, Mode: modeName(c.Mode), Fields: restFields(c.Fields)}
	}
	return out
}
