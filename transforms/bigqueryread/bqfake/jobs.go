package bqfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	bq "google.golang.org/api/bigquery/v2"
)

// Query is a query job the REST fake received.
type Query struct {
	Project  string            // the project the job runs in (billing project)
	Location string            // "" if the client left it to BigQuery
	SQL      string            // the query text as sent
	Params   map[string]string // named parameters: name → value as sent
	Types    map[string]string // named parameters: name → type ("TIMESTAMP")
}

// HandleQueries sets the function that stands in for BigQuery's SQL engine:
// given a query job, it returns the table ("project.dataset.table", loaded
// with AddTable) that holds the query's result, or an error that fails the
// job as invalidQuery. Without it every query job fails.
func (s *Server) HandleQueries(fn func(Query) (table string, err error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queryFn = fn
}

// Queries returns the query jobs received so far, in order.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Query(nil), s.queries...)
}

// job is a finished query job.
type job struct {
	job *bq.Job
	err string // "" if the job succeeded
}

var (
	restRE   = regexp.MustCompile(`/projects/([^/]+)/(jobs|queries)(?:/([^/]+))?$`)
	tablesRE = regexp.MustCompile(`/projects/([^/]+)/datasets/([^/]+)/tables(?:/([^/]+))?$`)
)

// restHandler serves jobs.insert, jobs.getQueryResults and jobs.get for
// query jobs (a job finishes as soon as it is inserted), and tables.get
// and tables.insert.
func (s *Server) restHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m := tablesRE.FindStringSubmatch(r.URL.Path); m != nil {
			switch {
			case m[3] != "" && r.Method == http.MethodGet:
				s.getTable(w, m[1]+"."+m[2]+"."+m[3])
				return
			case m[3] == "" && r.Method == http.MethodPost:
				s.insertTable(w, r, m[1], m[2])
				return
			}
		}
		m := restRE.FindStringSubmatch(r.URL.Path)
		switch {
		case m != nil && m[2] == "jobs" && m[3] == "" && r.Method == http.MethodPost:
			s.insertJob(w, r, m[1])
		case m != nil && m[2] == "queries" && m[3] != "" && r.Method == http.MethodGet:
			s.getJob(w, m[1], m[3], true)
		case m != nil && m[2] == "jobs" && m[3] != "" && r.Method == http.MethodGet:
			s.getJob(w, m[1], m[3], false)
		default:
			writeError(w, http.StatusNotFound, "notFound", fmt.Sprintf("bqfake: no REST method %s %s", r.Method, r.URL.Path))
		}
	})
}

func (s *Server) insertJob(w http.ResponseWriter, r *http.Request, project string) {
	var j bq.Job
	if err := json.NewDecoder(r.Body).Decode(&j); err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "bqfake: bad job: "+err.Error())
		return
	}
	if j.Configuration == nil || j.Configuration.Query == nil {
		writeError(w, http.StatusBadRequest, "invalid", "bqfake: only query jobs are served")
		return
	}
	if j.JobReference == nil {
		j.JobReference = &bq.JobReference{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if j.JobReference.JobId == "" {
		j.JobReference.JobId = fmt.Sprintf("job_%d", len(s.jobs)+1)
	}
	j.JobReference.ProjectId = project
	if j.JobReference.Location == "" {
		j.JobReference.Location = "US"
	}
	if _, dup := s.jobs[j.JobReference.JobId]; dup {
		writeError(w, http.StatusConflict, "duplicate", "Already Exists: Job "+project+":"+j.JobReference.JobId)
		return
	}
	qc := j.Configuration.Query
	q := Query{Project: project, Location: j.JobReference.Location, SQL: qc.Query, Params: map[string]string{}, Types: map[string]string{}}
	for _, p := range qc.QueryParameters {
		if p.ParameterValue != nil {
			q.Params[p.Name] = p.ParameterValue.Value
		}
		if p.ParameterType != nil {
			q.Types[p.Name] = p.ParameterType.Type
		}
	}
	s.queries = append(s.queries, q)

	jb := &job{job: &j}
	var dst string
	var err error
	if s.queryFn == nil {
		err = fmt.Errorf("bqfake: no query handler (see Server.HandleQueries)")
	} else {
		dst, err = s.queryFn(q)
	}
	if err == nil {
		if _, ok := s.tables[dst]; !ok {
			err = fmt.Errorf("bqfake: query result table %q is not loaded", dst)
		}
	}
	j.Status = &bq.JobStatus{State: "DONE"}
	if err != nil {
		jb.err = err.Error()
		j.Status.ErrorResult = &bq.ErrorProto{Reason: "invalidQuery", Message: jb.err}
		j.Status.Errors = []*bq.ErrorProto{j.Status.ErrorResult}
	} else {
		p, d, t, _ := splitRef(dst)
		qc.DestinationTable = &bq.TableReference{ProjectId: p, DatasetId: d, TableId: t}
	}
	j.Kind = "bigquery#job"
	j.Id = project + ":" + j.JobReference.Location + "." + j.JobReference.JobId
	s.jobs[j.JobReference.JobId] = jb
	writeJSON(w, http.StatusOK, &j)
}

// getJob answers jobs.get, or jobs.getQueryResults (with no rows: the
// reader reads the destination table through the Storage Read API).
func (s *Server) getJob(w http.ResponseWriter, project, id string, results bool) {
	s.mu.Lock()
	jb, ok := s.jobs[id]
	s.mu.Unlock()
	if !ok || jb.job.JobReference.ProjectId != project {
		writeError(w, http.StatusNotFound, "notFound", "Not found: Job "+project+":"+id)
		return
	}
	if !results {
		writeJSON(w, http.StatusOK, jb.job)
		return
	}
	if jb.err != "" {
		writeError(w, http.StatusBadRequest, "invalidQuery", jb.err)
		return
	}
	writeJSON(w, http.StatusOK, &bq.GetQueryResultsResponse{
		Kind:         "bigquery#getQueryResultsResponse",
		JobReference: jb.job.JobReference,
		JobComplete:  true,
		Schema:       &bq.TableSchema{},
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client sees a truncated body
}

// writeError writes a Google API error body, which the REST client turns
// into a *googleapi.Error with the reason.
func writeError(w http.ResponseWriter, code int, reason, msg string) {
	msg = strings.TrimSpace(msg)
	writeJSON(w, code, map[string]any{"error": map[string]any{
		"code":    code,
		"message": msg,
		"errors":  []map[string]string{{"reason": reason, "message": msg, "domain": "global"}},
	}})
}
