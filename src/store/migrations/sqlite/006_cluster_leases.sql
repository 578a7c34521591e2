-- The same lease and heartbeat tables as PostgreSQL. One daemon holds a SQLite store, so it leads
-- every rule; the tables keep the Store contract (and `status`) the same on both backends.
CREATE TABLE IF NOT EXISTS rule_leases (
  rule TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  acquired_at TEXT NOT NULL,
  expires_at TEXT NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS cluster_replicas (
  id TEXT PRIMARY KEY,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  started_at TEXT NOT NULL,
  seen_at TEXT NOT NULL,
  expires_at TEXT NOT NULL
) STRICT;
