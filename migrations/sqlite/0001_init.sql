-- Embedded store schema, version 1. Timestamps are UTC epoch seconds.
CREATE TABLE meters (
    meter_id       TEXT PRIMARY KEY,
    region         TEXT,
    lat            REAL,
    lon            REAL,
    household_size INTEGER,
    dwelling       TEXT,
    registered_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX meters_by_region ON meters (region);

-- One row per (meter, interval start): re-delivered readings overwrite, never duplicate.
CREATE TABLE readings (
    meter_id   TEXT    NOT NULL,
    ts         INTEGER NOT NULL,
    kwh        REAL    NOT NULL,
    interval_s INTEGER NOT NULL,
    PRIMARY KEY (meter_id, ts)
) STRICT, WITHOUT ROWID;
CREATE INDEX readings_by_ts ON readings (ts);

-- The current profile of each region; the figures are kept as JSON so the profile's shape
-- can grow without a migration per field.
CREATE TABLE regional_profiles (
    region       TEXT PRIMARY KEY,
    run_id       TEXT    NOT NULL,
    window_from  INTEGER NOT NULL,
    window_to    INTEGER NOT NULL,
    computed_at  INTEGER NOT NULL,
    profile_json TEXT    NOT NULL
) STRICT;

-- Run times in epoch milliseconds: a run can take less than a second.
CREATE TABLE runs (
    run_id          TEXT PRIMARY KEY,
    status          TEXT    NOT NULL,
    trigger         TEXT    NOT NULL,
    created_ms      INTEGER NOT NULL,
    started_ms      INTEGER,
    finished_ms     INTEGER,
    window_from     INTEGER,
    window_to       INTEGER,
    rows_scanned    INTEGER NOT NULL DEFAULT 0,
    regions_written INTEGER NOT NULL DEFAULT 0,
    error           TEXT
) STRICT;
CREATE INDEX runs_by_created ON runs (created_ms);
