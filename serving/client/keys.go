package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Composite entity keys (a feature set whose entity.key lists several
// fields, such as user_merchant keyed by user_id and merchant): a Row
// names each key part, {"user_id": 7, "merchant": "Subway"}, as the server
// takes it in GET /v1/features/{featureset}?user_id=7&merchant=Subway and
// in POST /v1/features/{featureset} {"entities": [{...}]}. GetKey and
// GetManyKeys work for single-key sets too ({"card_id": "c_1001"}).
// Answers carry the parts in Key; Entity is empty for a composite key.

// GetKey returns features of the entity whose key parts are key (every key
// field of the set, nothing else) at instant at (the server's now when at
// is zero); nil features means all of the feature set's.
func (c *Client) GetKey(ctx context.Context, featureSet string, key Row, features []string, at time.Time) (*EntityFeatures, error) {
	q := url.Values{}
	for k, v := range key {
		s, err := keyText(v)
		if err != nil {
			return nil, fmt.Errorf("get %s %v: key field %s: %w", featureSet, key, k, err)
		}
		q.Set(k, s)
	}
	if len(features) > 0 {
		q.Set("features", strings.Join(features, ","))
	}
	if !at.IsZero() {
		q.Set("at", at.UTC().Format(time.RFC3339Nano))
	}
	var out EntityFeatures
	if err := c.do(ctx, http.MethodGet, "/v1/features/"+url.PathEscape(featureSet), q, nil, &out); err != nil {
		return nil, fmt.Errorf("get %s %v: %w", featureSet, key, err)
	}
	return &out, nil
}

// GetManyKeys returns features of many entities, each given by its key
// parts, at instant at with one request (up to the server's
// --max_entities).
func (c *Client) GetManyKeys(ctx context.Context, featureSet string, keys []Row, features []string, at time.Time) (*BatchFeatures, error) {
	return c.getMany(ctx, featureSet, keys, len(keys), features, at)
}

// entityJSON decodes the "entity" of an answer: a string (the key of a
// single-key set) into *entity, an object (the parts of a composite key;
// int64 parts as json.Number) into *key.
func entityJSON(raw json.RawMessage, entity *string, key *Row) error {
	raw = json.RawMessage(strings.TrimSpace(string(raw)))
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return nil
	case raw[0] == '"':
		return json.Unmarshal(raw, entity)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	return dec.Decode(key)
}

// UnmarshalJSON decodes an answer of Get or GetKey.
func (e *EntityFeatures) UnmarshalJSON(data []byte) error {
	type plain EntityFeatures
	return decodeWithEntity(data, (*plain)(e), &e.Entity, &e.Key)
}

// UnmarshalJSON decodes one result of GetMany or GetManyKeys.
func (e *EntityResult) UnmarshalJSON(data []byte) error {
	type plain EntityResult
	return decodeWithEntity(data, (*plain)(e), &e.Entity, &e.Key)
}

// decodeWithEntity decodes data into v (numbers as json.Number, as do
// decodes every answer), then its "entity" into *entity or *key (see
// entityJSON).
func decodeWithEntity(data []byte, v any, entity *string, key *Row) error {
	var j struct {
		Entity json.RawMessage `json:"entity"`
	}
	for _, dst := range []any{v, &j} {
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.UseNumber()
		if err := dec.Decode(dst); err != nil {
			return err
		}
	}
	return entityJSON(j.Entity, entity, key)
}
