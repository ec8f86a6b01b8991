// Package dashboard is Tapline's read-only web dashboard over the local
// store: server-rendered html/template pages and SVG charts from embed.FS,
// with no script and no remote resource, so it works offline (DESIGN.md §1.4).
package dashboard

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/tapline/tapline/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config configures the dashboard.
type Config struct {
	// Token, when set, is what the sign-in page asks for; every page then
	// needs the session cookie it sets. It is required unless Loopback.
	Token string
	// Loopback says the dashboard listens on a loopback address only, where
	// it may run without a token.
	Loopback bool
	// Sinks are the configured sinks' names, shown on the delivery page also
	// before they ever ran (beside every sink the store knows).
	Sinks []string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// ErrNoToken is returned by New for a dashboard off loopback without a
// token: prompts must never be exposed by accident (issue 7).
var ErrNoToken = errors.New("a token is required on a non-loopback address: the dashboard shows prompts")

// Dashboard serves the pages. Its methods may be called concurrently.
type Dashboard struct {
	cfg   Config
	st    *store.Store
	log   *slog.Logger
	pages map[string]*template.Template
	mux   *http.ServeMux
	key   []byte // the session cookie's value, an HMAC of the token
}

// New returns the dashboard's handler reading st. It refuses a
// configuration off loopback without a token (ErrNoToken).
func New(cfg Config, st *store.Store, log *slog.Logger) (http.Handler, error) {
	if cfg.Token == "" && !cfg.Loopback {
		return nil, ErrNoToken
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Dashboard{cfg: cfg, st: st, log: log.With("component", "dashboard")}
	if cfg.Token != "" {
		d.key = sessionValue(cfg.Token)
	}
	if err := d.parse(); err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	m := http.NewServeMux()
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/static/favicon.svg", http.StatusMovedPermanently)
	})
	m.HandleFunc("GET /signin", d.signinPage)
	m.HandleFunc("POST /signin", d.signin)
	m.HandleFunc("GET /{$}", d.overview)
	m.HandleFunc("GET /requests", d.requests)
	m.HandleFunc("GET /requests/{id}", d.request)
	m.HandleFunc("GET /usage", d.usage)
	m.HandleFunc("GET /usage.csv", d.usageCSV)
	m.HandleFunc("GET /activity", d.activity)
	m.HandleFunc("GET /delivery", d.delivery)
	m.HandleFunc("GET /limits", d.limits)
	d.mux = m
	return d, nil
}

// ServeHTTP sets the security headers, admits only GET and HEAD (and the
// sign-in form's POST), and asks for sign-in where a token is set.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// No script at all: pages are plain HTML and inline SVG.
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'none'; object-src 'none'; "+
		"base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// same-origin, not no-referrer: under no-referrer browsers send
	// "Origin: null" on the sign-in POST, which the origin check refuses.
	// URLs (they hold filters) still never leave for another site.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	isSignin := r.URL.Path == "/signin"
	switch {
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
	case r.Method == http.MethodPost && isSignin:
	default:
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "the dashboard is read-only", http.StatusMethodNotAllowed)
		return
	}
	if d.key != nil && !isSignin && !isStatic(r.URL.Path) && !d.signedIn(r) {
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
		return
	}
	h.Set("Cache-Control", "no-store")
	d.mux.ServeHTTP(w, r)
}

func isStatic(p string) bool {
	return len(p) > len("/static/") && p[:len("/static/")] == "/static/" || p == "/favicon.ico"
}

// page is what every template gets: the page's name for the navigation and
// its own data.
type page struct {
	Title string
	Nav   string
	Data  any
}

// render executes the named page with the status into a buffer first, so that a failing
// query or template becomes a clean 500 rather than half a page.
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	t, ok := d.pages[name]
	if !ok {
		d.fail(w, r, fmt.Errorf("no template %q", name))
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", page{Title: title, Nav: name, Data: data}); err != nil {
		d.fail(w, r, fmt.Errorf("render %s: %w", name, err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// fail logs err and answers 500 without its text (it may quote a query).
func (d *Dashboard) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	d.log.Error("dashboard page", "path", r.URL.Path, "err", err)
	http.Error(w, "internal error: see the server log", http.StatusInternalServerError)
}

// badRequest answers 400 with msg, which html/template-free http.Error
// sends as text/plain (nosniff), so user input in it is never markup.
func badRequest(w http.ResponseWriter, msg string) {
	http.Error(w, msg, http.StatusBadRequest)
}
