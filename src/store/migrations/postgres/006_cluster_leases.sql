-- Several replicas: one poll leader per rule (lease on the database clock, epoch-fenced
-- checkpoint writes) and a heartbeat per replica (its rows `sending` are recovered once it is gone).
CREATE TABLE IF NOT EXISTS rule_leases (
  rule text PRIMARY KEY,
  holder text NOT NULL,
  epoch bigint NOT NULL,
  acquired_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS cluster_replicas (
  id text PRIMARY KEY,
  host text NOT NULL,
  pid integer NOT NULL,
  started_at timestamptz NOT NULL,
  seen_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL
);
