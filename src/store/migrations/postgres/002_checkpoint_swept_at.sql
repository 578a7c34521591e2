-- When the poller's last complete lookback sweep started, so a restart knows what it covered.
ALTER TABLE checkpoints ADD COLUMN swept_at timestamptz;
