package bqfake

import (
	"fmt"
	"regexp"
	"time"
)

// restrictionRE is the one row restriction the fake understands, the form
// bigqueryread.RowRestriction writes: a half-open range on a TIMESTAMP
// column, with backquoted names and TIMESTAMP literals in UTC.
var restrictionRE = regexp.MustCompile("^`([A-Za-z_][A-Za-z0-9_]*)` >= TIMESTAMP\\(\"([^\"]+)\"\\) AND `([A-Za-z_][A-Za-z0-9_]*)` < TIMESTAMP\\(\"([^\"]+)\"\\)$")

// timestampLayout is how the restriction writes a TIMESTAMP literal.
const timestampLayout = "2006-01-02 15:04:05.999999-07"

// parseRestriction returns the filter for a row restriction; "" keeps every
// row. Any other SQL is rejected: the fake does not implement SQL.
func parseRestriction(r string, cols []Column) (func(map[string]any) bool, error) {
	if r == "" {
		return func(map[string]any) bool { return true }, nil
	}
	m := restrictionRE.FindStringSubmatch(r)
	if m == nil || m[1] != m[3] {
		return nil, fmt.Errorf("bqfake: unsupported row restriction %q (the fake parses only the form bigqueryread.RowRestriction writes, not SQL)", r)
	}
	col := m[1]
	found := false
	for _, c := range cols {
		if c.Name == col {
			if c.Type != Timestamp {
				return nil, fmt.Errorf("bqfake: row restriction %q: column %s is %s, not TIMESTAMP", r, col, c.Type)
			}
			found = true
		}
	}
	if !found {
		return nil, fmt.Errorf("bqfake: row restriction %q: unrecognized name: %s", r, col)
	}
	from, err := time.Parse(timestampLayout, m[2])
	if err != nil {
		return nil, fmt.Errorf("bqfake: row restriction %q: bad TIMESTAMP literal: %v", r, err)
	}
	to, err := time.Parse(timestampLayout, m[4])
	if err != nil {
		return nil, fmt.Errorf("bqfake: row restriction %q: bad TIMESTAMP literal: %v", r, err)
	}
	return func(row map[string]any) bool {
		t, ok := row[col].(time.Time)
		return ok && !t.Before(from) && t.Before(to) // NULL compares false, as in SQL
	}, nil
}
