-- TLS report aggregates (RFC 8460) of the whole fleet: every node counts
-- its sessions into the same day's record, and the leader sends one
-- report per domain and day.

CREATE TABLE tlsrpt (
	day         text NOT NULL, -- 2006-01-02, UTC
	domain      text NOT NULL,
	policy_type text NOT NULL,
	record      jsonb NOT NULL,
	PRIMARY KEY (day, domain, policy_type)
);
