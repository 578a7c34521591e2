-- The Send API (http/send-api.ts): one row per accepted POST /v1/send, written in the same
-- transaction as its outbox row. `id` is the public message id; `token` the token's NAME (never
-- its value); (token, idempotency_key) makes an Idempotency-Key once-only per token across
-- restarts, and body_hash (sha256 of the canonical JSON body) tells a replay from a conflict.
-- No foreign key to outbox: a later rebuild of that table (SQLite's 12-step way) must not have
-- to carry this one along.
CREATE TABLE send_api_messages (
  id TEXT PRIMARY KEY,
  token TEXT NOT NULL,
  idempotency_key TEXT,
  body_hash TEXT NOT NULL,
  outbox_id INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  UNIQUE (token, idempotency_key)
) STRICT;
CREATE INDEX send_api_messages_outbox ON send_api_messages (outbox_id);
