-- The send pacer's state (delivery/pacer.ts): the token bucket, the slowdown after throttling
-- replies and the hourly send counts of the rolling daily window, one JSON row per relay, so a
-- restart keeps the daily count and does not burst past the relay's limit.
CREATE TABLE send_pace (
  key TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  updated_at TEXT NOT NULL
) STRICT;
