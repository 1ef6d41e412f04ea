package ui_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/tandem-fp/tandem/serving/ui"
)

// Handler puts the page in front of the API: /ui/ and its files are the
// page, every other path goes to the API (in serve, a *serving.Server).
func ExampleHandler() {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, `{"featuresets": []}`)
	})
	h := ui.Handler(api)
	for _, path := range []string{"/ui/", "/ui/freshness.html", "/v1/featuresets"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		fmt.Println(path, rec.Code, rec.Header().Get("Content-Type"))
	}
	// Output:
	// /ui/ 200 text/html; charset=utf-8
	// /ui/freshness.html 200 text/html; charset=utf-8
	// /v1/featuresets 200 text/plain; charset=utf-8
}
