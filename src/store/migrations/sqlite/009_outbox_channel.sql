-- Channels: a rule's notification of a record may go to email, a webhook, Slack and Teams, each
-- its own outbox row, so the ledger key becomes (rule, record_id, channel). SQLite cannot change
-- a UNIQUE constraint in place: the table is rebuilt (the documented 12-step way, inside the
-- migration's transaction), its rows copied with their ids, the AUTOINCREMENT counter kept (ids
-- are never reused), and every index migrations 001-008 made on it created again. No trigger,
-- view or foreign key refers to outbox.
CREATE TABLE outbox_new (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  rule TEXT NOT NULL,
  object TEXT NOT NULL,
  record_id TEXT NOT NULL,
  record_created_date TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'dead', 'unknown')),
  message TEXT, -- RenderedMessage (email) or the channel's HTTP request (webhook, slack, teams) as JSON
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at TEXT,
  lease_owner TEXT,
  lease_until TEXT,
  last_error TEXT,
  result TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  sent_at TEXT,
  last_error_code TEXT,
  channel TEXT NOT NULL DEFAULT 'email' CHECK (channel IN ('email', 'webhook', 'slack', 'teams')),
  -- the ledger: a record is enqueued at most once per rule and channel
  UNIQUE (rule, record_id, channel),
  CHECK (message IS NOT NULL OR state = 'dead')
) STRICT;

INSERT INTO outbox_new (id, rule, object, record_id, record_created_date, state, message, attempts,
    next_attempt_at, lease_owner, lease_until, last_error, result, created_at, updated_at, sent_at,
    last_error_code, channel)
  SELECT id, rule, object, record_id, record_created_date, state, message, attempts,
    next_attempt_at, lease_owner, lease_until, last_error, result, created_at, updated_at, sent_at,
    last_error_code, 'email'
  FROM outbox ORDER BY id;

-- the counter may be above max(id) (rows pruned): carry it over
DELETE FROM sqlite_sequence WHERE name = 'outbox_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox_new', seq FROM sqlite_sequence WHERE name = 'outbox';

DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;

-- 001: claiming, listing, status, crash recovery
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_claimable ON outbox (id) WHERE state IN ('pending', 'failed');
CREATE INDEX outbox_state_id ON outbox (state, id);
CREATE INDEX outbox_rule_id ON outbox (rule, id);
CREATE INDEX outbox_sending_lease ON outbox (lease_until) WHERE state = 'sending';
-- 004: a record's earlier notifications (Message-ID threading), across rules
CREATE INDEX outbox_record_id ON outbox (record_id);
-- 009: each channel's dispatcher claims only its own due rows
CREATE INDEX outbox_channel_claimable ON outbox (channel, id) WHERE state IN ('pending', 'failed');
