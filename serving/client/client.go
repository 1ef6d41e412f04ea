// Package client is a small Go client of Tandem's serving API (see
// serving/openapi.yaml): the features of one entity (Get) or many (GetMany)
// at an instant, and the served feature-set definitions (FeatureSets).
//
//	c, err := client.New("http://tandem:8080", client.WithAPIKey(key))
//	res, err := c.Get(ctx, "card_activity", "c_1001", nil, time.Time{})
//	n, _ := res.Features["txn_count_1h"].Int64()
//
// Derived features (a set's `derived:`) are requested and read by name like
// stored ones: res.Features["declined_share_1h"].Float64(); a null derived
// value (an input without a value, a division by zero) has status
// NotFound.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-fp/tandem/schemas"
)

// Client calls one Tandem server. It is safe for concurrent use.
type Client struct {
	base *url.URL
	hc   *http.Client
	key  string
}

// Option configures a Client.
type Option func(*Client)

// WithAPIKey sends key as "Authorization: Bearer KEY".
func WithAPIKey(key string) Option { return func(c *Client) { c.key = key } }

// WithHTTPClient uses hc instead of http.DefaultClient.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// New returns a client of the server at baseURL (scheme, host and an
// optional path prefix, such as "http://localhost:8080").
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("client: bad base URL %q (want e.g. http://localhost:8080)", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	c := &Client{base: u, hc: http.DefaultClient}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Status is the status of a feature value.
type Status string

// The statuses of a value; serving/openapi.yaml defines them precisely.
const (
	Present  Status = "PRESENT"   // a current value
	NotFound Status = "NOT_FOUND" // the op has no value over an empty window; Value is nil
	Stale    Status = "STALE"     // a value, but the data is behind `at` by more than the server's stale_after
)

// Value is one feature's value and status. Value is a json.Number for
// numbers, a string for strings and timestamps (RFC 3339), a bool, or nil;
// non-finite floats are the strings "NaN", "Infinity" and "-Infinity".
//
// AsOf is set when the value is exact only at an instant before the read's
// at (a read of the past whose head tile may hold later events): it is the
// feature's value at AsOf, never counting an event at or after the read's
// at. When nil the value is exact at at.
type Value struct {
	Value  any        `json:"value"`
	Status Status     `json:"status"`
	AsOf   *time.Time `json:"as_of,omitempty"`
}

// Int64 returns an integer value.
func (v Value) Int64() (int64, bool) {
	n, ok := v.Value.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := n.Int64()
	return i, err == nil
}

// Float64 returns a numeric value.
func (v Value) Float64() (float64, bool) {
	switch x := v.Value.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case string:
		f, err := strconv.ParseFloat(x, 64) // "NaN", "Infinity", "-Infinity"
		return f, err == nil
	}
	return 0, false
}

// Time returns a timestamp value.
func (v Value) Time() (time.Time, bool) {
	s, ok := v.Value.(string)
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// Freshness is what the values were built from; a zero time means the
// pipeline never wrote it.
type Freshness struct {
	BatchWatermark   time.Time `json:"batch_watermark"`
	StreamLatestTile time.Time `json:"stream_latest_tile"`
	StreamWatermark  time.Time `json:"stream_watermark"`
}

// EntityFeatures is the answer of Get.
type EntityFeatures struct {
	FeatureSet string `json:"featureset"`
	// Entity is the entity key of a single-key set; "" for a composite key.
	Entity string `json:"-"`
	// Key are the key parts of a composite key (int64 parts as
	// json.Number); nil for a single-key set.
	Key       Row              `json:"-"`
	At        time.Time        `json:"at"`
	Features  map[string]Value `json:"features"`
	Freshness Freshness        `json:"freshness"`
}

// EntityResult is one entity of a GetMany answer.
type EntityResult struct {
	Entity   string           `json:"-"` // as EntityFeatures.Entity
	Key      Row              `json:"-"` // as EntityFeatures.Key
	Features map[string]Value `json:"features"`
}

// BatchFeatures is the answer of GetMany; Results are in request order.
type BatchFeatures struct {
	FeatureSet string         `json:"featureset"`
	At         time.Time      `json:"at"`
	Results    []EntityResult `json:"results"`
	Freshness  Freshness      `json:"freshness"`
}

// Error is an error response of the server.
type Error struct {
	StatusCode int    // HTTP status
	Code       string // e.g. "unknown_feature", "unavailable"
	Message    string
	RetryAfter time.Duration // from Retry-After, on 503
}

func (e *Error) Error() string {
	return fmt.Sprintf("tandem: %d %s: %s", e.StatusCode, e.Code, e.Message)
}

// Temporary reports whether retrying later may succeed (503).
func (e *Error) Temporary() bool { return e.StatusCode == http.StatusServiceUnavailable }

// Get returns features of one entity at instant at (the server's now when
// at is zero); nil features means all of the feature set's.
func (c *Client) Get(ctx context.Context, featureSet, entity string, features []string, at time.Time) (*EntityFeatures, error) {
	q := url.Values{}
	if len(features) > 0 {
		q.Set("features", strings.Join(features, ","))
	}
	if !at.IsZero() {
		q.Set("at", at.UTC().Format(time.RFC3339Nano))
	}
	var out EntityFeatures
	path := "/v1/features/" + url.PathEscape(featureSet) + "/" + url.PathEscape(entity)
	if err := c.do(ctx, http.MethodGet, path, q, nil, &out); err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", featureSet, entity, err)
	}
	return &out, nil
}

// GetMany returns features of many entities at instant at with one request
// (up to the server's --max_entities).
func (c *Client) GetMany(ctx context.Context, featureSet string, entities, features []string, at time.Time) (*BatchFeatures, error) {
	return c.getMany(ctx, featureSet, entities, len(entities), features, at)
}

// getMany posts n entities (entity keys, or Rows of key parts).
func (c *Client) getMany(ctx context.Context, featureSet string, entities any, n int, features []string, at time.Time) (*BatchFeatures, error) {
	req := struct {
		Entities any      `json:"entities"`
		Features []string `json:"features,omitempty"`
		At       string   `json:"at,omitempty"`
	}{Entities: entities, Features: features}
	if !at.IsZero() {
		req.At = at.UTC().Format(time.RFC3339Nano)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("get many of %s: %w", featureSet, err)
	}
	var out BatchFeatures
	if err := c.do(ctx, http.MethodPost, "/v1/features/"+url.PathEscape(featureSet), nil, body, &out); err != nil {
		return nil, fmt.Errorf("get %d entities of %s: %w", n, featureSet, err)
	}
	return &out, nil
}

// FeatureSets returns the definitions the server serves (those the API key
// may read).
func (c *Client) FeatureSets(ctx context.Context) ([]*schemas.FeatureSet, error) {
	var out struct {
		FeatureSets []*schemas.FeatureSet `json:"featuresets"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/featuresets", nil, nil, &out); err != nil {
		return nil, fmt.Errorf("list feature sets: %w", err)
	}
	return out.FeatureSets, nil
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body []byte, out any) error {
	u := *c.base
	u.RawPath = c.base.EscapedPath() + path // path is escaped: keeps %2F in entity keys
	p, err := url.PathUnescape(u.RawPath)
	if err != nil {
		return err
	}
	u.Path = p
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return responseError(res, data)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

func responseError(res *http.Response, data []byte) error {
	e := &Error{StatusCode: res.StatusCode}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &body) == nil && body.Error.Code != "" {
		e.Code, e.Message = body.Error.Code, body.Error.Message
	} else {
		e.Code, e.Message = "http_error", strings.TrimSpace(string(data))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200]
		}
	}
	if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

// AsError returns err's *Error, if it has one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
