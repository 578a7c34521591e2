-- Timestamps are ISO-8601 UTC strings with milliseconds ("2024-05-01T12:00:00.000Z"): fixed width,
-- so text comparison orders them correctly.
CREATE TABLE checkpoints (
  rule TEXT PRIMARY KEY,
  floor TEXT NOT NULL,
  watermark TEXT NOT NULL,
  replay_id TEXT,
  updated_at TEXT NOT NULL
) STRICT;

CREATE TABLE outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT, -- AUTOINCREMENT: ids are never reused, even after pruning
  rule TEXT NOT NULL,
  object TEXT NOT NULL,
  record_id TEXT NOT NULL,
  record_created_date TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'dead', 'unknown')),
  message TEXT, -- RenderedMessage as JSON; NULL only for rows dead-lettered at render time
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at TEXT,
  lease_owner TEXT,
  lease_until TEXT,
  last_error TEXT,
  result TEXT, -- SendResult as JSON
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  sent_at TEXT,
  -- the ledger: a record is enqueued at most once per rule
  UNIQUE (rule, record_id),
  -- a row that can be claimed must have something to send
  CHECK (message IS NOT NULL OR state = 'dead')
) STRICT;

-- claiming: due pending/failed rows, oldest id first
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_claimable ON outbox (id) WHERE state IN ('pending', 'failed');
-- listing and status
CREATE INDEX outbox_state_id ON outbox (state, id);
CREATE INDEX outbox_rule_id ON outbox (rule, id);
-- crash recovery
CREATE INDEX outbox_sending_lease ON outbox (lease_until) WHERE state = 'sending';
