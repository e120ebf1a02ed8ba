package admin

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/sealgate/sealgate/policy"
)

// Read-only checks an integrator or an admin's script may run:
//
//	GET /api/v1/policy/explain?from=&to=&to=&subject=&header=N:%20v  the live policy's decision
//	GET /api/v1/domains/{domain}/check                              probe a domain now (what delivery would do)

// DomainChecker probes a domain (the node wires gateway/probe; the admin
// package does not link the SMTP client).
type DomainChecker func(ctx context.Context, domain string) (any, error)

func (a *API) checkRoutes(mux *routeMux) {
	if a.engine != nil {
		mux.HandleFunc("GET /api/v1/policy/explain", a.explain)
	}
	if a.checkDomain != nil {
		mux.HandleFunc("GET /api/v1/domains/{domain}/check", func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
			defer cancel()
			res, err := a.checkDomain(ctx, r.PathValue("domain"))
			if err != nil {
				apiError(w, http.StatusBadGateway, err.Error())
				return
			}
			writeJSON(w, http.StatusOK, res)
		})
	}
}

// explain runs the live policy on a message made of the query's fields,
// as "sealgate policy explain" does with the config file's.
func (a *API) explain(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, to := q.Get("from"), q["to"]
	if from == "" || len(to) == 0 {
		apiError(w, http.StatusBadRequest, "give from and at least one to")
		return
	}
	var b strings.Builder
	b.WriteString("From: <" + from + ">\r\nTo: " + strings.Join(to, ", ") + "\r\n")
	if s := q.Get("subject"); s != "" {
		b.WriteString("Subject: " + s + "\r\n")
	}
	for _, h := range q["header"] {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.ContainsAny(h, "\r\n") || strings.TrimSpace(name) == "" {
			apiError(w, http.StatusBadRequest, "header "+h+": want 'Name: value'")
			return
		}
		b.WriteString(strings.TrimSpace(name) + ":" + value + "\r\n")
	}
	b.WriteString("\r\n")
	engine := a.engine()
	if engine == nil {
		apiError(w, http.StatusConflict, "no policy is loaded")
		return
	}
	res, _ := policy.Apply(engine, policy.Session{From: from, Recipients: to, AuthUser: principalOf(r).Name, Trusted: true}, []byte(b.String()))
	writeJSON(w, http.StatusOK, res)
}
