package schemas

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// MaxKeyParts is the most fields an entity key may list (entity.key:
// [user_id, merchant]).
const MaxKeyParts = 4

// Entity key encoding, the entity part of a row key (RowKey) and
// Event.Key, defined once here:
//
//   - A single key (entity.key: card_id) is the key field's value as it
//     is: a string verbatim, an int64 in decimal. Row keys of single-key
//     sets are card_activity#c_1001, whatever bytes the key holds.
//   - A composite key (entity.key: [user_id, merchant]) is its parts in
//     the order the definition lists them, each a string verbatim or an
//     int64 in decimal, with every '\' and '#' in a part escaped by a '\'
//     before it, joined by '#': user_merchant#7#Subway,
//     user_merchant#7#Caf\#1 for the parts (7, "Caf#1").
//
// A composite key is unambiguous: an unescaped '#' only ever separates
// parts, so the parts, their number and their empty ones come back
// exactly (SplitEntityKey), and two distinct tuples never share a row
// key. The feature-set name before the first '#' (names never hold one)
// keeps every set's rows apart from every other's.
//
// Hot spots: rows sort by set, then by the first key part. Put the part
// with the most distinct values first (the user before the merchant), so
// that writes spread over the key space as they do for a single key, and
// the rows of one first part (every merchant of a user) stay contiguous,
// readable with a prefix scan of EntityKeyPrefix. A first part with few
// distinct values (a country code) would concentrate a set's writes on a
// few tablets.
const (
	keySep    = '#'
	keyEscape = '\\'
)

// EntityKey encodes the parts of an entity key, in the order of
// Entity.Keys, each as its field's text (strings verbatim, int64 in
// decimal). One part is returned as it is, so single keys keep their row
// keys; several are escaped and joined (see the encoding above).
func EntityKey(parts ...string) string {
	if len(parts) == 1 {
		return parts[0]
	}
	n := len(parts) - 1
	for _, p := range parts {
		n += len(p) + strings.Count(p, `\`) + strings.Count(p, "#")
	}
	b := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			b = append(b, keySep)
		}
		b = appendKeyPart(b, p)
	}
	return string(b)
}

// EntityKeyPrefix is the row-key prefix of every entity of a composite-key
// set whose first part is first: RowKey(set, EntityKeyPrefix(first)).
func EntityKeyPrefix(first string) string {
	return string(appendKeyPart(nil, first)) + string(keySep)
}

func appendKeyPart(b []byte, p string) []byte {
	for i := 0; i < len(p); i++ {
		if c := p[i]; c == keySep || c == keyEscape {
			b = append(b, keyEscape)
		}
		b = append(b, p[i])
	}
	return b
}

// SplitEntityKey splits an entity key of n parts (n = len(Entity.Keys))
// into its parts, undoing EntityKey; ok is false when key is not the
// encoding of n parts.
func SplitEntityKey(key string, n int) (parts []string, ok bool) {
	if n == 1 {
		return []string{key}, true
	}
	if n < 1 {
		return nil, false
	}
	parts = make([]string, 0, n)
	var cur []byte
	for i := 0; i < len(key); i++ {
		switch c := key[i]; c {
		case keyEscape:
			if i+1 == len(key) || (key[i+1] != keySep && key[i+1] != keyEscape) {
				return nil, false
			}
			i++
			cur = append(cur, key[i])
		case keySep:
			parts = append(parts, string(cur))
			cur = cur[:0]
		default:
			cur = append(cur, c)
		}
	}
	parts = append(parts, string(cur))
	return parts, len(parts) == n
}

// CompositeKey reports whether the set's entity key lists several fields.
func (fs *FeatureSet) CompositeKey() bool { return len(fs.Entity.Keys) > 1 }

// KeyIndexes are the positions in Fields of the entity key fields, in key
// order.
func (fs *FeatureSet) KeyIndexes() []int { return fs.keyIdx }

// KeyColumns are the entity key fields, in key order, with their types
// (String or Int64).
func (fs *FeatureSet) KeyColumns() []Column {
	cols := make([]Column, len(fs.keyIdx))
	for i, k := range fs.keyIdx {
		cols[i] = Column{Name: fs.Fields[k].Name, Type: fs.Fields[k].Type}
	}
	return cols
}

// KeyName names the entity key for people: "card_id", or "(user_id,
// merchant)" for a composite key.
func (e Entity) KeyName() string {
	if len(e.Keys) == 1 {
		return e.Keys[0]
	}
	return "(" + strings.Join(e.Keys, ", ") + ")"
}

// KeyPart returns the text of the entity key part v as EntityKey takes
// it: a string verbatim, an int64 in decimal. ok is false for a null or
// another type.
func KeyPart(v Value) (string, bool) {
	switch v.Type {
	case String:
		return v.Str, true
	case Int64:
		return strconv.FormatInt(v.Int, 10), true
	}
	return "", false
}

// entityJSON is the JSON form of Entity: key a string for a single key
// (as before composite keys), a list of strings for a composite one.
type entityJSON struct {
	Name string          `json:"name"`
	Key  json.RawMessage `json:"key"`
}

// MarshalJSON encodes e as {"name", "key"}: key the field name for a
// single key, the list of field names for a composite key.
func (e Entity) MarshalJSON() ([]byte, error) {
	var key any = e.Keys
	if len(e.Keys) == 1 {
		key = e.Keys[0]
	}
	k, err := json.Marshal(key)
	if err != nil {
		return nil, err
	}
	return json.Marshal(entityJSON{Name: e.Name, Key: k})
}

// UnmarshalJSON decodes what MarshalJSON produced.
func (e *Entity) UnmarshalJSON(data []byte) error {
	var j entityJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	out := Entity{Name: j.Name}
	var one string
	if err := json.Unmarshal(j.Key, &one); err == nil {
		out.Keys = []string{one}
	} else if err := json.Unmarshal(j.Key, &out.Keys); err != nil || len(out.Keys) == 0 {
		return fmt.Errorf("entity %q: key: want a field name or a list of them", j.Name)
	}
	*e = out
	return nil
}
