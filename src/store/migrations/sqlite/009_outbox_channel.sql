-- Placeholder for the channels branch (wt-chan), whose migration 009 adds outbox.channel: at the
-- merge, take that branch's file of this name instead of this one. Kept here only so that the
-- versions stay 1..n without a gap for migration 010 (send_api_messages) on this branch.
SELECT 1;
