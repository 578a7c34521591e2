-- The poll cursor is a key, (watermark, last_id): the Id of the last record read at the watermark's
-- CreatedDate, so a regular poll starts after it instead of re-reading that whole second.
ALTER TABLE checkpoints ADD COLUMN last_id TEXT;
