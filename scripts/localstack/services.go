package localstack

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/serving/client"
)

// serviceRow is a row of svc's key columns: for each column, the part of
// the hottest live entity of the first feature set it keys.
func serviceRow(svc *schemas.Service, live *liveFeed) (client.Row, bool) {
	row := client.Row{}
	for _, e := range svc.Entries {
		if !slices.ContainsFunc(e.Keys, func(k string) bool { _, done := row[k]; return !done }) {
			continue
		}
		k, ok := live.hottest(e.Set.Name)
		if !ok {
			return nil, false
		}
		parts, _ := schemas.SplitEntityKey(k, len(e.Keys)) // generated keys
		for i, col := range e.Keys {
			if _, done := row[col]; !done {
				row[col] = parts[i]
			}
		}
	}
	return row, true
}

// keyRow is entity key key of set as its key fields' parts.
func keyRow(set *schemas.FeatureSet, key string) client.Row {
	parts, _ := schemas.SplitEntityKey(key, len(set.Entity.Keys)) // generated keys
	row := client.Row{}
	for i, k := range set.Entity.Keys {
		row[k] = parts[i]
	}
	return row
}

// showServices reads each service once through the API, logging its
// values, and prints curl commands for it: GET, POST and Feast's
// /get-online-features.
func showServices(ctx context.Context, out io.Writer, logf func(string, ...any), api *client.Client, base string, svcs []*schemas.Service, live *liveFeed) {
	for _, svc := range svcs {
		row, ok := serviceRow(svc, live)
		if !ok {
			continue
		}
		res, err := api.GetService(ctx, svc.Name, row, time.Time{})
		if err != nil {
			logf("service %s: %v", svc.Name, err)
			continue
		}
		var vals []string
		for _, e := range svc.Entries {
			for _, name := range e.FeatureNames() {
				v, _ := res.Value(e.Set.Name, name)
				s := fmt.Sprintf("%s.%s=%v", e.Set.Name, name, v.Value)
				if v.Status != client.Present {
					s += "(" + string(v.Status) + ")"
				}
				vals = append(vals, s)
			}
		}
		for _, d := range svc.Derived {
			v := res.Derived[d.Name]
			s := fmt.Sprintf("%s=%v", d.Name, v.Value)
			if v.Status != client.Present {
				s += "(" + string(v.Status) + ")"
			}
			vals = append(vals, s)
		}
		logf("service %s for %v: %s", svc.Name, row, strings.Join(vals, " "))

		q := url.Values{}
		var keys, cols []string
		for _, c := range svc.Keys() {
			k := fmt.Sprint(row[c.Name])
			q.Set(c.Name, k)
			lit := fmt.Sprintf("%q", k)
			if c.Type == schemas.Int64 {
				lit = k
			}
			keys = append(keys, fmt.Sprintf("%q: %s", c.Name, lit))
			cols = append(cols, fmt.Sprintf("%q: [%s]", c.Name, lit))
		}
		fmt.Fprintf(out, "\nFeature service %s (%s):\n\n", svc.Name, svc.File)
		fmt.Fprintf(out, "  curl -s '%s/v1/services/%s?%s'\n", base, svc.Name, q.Encode())
		fmt.Fprintf(out, "  curl -s -X POST %s/v1/services/%s -d '{\"rows\": [{%s}]}'\n", base, svc.Name, strings.Join(keys, ", "))
		fmt.Fprintf(out, "  curl -s -X POST %s/get-online-features -d '{\"feature_service\": %q, \"entities\": {%s}}'\n", base, svc.Name, strings.Join(cols, ", "))
	}
}
