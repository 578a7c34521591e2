-- Digest rules: matched records are collected here instead of emailed one by one; a digest is
-- one outbox row, written in ONE transaction with the marking of every item it covers, so a
-- record lands in exactly one digest (UNIQUE (rule, record_key) is its ledger).
CREATE TABLE digest_items (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  rule text NOT NULL,
  record_key text NOT NULL, -- <Id> (on: created) or <Id>.<version> (on: updated)
  object text NOT NULL,
  record jsonb NOT NULL, -- the record's fields as read, rendered when the digest goes out
  collected_at timestamptz NOT NULL DEFAULT now(),
  digest_outbox_id bigint, -- the digest row that covers it; NULL until then
  CONSTRAINT digest_items_rule_key UNIQUE (rule, record_key)
);
CREATE INDEX digest_items_open ON digest_items (rule, id) WHERE digest_outbox_id IS NULL;

CREATE TABLE digests (
  rule text NOT NULL,
  until timestamptz NOT NULL, -- the scheduled time it covers records up to; the next digest's `since`
  outbox_id bigint NOT NULL,
  count integer NOT NULL,
  PRIMARY KEY (rule, until)
);
