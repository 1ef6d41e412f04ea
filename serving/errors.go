package serving

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors of the serving API. Handlers return them (wrapped in a
// *RequestError for bad input, or with the cause for ErrUnavailable);
// writeError maps them to HTTP statuses, in that one place.
var (
	ErrBadRequest        = errors.New("serving: bad request")                  // 400 bad_request
	ErrBadJSON           = errors.New("serving: malformed JSON body")          // 400 bad_json
	ErrBadAt             = errors.New("serving: bad at")                       // 400 bad_at
	ErrUnknownFeature    = errors.New("serving: unknown feature")              // 400 unknown_feature
	ErrTooManyEntities   = errors.New("serving: too many entities")            // 400 too_many_entities
	ErrUnauthenticated   = errors.New("serving: missing or invalid API key")   // 401 unauthenticated
	ErrForbidden         = errors.New("serving: feature set not allowed")      // 403 forbidden
	ErrUnknownFeatureSet = errors.New("serving: unknown feature set")          // 404 unknown_featureset
	ErrUnknownService    = errors.New("serving: unknown feature service")      // 404 unknown_service
	ErrNotFound          = errors.New("serving: no such endpoint")             // 404 not_found
	ErrMethodNotAllowed  = errors.New("serving: method not allowed")           // 405 method_not_allowed
	ErrBodyTooLarge      = errors.New("serving: request body too large")       // 413 body_too_large
	ErrResponseTooLarge  = errors.New("serving: response too large")           // 400 response_too_large
	ErrRateLimited       = errors.New("serving: rate limited")                 // 429 rate_limited
	ErrUnavailable       = errors.New("serving: Bigtable unavailable or slow") // 503 unavailable
	ErrOverloaded        = errors.New("serving: overloaded")                   // 503 overloaded
)

// errorKinds maps each sentinel to its HTTP status and the code in the JSON
// error body. It is the only place that does.
var errorKinds = []struct {
	err    error
	status int
	code   string
}{
	{ErrBadRequest, http.StatusBadRequest, "bad_request"},
	{ErrBadJSON, http.StatusBadRequest, "bad_json"},
	{ErrBadAt, http.StatusBadRequest, "bad_at"},
	{ErrUnknownFeature, http.StatusBadRequest, "unknown_feature"},
	{ErrTooManyEntities, http.StatusBadRequest, "too_many_entities"},
	{ErrUnauthenticated, http.StatusUnauthorized, "unauthenticated"},
	{ErrForbidden, http.StatusForbidden, "forbidden"},
	{ErrUnknownFeatureSet, http.StatusNotFound, "unknown_featureset"},
	{ErrUnknownService, http.StatusNotFound, "unknown_service"},
	{ErrNotFound, http.StatusNotFound, "not_found"},
	{ErrMethodNotAllowed, http.StatusMethodNotAllowed, "method_not_allowed"},
	{ErrBodyTooLarge, http.StatusRequestEntityTooLarge, "body_too_large"},
	{ErrResponseTooLarge, http.StatusBadRequest, "response_too_large"},
	{ErrRateLimited, http.StatusTooManyRequests, "rate_limited"},
	{ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
	{ErrOverloaded, http.StatusServiceUnavailable, "overloaded"},
}

// RequestError is an error caused by the request, with a message that is
// safe to return to the client: it names what is wrong and quotes only the
// client's own input.
type RequestError struct {
	Kind    error // one of the sentinels above
	Message string
}

func (e *RequestError) Error() string { return e.Message }
func (e *RequestError) Unwrap() error { return e.Kind }

// badInput returns a *RequestError of kind with a formatted message.
func badInput(kind error, format string, args ...any) error {
	return &RequestError{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// unavailable wraps a failed Bigtable call, describing it for the log.
func unavailable(op string, err error) error {
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}

// bigtableError classifies an error of a Bigtable read: an argument the
// server built wrongly is an internal error (500); anything else (deadline,
// unreachable, overloaded, table missing) makes the service unavailable
// (503) until Bigtable recovers.
func bigtableError(op string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return unavailable(op, err)
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.Unimplemented, codes.OutOfRange:
		return fmt.Errorf("%s: %w", op, err)
	}
	return unavailable(op, err)
}

// retryAfterSeconds is the Retry-After of a 503.
const retryAfterSeconds = "1"

// writeError writes err as {"error": {"code": ..., "message": ...}} with the
// status its kind maps to. A *RequestError's message is returned as is; other
// errors get a fixed message and are logged, so no internal detail reaches
// the client.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code, httpStatus := "internal", http.StatusInternalServerError
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			code, httpStatus = k.code, k.status
			break
		}
	}
	var msg string
	var re *RequestError
	switch {
	case errors.As(err, &re):
		msg = re.Message
	case httpStatus == http.StatusServiceUnavailable:
		msg = "Bigtable is unavailable or too slow; retry later"
		if r.Context().Err() != nil {
			// The client went away and cancelled the read: nobody to
			// warn, and a flood of them must not flood the log.
			s.log.Debug("client gone", "method", r.Method, "path", r.URL.Path, "err", err)
			break
		}
		s.log.Warn("unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
	case httpStatus == http.StatusInternalServerError:
		msg = "internal error"
		s.log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	default:
		msg = errorMessage(err)
	}
	h := w.Header()
	switch httpStatus {
	case http.StatusServiceUnavailable:
		h.Set("Retry-After", retryAfterSeconds)
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Bearer realm="tandem"`)
	}
	b := make([]byte, 0, 64+len(msg))
	b = append(b, `{"error":{"code":`...)
	b = appendString(b, code)
	b = append(b, `,"message":`...)
	b = appendString(b, msg)
	b = append(b, "}}\n"...)
	writeJSON(w, httpStatus, b)
}

// errorMessage is the public message of a bare sentinel: its text without
// the package prefix.
func errorMessage(err error) string {
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return k.err.Error()[len("serving: "):]
		}
	}
	return "internal error"
}
