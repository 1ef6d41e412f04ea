package serving

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

// TestOpenAPI checks that openapi.yaml describes every route and every
// error code the server can answer with.
func TestOpenAPI(t *testing.T) {
	data, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths      map[string]map[string]any `yaml:"paths"`
		Components struct {
			Schemas struct {
				Error struct {
					Properties struct {
						Error struct {
							Properties struct {
								Code struct {
									Enum []string `yaml:"enum"`
								} `yaml:"code"`
							} `yaml:"properties"`
						} `yaml:"error"`
					} `yaml:"properties"`
				} `yaml:"Error"`
				Status struct {
					Enum []string `yaml:"enum"`
				} `yaml:"Status"`
			} `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	for _, route := range []string{
		"GET /v1/featuresets", "GET /v1/featuresets/{name}", "GET /v1/features/{featureset}/{entity}",
		"GET /v1/features/{featureset}", "POST /v1/features/{featureset}", "GET /metrics", "GET /healthz", "GET /readyz",
		"GET /v1/services", "GET /v1/services/{name}", "POST /v1/services/{name}", "POST /get-online-features",
	} {
		method, path, _ := strings.Cut(route, " ")
		if _, ok := doc.Paths[path][strings.ToLower(method)]; !ok {
			t.Errorf("openapi.yaml does not describe %s", route)
		}
	}
	codes := doc.Components.Schemas.Error.Properties.Error.Properties.Code.Enum
	for _, k := range errorKinds {
		if !slices.Contains(codes, k.code) {
			t.Errorf("openapi.yaml: error code %q is not in the Error schema", k.code)
		}
	}
	if !slices.Contains(codes, "internal") {
		t.Error(`openapi.yaml: error code "internal" is not in the Error schema`)
	}
	if diff := slices.Compare(doc.Components.Schemas.Status.Enum, []string{"PRESENT", "NOT_FOUND", "STALE"}); diff != 0 {
		t.Errorf("openapi.yaml statuses = %v", doc.Components.Schemas.Status.Enum)
	}
}
