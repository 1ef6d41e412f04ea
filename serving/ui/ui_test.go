package ui

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-API", "yes")
		w.WriteHeader(http.StatusTeapot)
	})
	h := Handler(api)
	for _, tc := range []struct {
		name, method, path string
		status             int
		ctype, location    string
	}{
		{"index", "GET", "/ui/", 200, "text/html; charset=utf-8", ""},
		{"page", "GET", "/ui/entity.html", 200, "text/html; charset=utf-8", ""},
		{"module", "GET", "/ui/entity.js", 200, "text/javascript; charset=utf-8", ""},
		{"style", "HEAD", "/ui/app.css", 200, "text/css; charset=utf-8", ""},
		{"vendored", "GET", "/ui/vendor/uplot/uPlot.iife.min.js", 200, "text/javascript; charset=utf-8", ""},
		{"license", "GET", "/ui/vendor/uplot/LICENSE", 200, "text/plain; charset=utf-8", ""},
		{"no slash", "GET", "/ui", 301, "", "/ui/"},
		{"unknown", "GET", "/ui/nope.html", 404, "", ""},
		{"directory", "GET", "/ui/vendor/", 404, "", ""},
		{"post", "POST", "/ui/", 405, "", ""},
		{"api", "GET", "/v1/featuresets", http.StatusTeapot, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
			if w.Code != tc.status {
				t.Fatalf("%s %s: status %d, want %d: %s", tc.method, tc.path, w.Code, tc.status, w.Body)
			}
			if tc.status == http.StatusTeapot {
				if w.Header().Get("X-API") != "yes" {
					t.Errorf("%s did not reach the API", tc.path)
				}
				return
			}
			if tc.ctype != "" && w.Header().Get("Content-Type") != tc.ctype {
				t.Errorf("Content-Type = %q, want %q", w.Header().Get("Content-Type"), tc.ctype)
			}
			if tc.location != "" && w.Header().Get("Location") != tc.location {
				t.Errorf("Location = %q, want %q", w.Header().Get("Location"), tc.location)
			}
			if tc.status == 200 || tc.status == 404 {
				for k, want := range map[string]string{"Content-Security-Policy": ContentSecurityPolicy, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"} {
					if got := w.Header().Get(k); got != want {
						t.Errorf("%s = %q, want %q", k, got, want)
					}
				}
			}
		})
	}
}

func TestETag(t *testing.T) {
	h := Handler(http.NotFoundHandler())
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/ui/common.js", nil))
	etag := w.Header().Get("ETag")
	if etag == "" || w.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("ETag %q, Cache-Control %q", etag, w.Header().Get("Cache-Control"))
	}
	r := httptest.NewRequest("GET", "/ui/common.js", nil)
	r.Header.Set("If-None-Match", etag)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusNotModified {
		t.Errorf("revalidation: status %d, want 304", w.Code)
	}
}

// TestAssetsReferenced checks that every page refers only to embedded
// files, and holds no inline script or style (the CSP refuses them).
func TestAssetsReferenced(t *testing.T) {
	ref := regexp.MustCompile(`(?:src|href)="([^"]+)"`)
	imports := regexp.MustCompile(`from '\./([^']+)'`)
	var pages []string
	for name := range assets {
		if name != "" && (strings.HasSuffix(name, ".html") || strings.HasSuffix(name, ".js") && !strings.HasPrefix(name, "vendor/")) {
			pages = append(pages, name)
		}
	}
	if len(pages) < 7 {
		t.Fatalf("pages and scripts %v", pages)
	}
	for _, p := range pages {
		text := string(assets[p].body)
		if strings.HasSuffix(p, ".html") {
			if regexp.MustCompile(`<script>|<style|\sstyle="|\son[a-z]+="`).MatchString(text) {
				t.Errorf("%s has an inline script, style or handler", p)
			}
		}
		var names []string
		for _, m := range ref.FindAllStringSubmatch(text, -1) {
			names = append(names, m[1])
		}
		for _, m := range imports.FindAllStringSubmatch(text, -1) {
			names = append(names, m[1])
		}
		for _, n := range names {
			if strings.HasPrefix(n, "data:") || strings.HasPrefix(n, "./#") || n == "./" || strings.Contains(n, "?") {
				continue
			}
			if _, ok := assets[n]; !ok {
				t.Errorf("%s refers to %q, which is not embedded", p, n)
			}
		}
	}
}
