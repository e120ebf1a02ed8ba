package config

// API configures the send API on the admin listener.
type API struct {
	// MessagesPerMinute bounds what one API key may send (429 with
	// Retry-After beyond it) unless the key has its own rate; 0 means
	// no limit.
	MessagesPerMinute int `yaml:"messages_per_minute"`
	// TokenLifetime is how long an OAuth 2.0 token from /oauth/token
	// lives (15 minutes).
	TokenLifetime Duration `yaml:"token_lifetime"`
}

func (v *validator) validateAPI(a *API) {
	if a.MessagesPerMinute < 0 {
		v.fail("api.messages_per_minute", "must not be negative (0: no limit), got %d", a.MessagesPerMinute)
	}
	v.positive("api.token_lifetime", int64(a.TokenLifetime))
}
