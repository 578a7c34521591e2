-- The send pacer's state (delivery/pacer.ts): the token bucket, the slowdown after throttling
-- replies and the hourly send counts of the rolling daily window, one JSON row per relay. Replicas
-- share it: each update holds the row lock, so they pace together to the one relay limit.
CREATE TABLE send_pace (
  key text PRIMARY KEY,
  state jsonb,
  updated_at timestamptz NOT NULL DEFAULT now()
);
