-- Correspondents' public keys (the key store's records): a key imported
-- through one node encrypts on every node. IDs hold a NUL between the
-- address and the fingerprint, hence bytea, which also orders bytewise.

CREATE TABLE key_records (
	id   bytea PRIMARY KEY,
	data bytea NOT NULL
);
