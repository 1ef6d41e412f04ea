// Package ui provides Tandem's web page, served under /ui/ beside the
// serving API: the feature sets and feature services, the freshness of each
// set (batch and stream watermarks, how far behind now, the status they
// imply), an entity lookup, and a chart of an entity's features over a
// chosen range sampled from past reads.
//
// The pages are HTML rendered once at start from html/template files (a
// layout with the header and the key prompt, and a file per page), CSS and
// plain JavaScript, all embedded in the binary (no build step), with uPlot
// 1.6.32 vendored under static/vendor/uplot (dist/uPlot.iife.min.js and
// dist/uPlot.min.css of `npm pack uplot@1.6.32`, tarball sha256
// 4b8a8191e425658e3ea8c8c1314b0fc679c861ee3a1af2b20c7b16ba50b5133d, with its
// MIT LICENSE). The pages call the API at the path they are served under
// less /ui/, so they also work behind a proxy that adds a prefix. It reads
// only the public JSON API, with the same API keys as any client: against a
// server started with --api_keys it asks for a key, keeps it in the tab's
// sessionStorage and sends it as "Authorization: Bearer KEY", so it never
// shows what the key may not read. Nothing is rendered on the server, as the
// server does not know the key of the person looking.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Prefix is the path the page is served under.
const Prefix = "/ui/"

// ContentSecurityPolicy is sent with every asset: scripts, styles and API
// calls from this origin only, no inline script or style, no framing.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

type asset struct {
	body  []byte
	ctype string
	etag  string
}

// page is what the layout of a page is rendered with.
type page struct {
	Page string // its name: NAME.tmpl is served as NAME.html and runs NAME.js
}

// assets maps a path under Prefix ("" for the index) to its file.
var assets = mustLoad()

func mustLoad() map[string]asset {
	m := make(map[string]asset)
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		name := strings.TrimPrefix(p, "static/")
		var b []byte
		switch {
		case name == "layout.tmpl":
			return nil
		case path.Ext(name) == ".tmpl":
			// A page: the layout with the page's blocks, rendered once.
			t, err := template.ParseFS(static, "static/layout.tmpl", p)
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			if err := t.ExecuteTemplate(&buf, "layout.tmpl", page{Page: strings.TrimSuffix(name, ".tmpl")}); err != nil {
				return err
			}
			b, name = buf.Bytes(), strings.TrimSuffix(name, ".tmpl")+".html"
		default:
			if b, err = static.ReadFile(p); err != nil {
				return err
			}
		}
		ctype := mime.TypeByExtension(path.Ext(name))
		if ctype == "" {
			ctype = "text/plain; charset=utf-8" // LICENSE
		}
		sum := sha256.Sum256(b)
		m[name] = asset{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic(fmt.Sprintf("ui: embedded assets: %v", err))
	}
	m[""] = m["index.html"]
	return m
}

// Handler serves the page under Prefix ("/ui" redirects there) and passes
// every other request to api. Assets answer GET and HEAD with an ETag
// (revalidated on every load, so a new binary's page is seen at once) and
// the headers of ContentSecurityPolicy, nosniff, no referrer and no
// framing; an unknown path under Prefix is a 404.
func Handler(api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case p == strings.TrimSuffix(Prefix, "/"):
			http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
		case strings.HasPrefix(p, Prefix):
			serveAsset(w, r, strings.TrimPrefix(p, Prefix))
		default:
			api.ServeHTTP(w, r)
		}
	})
}

func serveAsset(w http.ResponseWriter, r *http.Request, name string) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	a, ok := assets[name]
	if !ok {
		http.Error(w, "no such page: "+Prefix+name, http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method "+r.Method+" is not allowed on "+Prefix+name+" (allowed: GET, HEAD)", http.StatusMethodNotAllowed)
		return
	}
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
}
