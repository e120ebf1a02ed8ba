package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Webhooks are the integrators' subscriptions: each endpoint gets the
// events it names as signed JSON POSTs, from a durable outbox.
type Webhooks struct {
	Endpoints []WebhookEndpoint `yaml:"endpoints"`
	// MaxAge is how long an event is retried for an endpoint that keeps
	// failing before it is given up (logged and counted).
	MaxAge Duration `yaml:"max_age"`
	// RetryInitial is the first retry delay after a failed post, doubled
	// per failure up to RetryMax.
	RetryInitial Duration `yaml:"retry_initial"`
	RetryMax     Duration `yaml:"retry_max"`
}

// WebhookEndpoint is one subscription.
type WebhookEndpoint struct {
	URL string `yaml:"url"`
	// Events: delivered, deferred, bounced, dropped, held,
	// escrow-opened, escrow-replied.
	Events []string `yaml:"events"`
	// SecretFile holds the HMAC-SHA256 secret (its content without a
	// trailing newline).
	SecretFile string `yaml:"secret_file"`
}

// WebhookEvents are the event types an endpoint may subscribe to.
var WebhookEvents = []string{"delivered", "deferred", "bounced", "dropped", "held", "escrow-opened", "escrow-replied"}

func (v *validator) validateWebhooks(w *Webhooks) {
	v.positive("webhooks.max_age", int64(w.MaxAge))
	v.positive("webhooks.retry_initial", int64(w.RetryInitial))
	v.positive("webhooks.retry_max", int64(w.RetryMax))
	if w.RetryInitial > w.RetryMax {
		v.fail("webhooks.retry_initial", "%s is longer than webhooks.retry_max %s", w.RetryInitial, w.RetryMax)
	}
	seen := map[string]bool{}
	for i, e := range w.Endpoints {
		p := fmt.Sprintf("webhooks.endpoints[%d]", i)
		u, err := url.Parse(e.URL)
		switch {
		case e.URL == "":
			v.fail(p+".url", "must not be empty")
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			v.fail(p+".url", "%q is not an http(s) URL", e.URL)
		case u.Scheme == "http" && !isLoopbackHost(u.Hostname()):
			v.fail(p+".url", "%q: events go over https (http only to a loopback address)", e.URL)
		case u.User != nil:
			v.fail(p+".url", "%q carries credentials; the signature authenticates us (secret_file)", e.URL)
		case seen[e.URL]:
			v.fail(p+".url", "%q is listed twice", e.URL)
		}
		seen[e.URL] = true
		if len(e.Events) == 0 {
			v.fail(p+".events", "must name at least one of %s", strings.Join(WebhookEvents, ", "))
		}
		for j, ev := range e.Events {
			if !slices.Contains(WebhookEvents, ev) {
				v.fail(fmt.Sprintf("%s.events[%d]", p, j), "unknown event %q (%s)", ev, strings.Join(WebhookEvents, ", "))
			}
		}
		if e.SecretFile == "" {
			v.fail(p+".secret_file", "must name the file holding the endpoint's HMAC secret")
		}
	}
}
