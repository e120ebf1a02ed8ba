-- One audit trail for the fleet: each node ships its own hash chain here
-- (entries as they are, with their hashes, and the checkpoints it
-- signed), so that an auditor searches every node's records at once and
-- verifies every chain against its node's key, which the database never
-- has. The leader signs fleet checkpoints: the heads of all chains at
-- one moment.

CREATE TABLE audit_nodes (
	node            text PRIMARY KEY, -- hex of the node's Ed25519 audit key
	hostname        text NOT NULL,
	base_seq        bigint NOT NULL DEFAULT 0,
	base_hash       text NOT NULL DEFAULT '',
	head_seq        bigint NOT NULL DEFAULT 0,
	head_hash       text NOT NULL DEFAULT '',
	last_checkpoint bigint NOT NULL DEFAULT 0,
	updated         timestamptz NOT NULL
);

CREATE TABLE audit_entries (
	node       text NOT NULL REFERENCES audit_nodes ON DELETE CASCADE,
	seq        bigint NOT NULL,
	prev       text NOT NULL,
	hash       text NOT NULL,
	record     bytea NOT NULL,
	time       timestamptz,
	queue_id   text,
	message_id text,
	PRIMARY KEY (node, seq)
);
CREATE INDEX audit_entries_time ON audit_entries (time);
CREATE INDEX audit_entries_queue_id ON audit_entries (queue_id);
CREATE INDEX audit_entries_message_id ON audit_entries (message_id);

CREATE TABLE audit_checkpoints (
	node       text NOT NULL REFERENCES audit_nodes ON DELETE CASCADE,
	seq        bigint NOT NULL,
	checkpoint bytea NOT NULL,
	PRIMARY KEY (node, seq)
);

CREATE TABLE audit_fleet_checkpoints (
	id        bigserial PRIMARY KEY,
	signer    text NOT NULL,
	statement bytea NOT NULL, -- JSON: time, and every node's head
	signature bytea NOT NULL
);
