-- The escrow store of a fleet: every node's portal opens every escrowed
-- message, a one-time code is spent once whichever node checks it, a
-- revocation holds on every node at once. The rows are the escrow's
-- buckets as sealgate seals them: message and access records under the
-- escrow key, each message's content under its own key, token hashes
-- (never tokens). The database sees ciphertext only. A value larger
-- than a chunk is kept in escrow_chunks, in order.

CREATE TABLE escrow_kv (
	bucket text NOT NULL,
	key    bytea NOT NULL,
	value  bytea NOT NULL,
	chunks integer NOT NULL DEFAULT 0, -- > 0: value is empty and the chunks hold it
	PRIMARY KEY (bucket, key)
);

CREATE TABLE escrow_chunks (
	bucket text NOT NULL,
	key    bytea NOT NULL,
	n      integer NOT NULL,
	data   bytea NOT NULL,
	PRIMARY KEY (bucket, key, n),
	FOREIGN KEY (bucket, key) REFERENCES escrow_kv (bucket, key) ON DELETE CASCADE
);
