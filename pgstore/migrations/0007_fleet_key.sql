-- What the database must hold without being able to read it is sealed
-- under the fleet key (store.postgres.key_file), which every node has
-- and the database never sees: the hashes of API key secrets (they are
-- the keys of signed requests). The key check proves a node's key is the
-- fleet's. The nonces of signed requests are the fleet's too: one seen by
-- any node is refused by all.

CREATE TABLE sealgate_meta (
	name  text PRIMARY KEY,
	value bytea NOT NULL
);

CREATE TABLE api_nonces (
	nonce text PRIMARY KEY,
	seen  timestamptz NOT NULL
);
CREATE INDEX api_nonces_seen ON api_nonces (seen);
