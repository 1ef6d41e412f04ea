package schemas

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// usersYAML is a second feature set, keyed by an int64.
const usersYAML = `name: user_sessions
entity: {name: user, key: user_id}
event_time: viewed_at
fields:
  user_id: int64
  page: string
  viewed_at: timestamp
features:
  - {name: views_1h, op: count, window: 1h}
  - {name: last_page, op: last, field: page, window: 1d}
`

// validService is a valid service over validYAML's set and usersYAML's; the
// rejection tests change one line of it, so their line numbers are those
// below.
const validService = `name: fraud_model
description: scores a card transaction
features:
  - featureset: card_activity
    key: card_id
    features: [txn_count_1h, amount_mean_24h]
  - featureset: user_sessions
    key: user_id
    features:
      - views_1h
      - last_page
`

func serviceSets(t *testing.T) []*FeatureSet {
	t.Helper()
	var sets []*FeatureSet
	for _, y := range []string{validYAML, usersYAML} {
		fs, err := Parse("", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		sets = append(sets, fs)
	}
	return sets
}

func TestParseServiceValid(t *testing.T) {
	sets := serviceSets(t)
	svc, err := ParseService("svc.yaml", []byte(validService), sets)
	if err != nil {
		t.Fatalf("ParseService error = %v", err)
	}
	if svc.Name != "fraud_model" || svc.Description != "scores a card transaction" || svc.File != "svc.yaml" || len(svc.Entries) != 2 {
		t.Fatalf("ParseService = %+v", svc)
	}
	e0, e1 := svc.Entries[0], svc.Entries[1]
	if e0.Set != sets[0] || !cmp.Equal(e0.KeyColumns(), []Column{{"card_id", String}}) ||
		!cmp.Equal(e0.FeatureNames(), []string{"txn_count_1h", "amount_mean_24h"}) {
		t.Errorf("entry 0 = %s keyed by %v, features %v", e0.Set.Name, e0.KeyColumns(), e0.FeatureNames())
	}
	if e1.Set != sets[1] || !cmp.Equal(e1.KeyColumns(), []Column{{"user_id", Int64}}) ||
		!cmp.Equal(e1.FeatureNames(), []string{"views_1h", "last_page"}) {
		t.Errorf("entry 1 = %s keyed by %v, features %v", e1.Set.Name, e1.KeyColumns(), e1.FeatureNames())
	}
	if f := e1.Features[1]; f.Index != 1 || f.Op != OpLast || f.FieldType != String {
		t.Errorf("last_page = %+v, want the set's own feature (index 1, last over a string)", f)
	}
	if diff := cmp.Diff([]Column{{"card_id", String}, {"user_id", Int64}}, svc.Keys()); diff != "" {
		t.Errorf("Keys() mismatch (-want +got):\n%s", diff)
	}
	if got := svc.Sets(); len(got) != 2 || got[0] != sets[0] || got[1] != sets[1] {
		t.Errorf("Sets() = %v", got)
	}
	b, err := json.Marshal(svc)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"name":"fraud_model","description":"scores a card transaction",` +
		`"keys":[{"name":"card_id","type":"string"},{"name":"user_id","type":"int64"}],` +
		`"features":[{"featureset":"card_activity","key":"card_id","key_type":"string","keys":[{"name":"card_id","type":"string"}],"features":["txn_count_1h","amount_mean_24h"]},` +
		`{"featureset":"user_sessions","key":"user_id","key_type":"int64","keys":[{"name":"user_id","type":"int64"}],"features":["views_1h","last_page"]}]}`
	if string(b) != want {
		t.Errorf("MarshalJSON = %s\nwant %s", b, want)
	}
}

func TestParseServiceDefaults(t *testing.T) {
	// The key defaults to the set's entity key field; one key column may
	// key several sets whose keys have the same type; flow style, anchors.
	other := strings.NewReplacer("name: card_activity", "name: card_risk", "txn_count_1h", "declines_1h").Replace(validYAML)
	fs, err := Parse("", []byte(other))
	if err != nil {
		t.Fatal(err)
	}
	sets := append(serviceSets(t), fs)
	const in = `name: m
features:
  - {featureset: card_activity, features: &f [txn_count_1h]}
  - {featureset: card_risk, key: card_id, features: [declines_1h]}
  - {featureset: user_sessions, key: viewer, features: [views_1h]}
`
	svc, err := ParseService("", []byte(in), sets)
	if err != nil {
		t.Fatalf("ParseService error = %v", err)
	}
	if diff := cmp.Diff([]Column{{"card_id", String}, {"viewer", Int64}}, svc.Keys()); diff != "" {
		t.Errorf("Keys() mismatch (-want +got):\n%s", diff)
	}
	if k := svc.Entries[0].Keys; !cmp.Equal(k, []string{"card_id"}) {
		t.Errorf("default key = %q, want the entity key field card_id", k)
	}
}

func TestParseServiceRejects(t *testing.T) {
	tests := []struct {
		name     string
		old, new string   // replace old by new in validService
		want     []string // the lines of the error, in order
	}{
		{
			name: "typo'd top key",
			old:  "description:", new: "descripton:",
			want: []string{`svc.yaml:2: descripton: unknown key (did you mean description?)`},
		},
		{
			name: "unknown top key",
			old:  "description: scores a card transaction", new: "owner: fraud-team",
			want: []string{`svc.yaml:2: owner: unknown key (want one of name, description, features, derived)`},
		},
		{
			name: "typo'd entry key",
			old:  "    key: card_id", new: "    kye: card_id",
			want: []string{`svc.yaml:5: features[0].kye: unknown key (did you mean key?)`},
		},
		{
			name: "bad service name",
			old:  "name: fraud_model", new: "name: Fraud-Model",
			want: []string{`svc.yaml:1: name: bad name "Fraud-Model" (want a lowercase letter, then lowercase letters, digits or _)`},
		},
		{
			name: "missing name",
			old:  "name: fraud_model\n", new: "",
			want: []string{`svc.yaml:1: name: required key is missing`},
		},
		{
			name: "unknown feature set",
			old:  "featureset: card_activity", new: "featureset: card_activty",
			want: []string{`svc.yaml:4: features[0].featureset: unknown feature set "card_activty" (did you mean card_activity?)`},
		},
		{
			name: "unknown feature set, no near name",
			old:  "featureset: card_activity", new: "featureset: payments",
			want: []string{`svc.yaml:4: features[0].featureset: unknown feature set "payments" (loaded: card_activity, user_sessions)`},
		},
		{
			name: "unknown feature",
			old:  "[txn_count_1h, amount_mean_24h]", new: "[txn_count_1h, amount_mean_1d]",
			want: []string{`svc.yaml:6: features[0].features[1]: feature set card_activity has no feature "amount_mean_1d" (did you mean amount_mean_24h?)`},
		},
		{
			name: "unknown feature, no near name",
			old:  "      - last_page", new: "      - bounce_rate",
			want: []string{`svc.yaml:11: features[1].features[1]: feature set user_sessions has no feature "bounce_rate" (it has views_1h, last_page)`},
		},
		{
			name: "duplicate feature",
			old:  "      - last_page", new: "      - views_1h",
			want: []string{`svc.yaml:11: features[1].features[1]: feature "views_1h" is listed twice (first at line 10)`},
		},
		{
			name: "duplicate feature set",
			old:  "featureset: user_sessions", new: "featureset: card_activity",
			want: []string{`svc.yaml:7: features[1].featureset: feature set "card_activity" is listed twice (first at line 4); list all its features in one entry`},
		},
		{
			name: "key column of two types",
			old:  "key: user_id", new: "key: card_id",
			want: []string{`svc.yaml:8: features[1].key: key column "card_id" holds int64 keys of feature set user_sessions (entity key user_id) here, but string keys of feature set card_activity at line 5; key them by separate columns`},
		},
		{
			name: "bad key column",
			old:  "key: user_id", new: "key: user-id",
			want: []string{`svc.yaml:8: features[1].key: bad column name "user-id" (want a letter or _, then letters, digits or _)`},
		},
		{
			name: "reserved key column",
			old:  "key: user_id", new: "key: at",
			want: []string{`svc.yaml:8: features[1].key: key column "at" is reserved: it names the instant of a serving request; key the set by another column`},
		},
		{
			name: "empty key",
			old:  "key: user_id", new: "key:",
			want: []string{`svc.yaml:8: features[1].key: must not be empty`},
		},
		{
			name: "empty feature list",
			old:  "[txn_count_1h, amount_mean_24h]", new: "[]",
			want: []string{`svc.yaml:6: features[0].features: list at least one feature`},
		},
		{
			name: "feature list missing",
			old:  "    features: [txn_count_1h, amount_mean_24h]\n", new: "",
			want: []string{`svc.yaml:4: features[0].features: required key is missing`},
		},
		{
			name: "features not a list",
			old:  "[txn_count_1h, amount_mean_24h]", new: "txn_count_1h",
			want: []string{`svc.yaml:6: features[0].features: want a list, got a string`},
		},
		{
			name: "feature set missing",
			old:  "  - featureset: card_activity\n    key: card_id", new: "  - key: card_id",
			want: []string{`svc.yaml:4: features[0].featureset: required key is missing`},
		},
		{
			name: "several problems, by line",
			old:  "name: fraud_model\ndescription: scores a card transaction", new: "name: fraud_model\ndecsription: x",
			want: []string{`svc.yaml:2: decsription: unknown key (did you mean description?)`},
		},
	}
	sets := serviceSets(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(validService, tc.old) {
				t.Fatalf("validService does not contain %q", tc.old)
			}
			in := strings.Replace(validService, tc.old, tc.new, 1)
			_, err := ParseService("svc.yaml", []byte(in), sets)
			if err == nil {
				t.Fatalf("ParseService(%q) error = nil, want %q", in, tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseService error = %v, does not match ErrInvalid", err)
			}
			if diff := cmp.Diff(tc.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("ParseService(%q) error mismatch (-want +got):\n%s", in, diff)
			}
		})
	}
}

func TestParseServiceWhole(t *testing.T) {
	sets := serviceSets(t)
	tests := []struct {
		name, in string
		want     []string
	}{
		{"empty", "", []string{`svc.yaml:1: empty definition (want name and features)`}},
		{"a list", "- featureset: x\n", []string{`svc.yaml:1: a feature-service definition must be a mapping (name: ..., features: ...), got a list`}},
		{"empty features", "name: m\nfeatures: []\n", []string{`svc.yaml:2: features: list at least one feature set and its features`}},
		{"no features", "name: m\n", []string{`svc.yaml:1: features: required key is missing`}},
		{"syntax", "name: m\nfeatures: [\n", nil},
		{"feature column collision", "name: m\nfeatures:\n  - {featureset: a__b, features: [c]}\n  - {featureset: a, features: [b__c]}\n",
			[]string{`svc.yaml:4: features[1].features[0]: feature column "a__b__c" is also the column of the feature at line 3; rename a feature set or feature`}},
		{"several problems", "name: m\nfeatures:\n  - {featureset: nope, key: 1x, features: [a, a]}\n  - featureset: user_sessions\n    features: [views_1h, views_2h]\n",
			[]string{
				`svc.yaml:3: features[0].featureset: unknown feature set "nope" (loaded: card_activity, user_sessions, a__b, a)`,
				`svc.yaml:3: features[0].key: bad column name "1x" (want a letter or _, then letters, digits or _)`,
				`svc.yaml:3: features[0].features[1]: feature "a" is listed twice (first at line 3)`,
				`svc.yaml:5: features[1].features[1]: feature set user_sessions has no feature "views_2h" (did you mean views_1h?)`,
			}},
	}
	for _, y := range []string{
		strings.NewReplacer("name: card_activity", "name: a__b", "txn_count_1h", "c").Replace(validYAML),
		strings.NewReplacer("name: card_activity", "name: a", "txn_count_1h", "b__c").Replace(validYAML),
	} {
		fs, err := Parse("", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		sets = append(sets, fs)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseService("svc.yaml", []byte(tc.in), sets)
			if err == nil || !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseService(%q) error = %v, want an invalid definition", tc.in, err)
			}
			if tc.want == nil {
				if !strings.HasPrefix(err.Error(), "svc.yaml:") || !strings.Contains(err.Error(), "YAML syntax error") {
					t.Errorf("ParseService(%q) error = %v, want a YAML syntax error with its line", tc.in, err)
				}
				return
			}
			if diff := cmp.Diff(tc.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("ParseService(%q) error mismatch (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestLoadServices(t *testing.T) {
	sets := serviceSets(t)
	dir := t.TempDir()
	write := func(name, content string) string { return writeFile(t, dir, name, content) }
	a := write("a.yaml", validService)
	b := write("b.yml", strings.Replace(validService, "name: fraud_model", "name: other", 1))
	svcs, err := LoadServices(sets, dir)
	if err != nil {
		t.Fatalf("LoadServices error = %v", err)
	}
	if len(svcs) != 2 || svcs[0].File != a || svcs[1].File != b {
		t.Errorf("LoadServices = %d services, want a.yaml then b.yml", len(svcs))
	}
	dup := write("dup/d.yaml", "# a copy\n"+validService)
	_, err = LoadServices(sets, a, dup)
	want := dup + `:2: name: duplicate feature service name "fraud_model" (also defined at ` + a + `:1)`
	if err == nil || err.Error() != want || !errors.Is(err, ErrInvalid) {
		t.Errorf("LoadServices(dup) error = %v, want %s", err, want)
	}
	bad := write("bad/x.yaml", strings.Replace(validService, "views_1h", "views_2h", 1))
	_, err = LoadServices(sets, filepath.Dir(bad), filepath.Join(dir, "missing.yaml"))
	if err == nil || !errors.Is(err, ErrInvalid) || !errors.Is(err, os.ErrNotExist) ||
		!strings.Contains(err.Error(), bad+`:10: features[1].features[0]: feature set user_sessions has no feature "views_2h"`) {
		t.Errorf("LoadServices(bad, missing) error = %v, want the definition error and a not-exist error", err)
	}
	if _, err := LoadServices(sets, t.TempDir()); err == nil || !strings.Contains(err.Error(), "load feature services: no *.yaml or *.yml files") {
		t.Errorf("LoadServices(empty dir) error = %v", err)
	}
}

// TestShippedService loads the shipped service against the example sets,
// and checks that LoadAll of the definition directory skips services/.
func TestShippedService(t *testing.T) {
	sets, err := LoadAll(".")
	if err != nil {
		t.Fatalf("LoadAll(.) error = %v", err)
	}
	svcs, err := LoadServices(sets, ServicesDir)
	if err != nil {
		t.Fatalf("LoadServices(%s) error = %v", ServicesDir, err)
	}
	if len(svcs) != 1 || svcs[0].Name != "fraud_model" {
		t.Fatalf("LoadServices = %v, want fraud_model", svcs)
	}
	if diff := cmp.Diff([]Column{{"card_id", String}, {"user_id", Int64}, {"merchant", String}}, svcs[0].Keys()); diff != "" {
		t.Errorf("fraud_model keys mismatch (-want +got):\n%s", diff)
	}
	if beside, err := LoadServicesBeside(sets, ".", "card_activity.yaml", t.TempDir()); err != nil || len(beside) != 1 || beside[0].Name != "fraud_model" {
		t.Errorf("LoadServicesBeside(., a file, a dir without services/) = %v, %v; want fraud_model", beside, err)
	}
	svc, err := LoadServiceWithSets(filepath.Join(ServicesDir, "fraud_model.yaml"))
	if err != nil {
		t.Fatalf("LoadServiceWithSets error = %v", err)
	}
	if got := svc.Sets(); len(got) != 3 || got[0].Name != "card_activity" || got[1].Name != "user_merchant" || got[2].Name != "user_sessions" {
		t.Errorf("LoadServiceWithSets sets = %v", got)
	}
}
