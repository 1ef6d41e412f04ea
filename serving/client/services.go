package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Row is one row of a feature service's key columns: column name → entity
// key, a string for a string key and an integer (or a string holding one)
// for an int64 key, as in {"card_id": "c_1001", "user_id": 7}.
type Row map[string]any

// ServiceInfo is a served feature service: the key columns a request gives
// and the features each feature set provides.
type ServiceInfo struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Keys        []struct {
		Name string `json:"name"`
		Type string `json:"type"` // "string" or "int64"
	} `json:"keys"`
	Features []struct {
		FeatureSet string `json:"featureset"`
		// Key and KeyType name the key column of a single-key set ("" for
		// a composite key); Keys are the columns of every part, in key
		// order.
		Key     string `json:"key"`
		KeyType string `json:"key_type"`
		Keys    []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"keys"`
		Features []string `json:"features"`
	} `json:"features"`
	// Derived are the service's own derived features (none for most).
	Derived []struct {
		Name       string `json:"name"`
		Expr       string `json:"expr"`
		ResultType string `json:"result_type"`
	} `json:"derived,omitempty"`
}

// ServiceResult is one row of a feature service's answer: the row's keys
// as the server read them (int64 keys as json.Number) and, per feature set,
// its features.
type ServiceResult struct {
	Row      map[string]any              `json:"row"`
	Features map[string]map[string]Value `json:"features"`
	// Derived holds the service's own derived features, by name.
	Derived map[string]Value `json:"derived,omitempty"`
}

// Value returns the value of feature of featureSet.
func (r ServiceResult) Value(featureSet, feature string) (Value, bool) {
	v, ok := r.Features[featureSet][feature]
	return v, ok
}

// ServiceFeatures is the answer of GetService.
type ServiceFeatures struct {
	Service string    `json:"service"`
	At      time.Time `json:"at"`
	ServiceResult
	Freshness map[string]Freshness `json:"freshness"` // by feature set
}

// ServiceBatch is the answer of GetServiceMany; Results are in request
// order.
type ServiceBatch struct {
	Service   string               `json:"service"`
	At        time.Time            `json:"at"`
	Results   []ServiceResult      `json:"results"`
	Freshness map[string]Freshness `json:"freshness"` // by feature set
}

// Services returns the feature services the server serves (those whose
// every feature set the API key may read).
func (c *Client) Services(ctx context.Context) ([]ServiceInfo, error) {
	var out struct {
		Services []ServiceInfo `json:"services"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/services", nil, nil, &out); err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	return out.Services, nil
}

// GetService returns the features of service for one row of key columns at
// instant at (the server's now when at is zero).
func (c *Client) GetService(ctx context.Context, service string, row Row, at time.Time) (*ServiceFeatures, error) {
	q := url.Values{}
	for k, v := range row {
		s, err := keyText(v)
		if err != nil {
			return nil, fmt.Errorf("get service %s: key column %s: %w", service, k, err)
		}
		q.Set(k, s)
	}
	if !at.IsZero() {
		q.Set("at", at.UTC().Format(time.RFC3339Nano))
	}
	var out ServiceFeatures
	if err := c.do(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(service), q, nil, &out); err != nil {
		return nil, fmt.Errorf("get service %s: %w", service, err)
	}
	return &out, nil
}

// GetServiceMany returns the features of service for many rows at instant
// at with one request (up to the server's --max_entities rows).
func (c *Client) GetServiceMany(ctx context.Context, service string, rows []Row, at time.Time) (*ServiceBatch, error) {
	req := struct {
		Rows []Row  `json:"rows"`
		At   string `json:"at,omitempty"`
	}{Rows: rows}
	if !at.IsZero() {
		req.At = at.UTC().Format(time.RFC3339Nano)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("get service %s: %w", service, err)
	}
	var out ServiceBatch
	if err := c.do(ctx, http.MethodPost, "/v1/services/"+url.PathEscape(service), nil, body, &out); err != nil {
		return nil, fmt.Errorf("get %d rows of service %s: %w", len(rows), service, err)
	}
	return &out, nil
}

// keyText is a key as a query parameter.
func keyText(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int:
		return strconv.Itoa(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case json.Number:
		return x.String(), nil
	}
	return "", fmt.Errorf("want a string or an integer, got %T", v)
}

// OnlineFeaturesRequest is the request of Feast's feature server, POST
// /get-online-features: exactly one of Features ("featureset:feature") and
// FeatureService, and the entity keys by column.
type OnlineFeaturesRequest struct {
	Features         []string         `json:"features,omitempty"`
	FeatureService   string           `json:"feature_service,omitempty"`
	Entities         map[string][]any `json:"entities"`
	FullFeatureNames bool             `json:"full_feature_names,omitempty"`
	// At is Tandem's extension: the instant to read at (now when zero).
	At time.Time `json:"-"`
}

// FeatureVector is one column of an OnlineFeaturesResponse: a value, a
// status (PRESENT, NOT_FOUND or OUTSIDE_MAX_AGE) and an event timestamp
// per entity row. Values are typed as Value.Value is.
type FeatureVector struct {
	Values          []any       `json:"values"`
	Statuses        []string    `json:"statuses"`
	EventTimestamps []time.Time `json:"event_timestamps"`
}

// OnlineFeaturesResponse is the answer of Feast's feature server: one
// result per name of Metadata.FeatureNames, entity columns first.
type OnlineFeaturesResponse struct {
	Metadata struct {
		FeatureNames []string `json:"feature_names"`
	} `json:"metadata"`
	Results []FeatureVector `json:"results"`
}

// Column returns the column called name.
func (r *OnlineFeaturesResponse) Column(name string) (FeatureVector, bool) {
	for i, n := range r.Metadata.FeatureNames {
		if n == name && i < len(r.Results) {
			return r.Results[i], true
		}
	}
	return FeatureVector{}, false
}

// GetOnlineFeatures calls Tandem's Feast-compatible endpoint.
func (c *Client) GetOnlineFeatures(ctx context.Context, req OnlineFeaturesRequest) (*OnlineFeaturesResponse, error) {
	body := struct {
		OnlineFeaturesRequest
		At string `json:"at,omitempty"`
	}{OnlineFeaturesRequest: req}
	if !req.At.IsZero() {
		body.At = req.At.UTC().Format(time.RFC3339Nano)
	}
	data, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("get online features: %w", err)
	}
	var out OnlineFeaturesResponse
	if err := c.do(ctx, http.MethodPost, "/get-online-features", nil, data, &out); err != nil {
		return nil, fmt.Errorf("get online features: %w", err)
	}
	return &out, nil
}
