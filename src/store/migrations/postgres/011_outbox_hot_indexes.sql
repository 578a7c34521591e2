-- Every notification moves its row pending -> sending -> sent, and every index that holds `state`
-- is written at each move: in one transaction, a move cost 85-110 us of CPU against 27 us for
-- the same row's lease columns (bench/RESULTS.md, sixth round). Two such indexes only ever serve
-- lookups of a few rows, and now hold only those:
-- nextDueAt: the rows that wait for a retry time (a fresh pending row has none).
DROP INDEX outbox_due;
CREATE INDEX outbox_due ON outbox (next_attempt_at)
  WHERE state IN ('pending', 'failed') AND next_attempt_at IS NOT NULL;
-- lastErrors (`status`): the rows in an error state, latest change first. (state, id) over every
-- row served only that here: claims use outbox_claimable / outbox_channel_claimable, recovery
-- outbox_sending_lease, and listing scans by id.
DROP INDEX outbox_state_id;
CREATE INDEX outbox_errors ON outbox (updated_at, id) WHERE state IN ('dead', 'failed', 'unknown');
