-- The Send API (http/send-api.ts): one row per accepted POST /v1/send, written in the same
-- transaction as its outbox row. `id` is the public message id; `token` the token's NAME (never
-- its value); (token, idempotency_key) makes an Idempotency-Key once-only per token across
-- restarts and replicas, and body_hash (sha256 of the canonical JSON body) tells a replay from a
-- conflict. No foreign key to outbox, so outbox maintenance never has to consider this table.
CREATE TABLE send_api_messages (
  id text PRIMARY KEY,
  token text NOT NULL,
  idempotency_key text,
  body_hash text NOT NULL,
  outbox_id bigint NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT send_api_messages_key UNIQUE (token, idempotency_key)
);
