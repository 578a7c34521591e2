-- on: updated rules: how each record looked when last seen (did it match the rule's `where`, and
-- the values of the watched fields), so a change can be judged against the state before it.
-- Written in the same transaction as the checkpoint. Rows of records unchanged for a long time
-- are pruned (see rules/triggers.ts STATE_RETENTION_MS).
CREATE TABLE match_state (
  rule TEXT NOT NULL,
  record_id TEXT NOT NULL,
  matched INTEGER NOT NULL CHECK (matched IN (0, 1)),
  watched TEXT, -- JSON object of the watched fields' values; NULL: not known
  system_modstamp TEXT NOT NULL, -- the record's SystemModstamp when seen
  PRIMARY KEY (rule, record_id)
) STRICT;
CREATE INDEX match_state_modstamp ON match_state (rule, system_modstamp);
-- a record's earlier notifications (Message-ID threading), across rules
CREATE INDEX outbox_record_id ON outbox (record_id);
