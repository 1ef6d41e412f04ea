package schemas

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// validYAML is a valid definition; the rejection tests change one line of
// it, so their line numbers are those below.
const validYAML = `name: card_activity
entity: {name: card, key: card_id}
event_time: ts
fields:
  card_id: string
  merchant: string
  amount: float64
  approved: bool
  ts: timestamp
sources:
  batch: {files: data/*.jsonl}
  stream: {pubsub: {subscription: projects/tandem-local/subscriptions/card-events}}
allowed_lateness: 10m
features:
  - {name: txn_count_1h, op: count, window: 1h}
  - {name: amount_mean_24h, op: mean, field: amount, window: 24h}
  - {name: merchants_7d, op: approx_count_distinct, field: merchant, window: 7d}
`

func TestParseValid(t *testing.T) {
	fs, err := Parse("defs/x.yaml", []byte(validYAML))
	if err != nil {
		t.Fatalf("Parse(validYAML) error = %v", err)
	}
	want := &FeatureSet{
		Name:      "card_activity",
		Entity:    Entity{Name: "card", Keys: []string{"card_id"}},
		EventTime: "ts",
		Fields: []Field{
			{"card_id", String}, {"merchant", String}, {"amount", Float64}, {"approved", Bool}, {"ts", Timestamp},
		},
		Sources: Sources{
			Batch:  BatchSource{Files: filepath.Join("defs", "data", "*.jsonl")},
			Stream: StreamSource{Subscription: "projects/tandem-local/subscriptions/card-events"},
		},
		AllowedLateness: 10 * time.Minute,
		MaxFuture:       time.Minute,
		Retention:       7*24*time.Hour + DefaultRetentionSlack,
		Features: []Feature{
			{Name: "txn_count_1h", Op: OpCount, Window: time.Hour, Tile: time.Minute, Index: 0, FieldIndex: -1, FieldType: Null},
			{Name: "amount_mean_24h", Op: OpMean, Field: "amount", Window: 24 * time.Hour, Tile: 15 * time.Minute, Index: 1, FieldIndex: 2, FieldType: Float64},
			{Name: "merchants_7d", Op: OpApproxCountDistinct, Field: "merchant", Window: 7 * 24 * time.Hour, Tile: 3 * time.Hour, Index: 2, FieldIndex: 1, FieldType: String},
		},
		File: "defs/x.yaml",
	}
	if diff := cmp.Diff(want, fs, cmpopts.IgnoreUnexported(FeatureSet{})); diff != "" {
		t.Errorf("Parse(validYAML) mismatch (-want +got):\n%s", diff)
	}
	if got := fs.KeyIndexes(); !cmp.Equal(got, []int{0}) {
		t.Errorf("KeyIndexes() = %v, want [0]", got)
	}
	if got := fs.TimeIndex(); got != 4 {
		t.Errorf("TimeIndex() = %d, want 4", got)
	}
	if f, ok := fs.Feature("merchants_7d"); !ok || f.Qualifier() != "merchants_7d@3h" {
		t.Errorf("Feature(merchants_7d) = %+v, %v; want qualifier merchants_7d@3h", f, ok)
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name     string
		old, new string   // replace old by new in validYAML
		want     []string // the lines of the error, in order
	}{
		{
			name: "typo'd key",
			old:  "allowed_lateness: 10m", new: "alowed_lateness: 10m",
			want: []string{`x.yaml:13: alowed_lateness: unknown key (did you mean allowed_lateness?)`},
		},
		{
			name: "unknown key",
			old:  "allowed_lateness: 10m", new: "owner: fraud-team",
			want: []string{`x.yaml:13: owner: unknown key (want one of name, entity, event_time, fields, sources, allowed_lateness, max_future, retention, stale_after, features, derived)`},
		},
		{
			name: "typo'd feature key",
			old:  "{name: txn_count_1h, op: count", new: "{name: txn_count_1h, opp: count",
			want: []string{
				`x.yaml:15: features[0].opp: unknown key (did you mean op?)`,
				`x.yaml:15: features[0].op: required key is missing`,
			},
		},
		{
			name: "unknown op",
			old:  "op: mean", new: "op: avg",
			want: []string{`x.yaml:16: features[1].op: unknown op "avg" (want one of count, sum, min, max, mean, last, approx_count_distinct, stddev, first, last_k, first_k, top_k, approx_percentile, histogram)`},
		},
		{
			name: "mean over a string field",
			old:  "op: mean, field: amount", new: "op: mean, field: merchant",
			want: []string{`x.yaml:16: features[1].field: mean cannot take field "merchant" of type string`},
		},
		{
			name: "undeclared field",
			old:  "op: mean, field: amount", new: "op: mean, field: amont",
			want: []string{`x.yaml:16: features[1].field: field "amont" is not declared in fields (did you mean amount?)`},
		},
		{
			name: "op without field",
			old:  "op: mean, field: amount,", new: "op: mean,",
			want: []string{`x.yaml:16: features[1].field: required key is missing: mean needs a field`},
		},
		{
			name: "count with field",
			old:  "op: count,", new: "op: count, field: amount,",
			want: []string{`x.yaml:15: features[0].field: count takes no field`},
		},
		{
			name: "bad duration",
			old:  "window: 1h}", new: "window: 1hr}",
			want: []string{`x.yaml:15: features[0].window: bad duration "1hr" (want a whole number followed by s, m, h or d)`},
		},
		{
			name: "fractional duration",
			old:  "window: 1h}", new: "window: 1.5h}",
			want: []string{`x.yaml:15: features[0].window: bad duration "1.5h" (want a whole number followed by s, m, h or d)`},
		},
		{
			name: "Go duration",
			old:  "allowed_lateness: 10m", new: "allowed_lateness: 1h30m",
			want: []string{`x.yaml:13: allowed_lateness: bad duration "1h30m" (want a whole number followed by s, m, h or d)`},
		},
		{
			name: "zero window",
			old:  "window: 1h}", new: "window: 0h}",
			want: []string{`x.yaml:15: features[0].window: must be positive`},
		},
		{
			name: "missing window",
			old:  "op: count, window: 1h}", new: "op: count}",
			want: []string{`x.yaml:15: features[0].window: required key is missing`},
		},
		{
			name: "window that tiles cannot cover",
			old:  "window: 1h}", new: "window: 86401s}",
			want: []string{`x.yaml:15: features[0].window: window 86401s needs 86401 tiles of 1s, more than the 1000 a read may touch; choose a larger tile or a rounder window`},
		},
		{
			name: "tile that does not divide the window",
			old:  "window: 1h}", new: "window: 1h, tile: 7m}",
			want: []string{`x.yaml:15: features[0].tile: tile 7m does not divide window 1h`},
		},
		{
			name: "too many tiles",
			old:  "window: 7d}", new: "window: 7d, tile: 1m}",
			want: []string{`x.yaml:17: features[2].tile: window 7d needs 10080 tiles of 1m, more than the 1000 a read may touch; choose a larger tile or a rounder window`},
		},
		{
			name: "duplicate feature names",
			old:  "{name: merchants_7d", new: "{name: amount_mean_24h",
			want: []string{`x.yaml:17: features[2].name: duplicate feature name "amount_mean_24h" (first defined at line 16)`},
		},
		{
			name: "bad feature name",
			old:  "{name: txn_count_1h", new: "{name: 1h_count",
			want: []string{`x.yaml:15: features[0].name: bad name "1h_count" (want a lowercase letter, then lowercase letters, digits or _)`},
		},
		{
			name: "bad set name",
			old:  "name: card_activity", new: "name: Card-Activity",
			want: []string{`x.yaml:1: name: bad name "Card-Activity" (want a lowercase letter, then lowercase letters, digits or _)`},
		},
		{
			name: "bad entity name",
			old:  "{name: card,", new: "{name: 'the card',",
			want: []string{`x.yaml:2: entity.name: bad name "the card" (want a lowercase letter, then lowercase letters, digits or _)`},
		},
		{
			name: "bad field name",
			old:  "  approved: bool", new: "  is-approved: bool",
			want: []string{`x.yaml:8: fields.is-approved: bad field name "is-approved" (want a letter or _, then letters, digits or _)`},
		},
		{
			name: "unknown field type",
			old:  "amount: float64", new: "amount: float",
			want: []string{`x.yaml:7: fields.amount: unknown type "float" (want one of string, int64, float64, bool, timestamp)`},
		},
		{
			name: "entity key not declared",
			old:  "key: card_id}", new: "key: card}",
			want: []string{`x.yaml:2: entity.key: field "card" is not declared in fields`},
		},
		{
			name: "entity key of the wrong type",
			old:  "key: card_id}", new: "key: amount}",
			want: []string{`x.yaml:2: entity.key: field "amount" has type float64; an entity key must be string or int64`},
		},
		{
			name: "entity key missing",
			old:  "{name: card, key: card_id}", new: "{name: card}",
			want: []string{`x.yaml:2: entity.key: required key is missing`},
		},
		{
			name: "event time not a timestamp",
			old:  "event_time: ts", new: "event_time: merchant",
			want: []string{`x.yaml:3: event_time: field "merchant" has type string; the event time must be a timestamp`},
		},
		{
			name: "event time not declared",
			old:  "event_time: ts", new: "event_time: tss",
			want: []string{`x.yaml:3: event_time: field "tss" is not declared in fields (did you mean ts?)`},
		},
		{
			name: "event time missing",
			old:  "event_time: ts\n", new: "",
			want: []string{`x.yaml:1: event_time: required key is missing`},
		},
		{
			name: "retention shorter than a window",
			old:  "allowed_lateness: 10m", new: "allowed_lateness: 10m\nretention: 1d",
			want: []string{`x.yaml:14: retention: 1d is shorter than what feature "merchants_7d" reads, its window 7d plus one tile 3h`},
		},
		{
			name: "bigquery table in legacy form",
			old:  "batch: {files: data/*.jsonl}", new: "batch: {bigquery: {table: my-project:payments.card_events}}",
			want: []string{`x.yaml:11: sources.batch.bigquery.table: bad table "my-project:payments.card_events" (want project.dataset.table); in standard SQL form that is "my-project.payments.card_events"`},
		},
		{
			name: "bigquery table without project",
			old:  "batch: {files: data/*.jsonl}", new: "batch: {bigquery: {table: payments.card_events}}",
			want: []string{`x.yaml:11: sources.batch.bigquery.table: bad table "payments.card_events" (want project.dataset.table)`},
		},
		{
			name: "bigquery table and query",
			old:  "batch: {files: data/*.jsonl}", new: "batch: {bigquery: {table: p.d.t, query: SELECT 1}}",
			want: []string{`x.yaml:11: sources.batch.bigquery: give one of table or query, not both`},
		},
		{
			name: "bigquery and files",
			old:  "batch: {files: data/*.jsonl}", new: "batch: {files: data/*.jsonl, bigquery: {table: p.d.t}}",
			want: []string{`x.yaml:11: sources.batch: give one of bigquery or files, not both`},
		},
		{
			name: "empty batch source",
			old:  "batch: {files: data/*.jsonl}", new: "batch: {}",
			want: []string{`x.yaml:11: sources.batch: want bigquery: {table: ...}, bigquery: {query: ...} or files: GLOB`},
		},
		{
			name: "bad glob",
			old:  "batch: {files: data/*.jsonl}", new: "batch: {files: 'data/[*.jsonl'}",
			want: []string{`x.yaml:11: sources.batch.files: bad glob "data/[*.jsonl": syntax error in pattern`},
		},
		{
			name: "typo'd batch source",
			old:  "batch: {files: data/*.jsonl}", new: "batch: {bigqeury: {table: p.d.t}}",
			want: []string{`x.yaml:11: sources.batch.bigqeury: unknown key (did you mean bigquery?)`},
		},
		{
			name: "merge key",
			old:  "  ts: timestamp", new: "  ts: timestamp\n  <<: {amount: float64}",
			want: []string{`x.yaml:10: fields.<<: merge keys are not supported`},
		},
		{
			name: "bad subscription",
			old:  "subscription: projects/tandem-local/subscriptions/card-events", new: "subscription: card-events",
			want: []string{`x.yaml:12: sources.stream.pubsub.subscription: bad subscription "card-events": want projects/PROJECT/subscriptions/NAME`},
		},
		{
			name: "subscription too short everywhere",
			old:  "subscription: projects/tandem-local/subscriptions/card-events", new: "subscription: projects/p/subscriptions/s",
			want: []string{`x.yaml:12: sources.stream.pubsub.subscription: bad subscription "projects/p/subscriptions/s": project ID "p" has 1 character, want 6 to 30; subscription name "s" has 1 character, want 3 to 255`},
		},
		{
			name: "topic for subscription",
			old:  "subscription: projects/tandem-local/subscriptions/card-events", new: "topic: projects/tandem-local/topics/card-events",
			want: []string{
				`x.yaml:12: sources.stream.pubsub.topic: unknown key (want one of subscription)`,
				`x.yaml:12: sources.stream.pubsub.subscription: required key is missing`,
			},
		},
		{
			name: "no features",
			old:  "features:\n  - {name: txn_count_1h, op: count, window: 1h}\n  - {name: amount_mean_24h, op: mean, field: amount, window: 24h}\n  - {name: merchants_7d, op: approx_count_distinct, field: merchant, window: 7d}\n",
			new:  "features: []\n",
			want: []string{`x.yaml:14: features: define at least one feature`},
		},
		{
			name: "features not a list",
			old:  "features:\n  - {name: txn_count_1h, op: count, window: 1h}\n  - {name: amount_mean_24h, op: mean, field: amount, window: 24h}\n  - {name: merchants_7d, op: approx_count_distinct, field: merchant, window: 7d}\n",
			new:  "features:\n  txn_count_1h: {op: count, window: 1h}\n",
			want: []string{`x.yaml:15: features: want a list, got a mapping`},
		},
		{
			name: "empty value",
			old:  "event_time: ts", new: "event_time:",
			want: []string{`x.yaml:3: event_time: must not be empty`},
		},
		{
			name: "mapping for a value",
			old:  "event_time: ts", new: "event_time: {field: ts}",
			want: []string{`x.yaml:3: event_time: want a single value, got a mapping`},
		},
		{
			name: "several problems, by line",
			old:  "event_time: ts", new: "event_time: tz\nowner: x",
			want: []string{
				`x.yaml:3: event_time: field "tz" is not declared in fields (did you mean ts?)`,
				`x.yaml:4: owner: unknown key (want one of name, entity, event_time, fields, sources, allowed_lateness, max_future, retention, stale_after, features, derived)`,
			},
		},
		{
			name: "YAML syntax error",
			old:  "entity: {name: card, key: card_id}", new: "entity: {name: card, key: card_id",
			want: []string{`x.yaml:3: YAML syntax error: ',' or '}' must be specified`},
		},
		{
			name: "duplicate YAML key",
			old:  "  ts: timestamp", new: "  ts: timestamp\n  amount: int64",
			want: []string{`x.yaml:10: YAML syntax error: mapping key "amount" already defined at [7:3]`},
		},
		{
			name: "two documents",
			old:  "window: 7d}\n", new: "window: 7d}\n---\nname: other\n",
			want: []string{`x.yaml:19: a definition file holds one YAML document, found 2`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(validYAML, tc.old) {
				t.Fatalf("validYAML does not contain %q", tc.old)
			}
			in := strings.Replace(validYAML, tc.old, tc.new, 1)
			_, err := Parse("x.yaml", []byte(in))
			if err == nil {
				t.Fatalf("Parse(%q) error = nil, want %q", in, tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Parse(%q) error = %v, does not match ErrInvalid", in, err)
			}
			if diff := cmp.Diff(tc.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("Parse(%q) error mismatch (-want +got):\n%s", in, diff)
			}
		})
	}
}

func TestParseWhole(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", `x.yaml:1: empty definition (want name, entity, event_time, fields and features)`},
		{"comments only", "# nothing yet\n", `x.yaml:1: empty definition (want name, entity, event_time, fields and features)`},
		{"a list", "- name: x\n", `x.yaml:1: a feature-set definition must be a mapping (name: ..., entity: ..., fields: ..., features: ...), got a list`},
		{"a scalar", "card_activity\n", `x.yaml:1: a feature-set definition must be a mapping (name: ..., entity: ..., fields: ..., features: ...), got a string`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(tc.in))
			if err == nil || err.Error() != tc.want || !errors.Is(err, ErrInvalid) {
				t.Errorf("Parse(%q) error = %v, want %s", tc.in, err, tc.want)
			}
		})
	}
}

func TestDefinitionError(t *testing.T) {
	_, err := Parse("x.yaml", []byte(strings.Replace(validYAML, "op: mean", "op: avg", 1)))
	var de *DefinitionError
	if !errors.As(err, &de) {
		t.Fatalf("Parse error = %#v, want a *DefinitionError", err)
	}
	want := &DefinitionError{File: "x.yaml", Line: 16, Field: "features[1].op",
		Reason: `unknown op "avg" (want one of count, sum, min, max, mean, last, approx_count_distinct, stddev, first, last_k, first_k, top_k, approx_percentile, histogram)`}
	if diff := cmp.Diff(want, de); diff != "" {
		t.Errorf("DefinitionError mismatch (-want +got):\n%s", diff)
	}
	noFile := &DefinitionError{Line: 3, Field: "entity.key", Reason: "r"}
	if got, want := noFile.Error(), "line 3: entity.key: r"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestParseOptional(t *testing.T) {
	// Only a stream source, a BigQuery query, anchors and aliases, a block
	// scalar, explicit tiles and retention, zero lateness, int64 key.
	const in = `
name: users
entity:
  name: user
  key: user_id
event_time: at
fields:
  user_id: int64
  dwell: int64
  at: timestamp
sources:
  batch:
    bigquery:
      query: |
        SELECT user_id, dwell, at
        FROM ` + "`p.web.views`" + `
allowed_lateness: 0s
retention: 40d
features:
  - name: dwell_sum_1d
    op: sum
    field: &f dwell
    window: &w 1d
  - {name: dwell_min_1d, op: min, field: *f, window: *w, tile: 1h}
  - {name: dwell_stddev_30d, op: stddev, field: dwell, window: 30d}
`
	fs, err := Parse("", []byte(in))
	if err != nil {
		t.Fatalf("Parse error = %v", err)
	}
	if got, want := fs.Sources.Batch.BigQueryQuery, "SELECT user_id, dwell, at\nFROM `p.web.views`\n"; got != want {
		t.Errorf("query = %q, want %q", got, want)
	}
	if fs.Sources.Stream.Subscription != "" || fs.AllowedLateness != 0 || fs.Retention != 40*24*time.Hour {
		t.Errorf("Parse = %+v, want no stream, zero lateness, 40d retention", fs)
	}
	want := []Feature{
		{Name: "dwell_sum_1d", Op: OpSum, Field: "dwell", Window: 24 * time.Hour, Tile: 15 * time.Minute, Index: 0, FieldIndex: 1, FieldType: Int64},
		{Name: "dwell_min_1d", Op: OpMin, Field: "dwell", Window: 24 * time.Hour, Tile: time.Hour, Index: 1, FieldIndex: 1, FieldType: Int64},
		{Name: "dwell_stddev_30d", Op: OpStddev, Field: "dwell", Window: 30 * 24 * time.Hour, Tile: 6 * time.Hour, Index: 2, FieldIndex: 1, FieldType: Int64},
	}
	if diff := cmp.Diff(want, fs.Features); diff != "" {
		t.Errorf("Features mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadExamples(t *testing.T) {
	sets, err := LoadAll(".")
	if err != nil {
		t.Fatalf("LoadAll(.) error = %v", err)
	}
	var names []string
	for _, fs := range sets {
		names = append(names, fs.Name)
		if fs.Sources.Batch.Files == "" {
			continue
		}
		files, err := filepath.Glob(fs.Sources.Batch.Files)
		if err != nil || len(files) == 0 {
			t.Errorf("%s: batch files %q match nothing (%v)", fs.File, fs.Sources.Batch.Files, err)
		}
	}
	if diff := cmp.Diff([]string{"card_activity", "user_merchant", "user_sessions"}, names); diff != "" {
		t.Errorf("LoadAll(.) names mismatch (-want +got):\n%s", diff)
	}
	fs, err := Load("card_activity.yaml")
	if err != nil {
		t.Fatalf("Load error = %v", err)
	}
	if got, want := fs.Sources.Batch.Files, filepath.Join("data", "card_activity.jsonl"); got != want {
		t.Errorf("card_activity batch files = %q, want %q", got, want)
	}
	if f, _ := fs.Feature("last_merchant"); f.Tile != time.Hour {
		t.Errorf("last_merchant tile = %v, want 1h", f.Tile)
	}
}

func TestLoadAll(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string { return writeFile(t, dir, name, content) }
	a := write("a.yaml", validYAML)
	write("notes.txt", "not a definition")
	write("sub/c.yaml", "not: loaded")
	b := write("b.yml", strings.Replace(validYAML, "name: card_activity", "name: other", 1))

	sets, err := LoadAll(dir)
	if err != nil {
		t.Fatalf("LoadAll(%s) error = %v", dir, err)
	}
	if len(sets) != 2 || sets[0].File != a || sets[1].File != b {
		t.Errorf("LoadAll(%s) = %d sets, want a.yaml then b.yml", dir, len(sets))
	}
	if got, want := sets[0].Sources.Batch.Files, filepath.Join(dir, "data", "*.jsonl"); got != want {
		t.Errorf("batch files = %q, want %q (resolved against the definition's directory)", got, want)
	}

	// The same file twice (as a file and in its directory) loads once.
	if sets, err := LoadAll(a, dir); err != nil || len(sets) != 2 {
		t.Errorf("LoadAll(a, dir) = %d sets, %v; want 2, nil", len(sets), err)
	}

	dup := write("dup/d.yaml", "# a copy\n"+validYAML)
	_, err = LoadAll(a, dup)
	want := dup + `:2: name: duplicate feature set name "card_activity" (also defined at ` + a + `:1)`
	if err == nil || err.Error() != want || !errors.Is(err, ErrInvalid) {
		t.Errorf("LoadAll(dup) error = %v, want %s", err, want)
	}

	bad := write("bad/x.yaml", strings.Replace(validYAML, "op: mean", "op: avg", 1))
	_, err = LoadAll(filepath.Dir(bad), filepath.Join(dir, "missing.yaml"), filepath.Join(dir, "sub"))
	if err == nil || !errors.Is(err, ErrInvalid) || !errors.Is(err, os.ErrNotExist) ||
		!strings.Contains(err.Error(), bad+`:16: features[1].op: unknown op "avg"`) {
		t.Errorf("LoadAll(bad, missing) error = %v, want the definition error and a not-exist error", err)
	}

	if _, err := LoadAll(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no *.yaml or *.yml files") {
		t.Errorf("LoadAll(empty dir) error = %v, want no *.yaml files", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) || errors.Is(err, ErrInvalid) {
		t.Errorf("Load(missing) error = %v, want not exist", err)
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration // -1 for an error
	}{
		{"90s", 90 * time.Second},
		{"10m", 10 * time.Minute},
		{"24h", 24 * time.Hour},
		{"7d", 7 * 24 * time.Hour},
		{"0s", 0},
		{"007d", 7 * 24 * time.Hour},
		{"1hr", -1}, {"1.5h", -1}, {"1h30m", -1}, {"-1h", -1}, {"+1h", -1}, {"1H", -1}, {"h", -1}, {"1", -1},
		{"", -1}, {" 1h", -1}, {"1w", -1}, {"106752d", -1}, {"99999999999999999999s", -1},
	}
	for _, tc := range tests {
		got, err := ParseDuration(tc.in)
		if tc.want < 0 {
			if err == nil {
				t.Errorf("ParseDuration(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if err == nil && tc.in[0] != '0' {
			if back, _ := ParseDuration(FormatDuration(got)); back != got {
				t.Errorf("ParseDuration(FormatDuration(%v)) = %v", got, back)
			}
		}
	}
}

func TestDefaultTile(t *testing.T) {
	tests := []struct {
		window, want time.Duration
	}{
		{time.Hour, time.Minute},
		{24 * time.Hour, 15 * time.Minute},
		{7 * 24 * time.Hour, 3 * time.Hour},
		{30 * 24 * time.Hour, 6 * time.Hour},
		{10 * time.Minute, 5 * time.Second},
		{90 * time.Second, time.Second},
		{time.Minute, time.Second},
		{48 * time.Second, time.Second},
		{30 * time.Second, time.Second}, // under 48s: the smallest divisor, most exact
		{365 * 24 * time.Hour, 24 * time.Hour},
		{86401 * time.Second, time.Second},
		{1500 * time.Millisecond, 0},
	}
	for _, tc := range tests {
		if got := DefaultTile(tc.window); got != tc.want {
			t.Errorf("DefaultTile(%v) = %v, want %v", tc.window, got, tc.want)
		}
	}
}

// fixed dates: tile arithmetic only, on and off boundaries and before 1970.
func TestTileStart(t *testing.T) {
	const m = int64(time.Minute / time.Microsecond)
	tests := []struct {
		t    int64
		tile time.Duration
		want int64
	}{
		{0, time.Minute, 0},
		{1, time.Minute, 0},
		{m - 1, time.Minute, 0},
		{m, time.Minute, m},
		{-1, time.Minute, -m},
		{-m, time.Minute, -m},
		{-m - 1, time.Minute, -2 * m},
		{micros("2026-03-01T10:15:30.5Z"), 15 * time.Minute, micros("2026-03-01T10:15:00Z")},
		{micros("1969-12-31T23:59:59Z"), time.Hour, micros("1969-12-31T23:00:00Z")},
		{micros("2026-03-01T10:15:30Z"), 24 * time.Hour, micros("2026-03-01T00:00:00Z")},
	}
	for _, tc := range tests {
		if got := TileStart(tc.t, tc.tile); got != tc.want {
			t.Errorf("TileStart(%d, %v) = %d, want %d", tc.t, tc.tile, got, tc.want)
		}
	}
}

// fixed dates: tile arithmetic only, on and off boundaries and before 1970.
func TestWindowTiles(t *testing.T) {
	f := Feature{Name: "c", Op: OpCount, Window: time.Hour, Tile: time.Minute}
	tests := []struct {
		at          string
		first, head string
		from        string // Span's from; to is at
	}{
		{"2026-03-01T10:15:30Z", "2026-03-01T09:15:00Z", "2026-03-01T10:15:00Z", "2026-03-01T09:15:00Z"},
		{"2026-03-01T10:15:00Z", "2026-03-01T09:15:00Z", "2026-03-01T10:15:00Z", "2026-03-01T09:15:00Z"},
		{"2026-03-01T10:14:59.999999Z", "2026-03-01T09:14:00Z", "2026-03-01T10:14:00Z", "2026-03-01T09:14:00Z"},
		{"1970-01-01T00:00:30Z", "1969-12-31T23:00:00Z", "1970-01-01T00:00:00Z", "1969-12-31T23:00:00Z"},
		{"1969-12-31T23:59:30Z", "1969-12-31T22:59:00Z", "1969-12-31T23:59:00Z", "1969-12-31T22:59:00Z"},
	}
	for _, tc := range tests {
		at, _ := time.Parse(time.RFC3339Nano, tc.at)
		first, head := f.WindowTiles(at)
		if first != micros(tc.first) || head != micros(tc.head) {
			t.Errorf("WindowTiles(%s) = %s, %s; want %s, %s", tc.at,
				time.UnixMicro(first).UTC().Format(time.RFC3339), time.UnixMicro(head).UTC().Format(time.RFC3339), tc.first, tc.head)
		}
		if n := (head - first) / f.Tile.Microseconds(); n != int64(f.Tiles()) {
			t.Errorf("WindowTiles(%s) has %d whole tiles, want %d", tc.at, n, f.Tiles())
		}
		if from, to := f.Span(at.UnixMicro()); from != micros(tc.from) || to != at.UnixMicro() {
			t.Errorf("Span(%s) = [%d, %d), want [%s, at)", tc.at, from, to, tc.from)
		}
	}
}

// TestSubscriptionProblem checks each rule of Pub/Sub subscription names,
// as Google Cloud applies them, and that the reason names the rule.
func TestSubscriptionProblem(t *testing.T) {
	tests := []struct{ in, want string }{
		{"projects/tandem-local/subscriptions/card-events", ""},
		{"projects/example.com:my-project/subscriptions/a.b~c+d%20_e-f", ""},
		{"projects/abcdef/subscriptions/" + strings.Repeat("s", 255), ""},
		{"projects/" + strings.Repeat("p", 30) + "/subscriptions/abc", ""},
		{"card-events", "want projects/PROJECT/subscriptions/NAME"},
		{"projects/tandem-local/topics/card-events", "want projects/PROJECT/subscriptions/NAME"},
		{"projects/tandem-local/subscriptions/a/b", "want projects/PROJECT/subscriptions/NAME"},
		{"projects/p/subscriptions/s", `project ID "p" has 1 character, want 6 to 30; subscription name "s" has 1 character, want 3 to 255`},
		{"projects/" + strings.Repeat("p", 31) + "/subscriptions/abc", `has 31 characters, want 6 to 30`},
		{"projects/1andem/subscriptions/abc", `project ID "1andem" must start with a lowercase letter`},
		{"projects/Tandem-local/subscriptions/abc", `project ID "Tandem-local" must start with a lowercase letter`},
		{"projects/tandem_local/subscriptions/abc", `project ID "tandem_local" may hold only lowercase letters, digits and hyphens`},
		{"projects/tandem-local-/subscriptions/abc", `project ID "tandem-local-" must not end with a hyphen`},
		{"projects/Example.com:tandem/subscriptions/abc", `project domain "Example.com" may hold only lowercase letters, digits, dots and hyphens`},
		{"projects/tandem-local/subscriptions/ab", `subscription name "ab" has 2 characters, want 3 to 255`},
		{"projects/tandem-local/subscriptions/" + strings.Repeat("s", 256), `has 256 characters, want 3 to 255`},
		{"projects/tandem-local/subscriptions/1cards", `subscription name "1cards" must start with a letter`},
		{"projects/tandem-local/subscriptions/google-cards", `subscription name "google-cards" must not start with "goog"`},
		{"projects/tandem-local/subscriptions/card events", `subscription name "card events" may hold only letters, digits and - _ . ~ + %`},
	}
	for _, tc := range tests {
		if got := subscriptionProblem(tc.in); tc.want == "" && got != "" || !strings.Contains(got, tc.want) || tc.want != "" && got == "" {
			t.Errorf("subscriptionProblem(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestStaleAfter checks stale_after at load (a positive duration, by
// file:line) and the freshness expectation FreshFor derives from it.
func TestStaleAfter(t *testing.T) {
	const def = `name: s
entity: {name: a, key: id}
event_time: ts
fields: {id: string, ts: timestamp}
%s
features:
  - {name: n_1h, op: count, window: 1h}
  - {name: n_30d, op: count, window: 30d}
`
	stream := "sources: {stream: {pubsub: {subscription: projects/tandem-local/subscriptions/s-events}}}"
	tests := []struct {
		name, extra string
		want        time.Duration // FreshFor(5m)
		err         string
	}{
		{"batch-only default: a daily run", "", DefaultBatchStaleAfter + 6*time.Hour, ""}, // 30d windows take 6h tiles
		{"stream default: the server's", stream, 5 * time.Minute, ""},
		{"batch-only, weekly", "stale_after: 8d", 8 * 24 * time.Hour, ""},
		{"stream, set", stream + "\nstale_after: 90s", 90 * time.Second, ""},
		{"zero", "stale_after: 0s", 0, "x.yaml:5: stale_after: must be positive"},
		{"not a duration", "stale_after: daily", 0, "x.yaml:5: stale_after: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs, err := Parse("x.yaml", []byte(fmt.Sprintf(def, tc.extra)))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("Parse = %v, want an error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fs.FreshFor(5 * time.Minute); got != tc.want {
				t.Errorf("FreshFor(5m) = %s, want %s", got, tc.want)
			}
			// The definition's JSON (how pipelines ship it) keeps it.
			b, err := fs.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			var back FeatureSet
			if err := back.UnmarshalJSON(b); err != nil {
				t.Fatal(err)
			}
			if back.StaleAfter != fs.StaleAfter {
				t.Errorf("JSON round trip: stale_after %s, want %s", back.StaleAfter, fs.StaleAfter)
			}
		})
	}
}

// writeFile writes content to dir/name, creating directories, and returns
// the path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
