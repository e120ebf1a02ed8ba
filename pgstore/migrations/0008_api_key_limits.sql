-- An API key's own send limits: messages per minute and bytes per
-- message; 0 leaves them to the node's api.messages_per_minute and
-- inbound.max_message_bytes.

ALTER TABLE api_keys
	ADD COLUMN rate_per_minute   integer NOT NULL DEFAULT 0 CHECK (rate_per_minute >= 0),
	ADD COLUMN max_message_bytes bigint  NOT NULL DEFAULT 0 CHECK (max_message_bytes >= 0);
