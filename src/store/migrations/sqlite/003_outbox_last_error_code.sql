-- The code of a row's last failure (util/errors.ts CODES: ECONNECTION, EENVELOPE, ERENDER, ...),
-- so `outbox list --json` and metrics can group by it without parsing last_error. Rows written
-- before this column get a code where their text says it unambiguously.
ALTER TABLE outbox ADD COLUMN last_error_code TEXT;
UPDATE outbox SET last_error_code = CASE
    WHEN last_error LIKE 'render: %' THEN 'ERENDER'
    WHEN last_error LIKE 'process stopped while sending%' THEN 'EABANDONED'
  END
WHERE last_error IS NOT NULL;
