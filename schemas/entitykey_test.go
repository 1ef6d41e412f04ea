package schemas

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEntityKey(t *testing.T) {
	tests := []struct {
		parts []string
		want  string
	}{
		{[]string{"c_1001"}, "c_1001"},
		{[]string{"a#b\\c"}, "a#b\\c"}, // a single key is verbatim: row keys of existing tables
		{[]string{"7", "Subway"}, "7#Subway"},
		{[]string{"7", "Caf#1"}, `7#Caf\#1`},
		{[]string{`a\`, "b"}, `a\\#b`},
		{[]string{"", ""}, "#"},
		{[]string{"#", "#"}, `\##\#`},
		{[]string{"7", "", "x"}, "7##x"},
	}
	for _, tc := range tests {
		got := EntityKey(tc.parts...)
		if got != tc.want {
			t.Errorf("EntityKey(%q) = %q, want %q", tc.parts, got, tc.want)
		}
		back, ok := SplitEntityKey(got, len(tc.parts))
		if !ok || !cmp.Equal(back, tc.parts) {
			t.Errorf("SplitEntityKey(%q, %d) = %q, %v; want %q", got, len(tc.parts), back, ok, tc.parts)
		}
	}
	if got, want := RowKey("user_merchant", EntityKey("7", "Subway")), "user_merchant#7#Subway"; got != want {
		t.Errorf("RowKey = %q, want %q", got, want)
	}
}

func TestSplitEntityKeyRejects(t *testing.T) {
	for _, tc := range []struct {
		key string
		n   int
	}{
		{"7#Subway", 3},  // too few parts
		{"7#Sub#way", 2}, // too many
		{`7#Sub\way`, 2}, // an escape before another byte
		{`7#Subway\`, 2}, // a trailing escape
		{"x", 0},
	} {
		if parts, ok := SplitEntityKey(tc.key, tc.n); ok {
			t.Errorf("SplitEntityKey(%q, %d) = %q, true; want false", tc.key, tc.n, parts)
		}
	}
}

// TestEntityKeyProperties checks, over random tuples rich in the bytes
// that matter ('#', '\', empty parts), that the encoding round-trips, that
// distinct tuples never share a key, that a tuple's row key never equals a
// row key of another set, and that the row keys of one first part share
// the prefix EntityKeyPrefix.
func TestEntityKeyProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"#", `\`, "a", "7", "", "##", `\#`, "é"}
	part := func() string {
		var b strings.Builder
		for range rng.IntN(4) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	seen := map[string][]string{}
	for range 20000 {
		n := 2 + rng.IntN(MaxKeyParts-1)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = part()
		}
		key := EntityKey(parts...)
		back, ok := SplitEntityKey(key, n)
		if !ok || !cmp.Equal(back, parts) {
			t.Fatalf("SplitEntityKey(EntityKey(%q)) = %q, %v", parts, back, ok)
		}
		id := string(rune('0'+n)) + key // keys of different part counts live in different sets
		if prev, dup := seen[id]; dup && !cmp.Equal(prev, parts) {
			t.Fatalf("EntityKey(%q) = EntityKey(%q) = %q", parts, prev, key)
		}
		seen[id] = parts
		row := RowKey("user_merchant", key)
		if set, _, ok := SplitRowKey(row); !ok || set != "user_merchant" {
			t.Fatalf("SplitRowKey(%q) = set %q, %v; want user_merchant", row, set, ok)
		}
		if !strings.HasPrefix(row, RowKey("user_merchant", EntityKeyPrefix(parts[0]))) {
			t.Fatalf("row key %q does not start with the prefix of its first part %q", row, parts[0])
		}
		if other := EntityKey(append([]string{parts[0] + "x"}, parts[1:]...)...); strings.HasPrefix(RowKey("s", other), RowKey("s", EntityKeyPrefix(parts[0]))) {
			t.Fatalf("the prefix of first part %q also covers %q", parts[0], other)
		}
	}
}

// FuzzSplitEntityKey checks that whatever a row key holds, a split that
// succeeds gives back parts that encode to that very key (a key has one
// tuple), and that encoding any tuple splits back to it.
func FuzzSplitEntityKey(f *testing.F) {
	f.Add("7#Subway", "a", "b", 2)
	f.Add(`\##\#`, "#", `\`, 2)
	f.Add("##", "", "", 3)
	f.Fuzz(func(t *testing.T, key, a, b string, n int) {
		n = 1 + (n%MaxKeyParts+MaxKeyParts)%MaxKeyParts
		if parts, ok := SplitEntityKey(key, n); ok {
			if len(parts) != n || EntityKey(parts...) != key {
				t.Fatalf("SplitEntityKey(%q, %d) = %q, which encodes to %q", key, n, parts, EntityKey(parts...))
			}
		}
		parts := []string{a, b, key}[:max(2, min(n, 3))]
		back, ok := SplitEntityKey(EntityKey(parts...), len(parts))
		if !ok || !cmp.Equal(back, parts) {
			t.Fatalf("SplitEntityKey(EntityKey(%q)) = %q, %v", parts, back, ok)
		}
	})
}

// compositeYAML is a valid definition with a composite key; the
// rejection tests change one line of it.
const compositeYAML = `name: user_merchant
entity: {name: user_merchant, key: [user_id, merchant]}
event_time: ts
fields:
  user_id: int64
  merchant: string
  amount: float64
  ts: timestamp
features:
  - {name: txn_count_24h, op: count, window: 24h}
`

func TestParseCompositeKey(t *testing.T) {
	fs, err := Parse("x.yaml", []byte(compositeYAML))
	if err != nil {
		t.Fatalf("Parse error = %v", err)
	}
	if !fs.CompositeKey() || !cmp.Equal(fs.Entity.Keys, []string{"user_id", "merchant"}) || !cmp.Equal(fs.KeyIndexes(), []int{0, 1}) {
		t.Errorf("entity = %+v, key indexes %v; want keys [user_id merchant] at [0 1]", fs.Entity, fs.KeyIndexes())
	}
	if diff := cmp.Diff([]Column{{"user_id", Int64}, {"merchant", String}}, fs.KeyColumns()); diff != "" {
		t.Errorf("KeyColumns mismatch (-want +got):\n%s", diff)
	}
	if got := fs.Entity.KeyName(); got != "(user_id, merchant)" {
		t.Errorf("KeyName() = %q", got)
	}
	// The JSON form (the API's, and how pipelines ship a definition)
	// round-trips; a single key stays a string in it.
	b, err := fs.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"entity":{"name":"user_merchant","key":["user_id","merchant"]}`) {
		t.Errorf("MarshalJSON = %s, want entity.key a list", b)
	}
	var back FeatureSet
	if err := back.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(back.Entity, fs.Entity) || !cmp.Equal(back.KeyIndexes(), fs.KeyIndexes()) {
		t.Errorf("UnmarshalJSON entity = %+v %v, want %+v %v", back.Entity, back.KeyIndexes(), fs.Entity, fs.KeyIndexes())
	}
	single, err := Parse("y.yaml", []byte(validYAML))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := single.MarshalJSON(); !strings.Contains(string(b), `"entity":{"name":"card","key":"card_id"}`) {
		t.Errorf("MarshalJSON of a single key = %s, want entity.key a string", b)
	}
	// A one-item list is a single key, with the same row keys.
	one, err := Parse("z.yaml", []byte(strings.Replace(validYAML, "key: card_id}", "key: [card_id]}", 1)))
	if err != nil || one.CompositeKey() {
		t.Errorf("key: [card_id] = composite %v, %v; want a single key", one != nil && one.CompositeKey(), err)
	}
}

func TestParseCompositeKeyRejects(t *testing.T) {
	tests := []struct {
		name, new string // replaces entity's line of compositeYAML
		want      string
	}{
		{"duplicate", "entity: {name: u, key: [user_id, user_id]}",
			`x.yaml:2: entity.key[1]: field "user_id" is listed twice (first at line 2)`},
		{"unknown", "entity: {name: u, key: [user_id, merchnt]}",
			`x.yaml:2: entity.key[1]: field "merchnt" is not declared in fields (did you mean merchant?)`},
		{"wrong type", "entity: {name: u, key: [user_id, amount]}",
			`x.yaml:2: entity.key[1]: field "amount" has type float64; an entity key must be string or int64`},
		{"too many", "entity: {name: u, key: [user_id, merchant, user_id, merchant, user_id]}",
			"x.yaml:2: entity.key: 5 key fields, more than the 4 a composite key may have\n" +
				`x.yaml:2: entity.key[2]: field "user_id" is listed twice (first at line 2)` + "\n" +
				`x.yaml:2: entity.key[3]: field "merchant" is listed twice (first at line 2)` + "\n" +
				`x.yaml:2: entity.key[4]: field "user_id" is listed twice (first at line 2)`},
		{"empty list", "entity: {name: u, key: []}", `x.yaml:2: entity.key: list at least one key field`},
		{"a mapping in it", "entity: {name: u, key: [user_id, {a: b}]}", `x.yaml:2: entity.key[1]: want a single value, got a mapping`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.Replace(compositeYAML, "entity: {name: user_merchant, key: [user_id, merchant]}", tc.new, 1)
			_, err := Parse("x.yaml", []byte(in))
			if err == nil || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse error = %v, want %q", err, tc.want)
			}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("Parse error mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeCompositeKey decodes events of a composite-key set, good and
// bad.
//
// fixed dates: decoding only, nothing compares them with the clock.
func TestDecodeCompositeKey(t *testing.T) {
	fs, err := Parse("x.yaml", []byte(compositeYAML))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in, wantKey, wantErr string
	}{
		{`{"user_id": 7, "merchant": "Subway", "ts": "2026-03-01T00:00:00Z"}`, "7#Subway", ""},
		{`{"user_id": 7, "merchant": "Caf#1\\", "ts": "2026-03-01T00:00:00Z"}`, `7#Caf\#1\\`, ""},
		{`{"user_id": 7, "ts": "2026-03-01T00:00:00Z"}`, "", `missing entity key part "merchant"`},
		{`{"user_id": 7, "merchant": null, "ts": "2026-03-01T00:00:00Z"}`, "", `missing entity key part "merchant"`},
		{`{"merchant": "Subway", "ts": "2026-03-01T00:00:00Z"}`, "", `missing entity key part "user_id"`},
		{`{"user_id": 7, "merchant": "", "ts": "2026-03-01T00:00:00Z"}`, "", `empty entity key part "merchant"`},
		{`{"user_id": 7, "merchant": "` + strings.Repeat("m", MaxKeyLen) + `", "ts": "2026-03-01T00:00:00Z"}`, "", "entity key (user_id, merchant) is longer than 1024 bytes"},
	}
	for _, tc := range tests {
		e, err := fs.DecodeJSON([]byte(tc.in))
		var ee *EventError
		switch {
		case tc.wantErr == "" && (err != nil || e.Key != tc.wantKey):
			t.Errorf("DecodeJSON(%.60s) = key %q, %v; want key %q", tc.in, e.Key, err, tc.wantKey)
		case tc.wantErr != "" && (!errors.As(err, &ee) || ee.Reason != tc.wantErr):
			t.Errorf("DecodeJSON(%.60s) error = %v, want reason %q", tc.in, err, tc.wantErr)
		}
	}
	// A record (a BigQuery row, a CSV line) decodes to the same key.
	rec := map[string]any{"user_id": int64(7), "merchant": "Subway", "ts": "2026-03-01T00:00:00Z"}
	e, err := fs.DecodeRecord(func(name string) (any, bool) { v, ok := rec[name]; return v, ok })
	if err != nil || e.Key != "7#Subway" {
		t.Errorf("DecodeRecord = key %q, %v; want 7#Subway", e.Key, err)
	}
	delete(rec, "user_id")
	if _, err := fs.DecodeRecord(func(name string) (any, bool) { v, ok := rec[name]; return v, ok }); err == nil || !strings.Contains(err.Error(), `missing entity key part "user_id"`) {
		t.Errorf("DecodeRecord without user_id error = %v, want the missing part named", err)
	}
}

// compositeService keys user_sessions and user_merchant (compositeYAML)
// by one user column; the rejection tests change its last key line.
const compositeService = `name: fraud_model
features:
  - featureset: user_sessions
    key: user
    features: [views_1h]
  - featureset: user_merchant
    key: [user, shop]
    features: [txn_count_24h]
`

func compositeSets(t *testing.T) []*FeatureSet {
	t.Helper()
	sets := serviceSets(t)
	fs, err := Parse("", []byte(compositeYAML))
	if err != nil {
		t.Fatal(err)
	}
	return append(sets, fs)
}

func TestParseServiceCompositeKey(t *testing.T) {
	svc, err := ParseService("svc.yaml", []byte(compositeService), compositeSets(t))
	if err != nil {
		t.Fatalf("ParseService error = %v", err)
	}
	if diff := cmp.Diff([]Column{{"user", Int64}, {"shop", String}}, svc.Entries[1].KeyColumns()); diff != "" {
		t.Errorf("KeyColumns of user_merchant mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Column{{"user", Int64}, {"shop", String}}, svc.Keys()); diff != "" {
		t.Errorf("Keys mismatch (-want +got):\n%s", diff)
	}
	b, err := svc.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"featureset":"user_merchant","keys":[{"name":"user","type":"int64"},{"name":"shop","type":"string"}],"features":["txn_count_24h"]}`; !strings.Contains(string(b), want) {
		t.Errorf("MarshalJSON = %s, want it to hold %s", b, want)
	}
	// By default the key columns are the key field names.
	def, err := ParseService("svc.yaml", []byte(strings.Replace(compositeService, "    key: [user, shop]\n", "", 1)), compositeSets(t))
	if err != nil {
		t.Fatalf("ParseService error = %v", err)
	}
	if got := def.Entries[1].Keys; !cmp.Equal(got, []string{"user_id", "merchant"}) {
		t.Errorf("default keys = %q, want [user_id merchant]", got)
	}
}

func TestParseServiceCompositeKeyRejects(t *testing.T) {
	tests := []struct{ name, new, want string }{
		{"one column for two parts", "    key: user",
			"svc.yaml:7: features[1].key: feature set user_merchant has a composite key (user_id, merchant): give a list of 2 key columns, one per part, in that order"},
		{"three columns", "    key: [user, shop, x]",
			"svc.yaml:7: features[1].key: feature set user_merchant has a composite key (user_id, merchant): give a list of 2 key columns, one per part, in that order"},
		{"a column twice", "    key: [user, user]",
			`svc.yaml:7: features[1].key[1]: key column "user" is listed twice; give one column per key part`},
		{"types disagree", "    key: [shop, user]",
			`svc.yaml:7: features[1].key: key column "user" holds string keys of feature set user_merchant (entity key merchant) here, but int64 keys of feature set user_sessions at line 4; key them by separate columns`},
		{"reserved", "    key: [u, at]",
			`svc.yaml:7: features[1].key[1]: key column "at" is reserved: it names the instant of a serving request; key the set by another column`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.Replace(compositeService, "    key: [user, shop]", tc.new, 1)
			_, err := ParseService("svc.yaml", []byte(in), compositeSets(t))
			if err == nil {
				t.Fatalf("ParseService error = nil, want %q", tc.want)
			}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("ParseService error mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
