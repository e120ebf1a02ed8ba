-- OAuth 2.0 access tokens of the REST API, by the SHA-256 of each token
-- (never the token): one issued by a node is good on every node, and a
-- revocation holds on all.

CREATE TABLE oauth_tokens (
	hash      text PRIMARY KEY,
	principal bytea NOT NULL,
	expires   timestamptz NOT NULL
);
CREATE INDEX oauth_tokens_expires ON oauth_tokens (expires);
