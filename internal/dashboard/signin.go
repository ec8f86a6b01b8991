package dashboard

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
)

// The cookies the sign-in uses. The session cookie holds an HMAC of the
// token, never the token: a copied cookie does not reveal it, and changing
// the token signs everybody out.
const (
	sessionCookie = "tapline_session"
	csrfCookie    = "tapline_csrf"
)

// sessionValue is the session cookie's value for token.
func sessionValue(token string) []byte {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("tapline dashboard session v1"))
	return []byte(hex.EncodeToString(m.Sum(nil)))
}

func (d *Dashboard) signedIn(r *http.Request) bool {
	c, err := r.Cookie(sessionCookie)
	return err == nil && subtle.ConstantTimeCompare([]byte(c.Value), d.key) == 1
}

// cookie is a cookie with the flags every dashboard cookie has: HttpOnly
// (no script reads it), Secure (sent over https only; browsers treat
// http://localhost and 127.0.0.1 as secure) and SameSite=Strict (never sent
// on a request another site starts).
func cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode}
}

type signinData struct {
	CSRF  string
	Error string
}

// signinPage shows the token form with a fresh double-submit CSRF value:
// the form's hidden field must equal the cookie, which another site can
// neither read nor set.
func (d *Dashboard) signinPage(w http.ResponseWriter, r *http.Request) {
	if d.key == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	d.showSignin(w, r, "", http.StatusOK)
}

func (d *Dashboard) showSignin(w http.ResponseWriter, r *http.Request, msg string, status int) {
	b := make([]byte, 16)
	rand.Read(b)
	csrf := hex.EncodeToString(b)
	http.SetCookie(w, cookie(csrfCookie, csrf, 600))
	d.render(w, r, status, "signin", "Sign in", signinData{CSRF: csrf, Error: msg})
}

// signin checks the CSRF pair, the request's origin and the token (in
// constant time), then sets the session cookie.
func (d *Dashboard) signin(w http.ResponseWriter, r *http.Request) {
	if d.key == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		badRequest(w, "bad sign-in form")
		return
	}
	c, err := r.Cookie(csrfCookie)
	form := r.PostForm.Get("csrf")
	if err != nil || form == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(form)) != 1 || !sameOrigin(r) {
		d.showSignin(w, r, "The form expired; please sign in again.", http.StatusForbidden)
		return
	}
	if subtle.ConstantTimeCompare(sessionValue(r.PostForm.Get("token")), d.key) != 1 {
		d.log.Warn("dashboard sign-in refused", "remote", r.RemoteAddr)
		d.showSignin(w, r, "Wrong token.", http.StatusUnauthorized)
		return
	}
	http.SetCookie(w, cookie(sessionCookie, string(d.key), 12*3600))
	http.SetCookie(w, cookie(csrfCookie, "", -1))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// sameOrigin rejects a POST whose Origin header names another host;
// browsers send Origin on every form POST.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return o == ""
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}
