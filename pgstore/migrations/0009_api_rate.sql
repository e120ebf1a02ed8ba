-- What each API key sent, per minute of the database's clock, so that a
-- key's messages-per-minute limit holds across the fleet's nodes (a
-- sliding window: this minute's count and the last one's, weighted by
-- what is left of it).

CREATE TABLE api_rate (
	key_id text    NOT NULL,
	minute bigint  NOT NULL,
	count  integer NOT NULL CHECK (count >= 0),
	PRIMARY KEY (key_id, minute)
);
