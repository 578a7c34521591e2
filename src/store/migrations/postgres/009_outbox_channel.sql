-- Channels: a rule's notification of a record may go to email, a webhook, Slack and Teams, each
-- its own outbox row, so the ledger key becomes (rule, record_id, channel). Existing rows are email.
ALTER TABLE outbox ADD COLUMN channel text NOT NULL DEFAULT 'email'
  CONSTRAINT outbox_channel_known CHECK (channel IN ('email', 'webhook', 'slack', 'teams'));
ALTER TABLE outbox DROP CONSTRAINT outbox_rule_record;
ALTER TABLE outbox ADD CONSTRAINT outbox_rule_record_channel UNIQUE (rule, record_id, channel);
-- each channel's dispatcher claims only its own due rows
CREATE INDEX outbox_channel_claimable ON outbox (channel, id) WHERE state IN ('pending', 'failed');
