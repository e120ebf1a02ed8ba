-- What the nodes of a fleet share: the TLS history of destinations and
-- the REST API's keys.

CREATE TABLE tls_domains (
	domain              text PRIMARY KEY,
	first_seen          timestamptz NOT NULL,
	last_seen           timestamptz NOT NULL,
	tls_seen            boolean NOT NULL DEFAULT false,
	last_tls            timestamptz,
	tls_versions        text[] NOT NULL DEFAULT '{}',
	verified            boolean NOT NULL DEFAULT false,
	mta_sts_mode        text NOT NULL DEFAULT '',
	dane                boolean NOT NULL DEFAULT false,
	last_checked        timestamptz,
	probe_failing_since timestamptz,
	last_probe_error    text NOT NULL DEFAULT ''
);

CREATE TABLE api_keys (
	id      text PRIMARY KEY,
	name    text NOT NULL,
	scope   text NOT NULL,
	hash    bytea NOT NULL,
	domains text[],
	created timestamptz NOT NULL,
	revoked timestamptz
);
