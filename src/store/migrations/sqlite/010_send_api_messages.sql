-- The Send API (http/send-api.ts): one row per accepted POST /v1/send, written in the same
-- transaction as its outbox row. `id` is the public message id; `token` the token's NAME (never
-- its value); (token, idempotency_key) makes an Idempotency-Key once-only per token across
-- restarts, and body_hash (sha256 of the canonical JSON body) tells a replay from a conflict.
-- No foreign key to outbox: a later rebuild of that table (SQLite's 12-step way) must not have
-- to carry this one along. WITHOUT ROWID and no index on outbox_id (nothing looks rows up by it):
-- every accepted request writes this row, so each b-tree less is intake throughput.
CREATE TABLE send_api_messages (
  id TEXT PRIMARY KEY,
  token TEXT NOT NULL,
  idempotency_key TEXT,
  body_hash TEXT NOT NULL,
  outbox_id INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  UNIQUE (token, idempotency_key)
) STRICT, WITHOUT ROWID;
