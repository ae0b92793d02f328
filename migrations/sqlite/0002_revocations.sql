-- Meters whose tokens an operator revoked: tokens issued up to revoked_at (ms since the
-- epoch) are refused; a token issued after it works again.
CREATE TABLE meter_revocations (
    meter_id   TEXT PRIMARY KEY,
    revoked_at INTEGER NOT NULL
);
