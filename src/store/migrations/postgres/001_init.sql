CREATE TABLE checkpoints (
  rule text PRIMARY KEY,
  floor timestamptz NOT NULL,
  watermark timestamptz NOT NULL,
  replay_id text,
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE outbox (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  rule text NOT NULL,
  object text NOT NULL,
  record_id text NOT NULL,
  record_created_date timestamptz NOT NULL,
  state text NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'dead', 'unknown')),
  -- json, not jsonb: keeps the rendered message byte for byte (header order), retries send exactly this
  message json,
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz,
  lease_owner text,
  lease_until timestamptz,
  last_error text,
  result jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  sent_at timestamptz,
  -- the ledger: a record is enqueued at most once per rule
  CONSTRAINT outbox_rule_record UNIQUE (rule, record_id),
  -- a row that can be claimed must have something to send
  CONSTRAINT outbox_message_present CHECK (message IS NOT NULL OR state = 'dead')
);

-- claiming: due pending/failed rows, oldest id first
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_claimable ON outbox (id) WHERE state IN ('pending', 'failed');
-- listing and status
CREATE INDEX outbox_state_id ON outbox (state, id);
CREATE INDEX outbox_rule_id ON outbox (rule, id);
-- crash recovery
CREATE INDEX outbox_sending_lease ON outbox (lease_until) WHERE state = 'sending';
