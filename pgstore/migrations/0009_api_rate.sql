-- How many messages each node's send API took for each API key in the
-- last minute, published by the node every second, so that a key's
-- messages-per-minute limit holds across the fleet: a node counts its
-- own exactly and adds what the others last published.

CREATE TABLE api_rate (
	key_id  text        NOT NULL,
	node    text        NOT NULL,
	count   integer     NOT NULL CHECK (count >= 0),
	updated timestamptz NOT NULL,
	PRIMARY KEY (key_id, node)
);
