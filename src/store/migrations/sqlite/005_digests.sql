-- Digest rules: matched records are collected here instead of emailed one by one; a digest is
-- one outbox row, written in ONE transaction with the marking of every item it covers, so a
-- record lands in exactly one digest (UNIQUE (rule, record_key) is its ledger).
CREATE TABLE digest_items (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  rule TEXT NOT NULL,
  record_key TEXT NOT NULL, -- <Id> (on: created) or <Id>.<version> (on: updated)
  object TEXT NOT NULL,
  record TEXT NOT NULL, -- the record's fields as read (JSON), rendered when the digest goes out
  collected_at TEXT NOT NULL,
  digest_outbox_id INTEGER, -- the digest row that covers it; NULL until then
  UNIQUE (rule, record_key)
) STRICT;
CREATE INDEX digest_items_open ON digest_items (rule, id) WHERE digest_outbox_id IS NULL;

CREATE TABLE digests (
  rule TEXT NOT NULL,
  until TEXT NOT NULL, -- the scheduled time it covers records up to; the next digest's `since`
  outbox_id INTEGER NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (rule, until)
) STRICT;
