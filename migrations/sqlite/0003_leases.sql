-- Named leases: at most one holder at a time until expires_at (epoch milliseconds). The
-- analytics job takes one so that replicas on one store never recompute at once.
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
