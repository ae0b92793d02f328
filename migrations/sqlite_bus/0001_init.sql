-- Embedded bus log, version 1: an append-only log of readings with one committed offset per
-- consumer group, the same contract a Kafka topic gives the sink.
CREATE TABLE log (
    offset     INTEGER PRIMARY KEY AUTOINCREMENT,
    meter_id   TEXT    NOT NULL,
    ts         INTEGER NOT NULL,
    kwh        REAL    NOT NULL,
    interval_s INTEGER NOT NULL
) STRICT;

CREATE TABLE group_offsets (
    group_id  TEXT PRIMARY KEY,
    committed INTEGER NOT NULL
) STRICT;
