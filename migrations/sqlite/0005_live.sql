-- The live layer (docs/live.md). live_entries is the aggregator's state for one bus part: the
-- kWh (in micro-kWh, so sums are exact) each (meter, ts) of the last 48 hours contributes to
-- its half-hour slot, from which a restarted aggregator rebuilds. live_slots holds each part's
-- figures per (region, slot); readers sum them over parts. Both are upserts, so writing the
-- same state twice changes nothing; rows older than the window are deleted as new ones arrive.
CREATE TABLE live_entries (
    part      INTEGER NOT NULL,
    meter_id  TEXT    NOT NULL,
    ts        INTEGER NOT NULL,
    region    TEXT    NOT NULL,
    micro_kwh INTEGER NOT NULL,
    PRIMARY KEY (part, meter_id, ts)
) STRICT, WITHOUT ROWID;
CREATE INDEX live_entries_by_ts ON live_entries (ts);

CREATE TABLE live_slots (
    slot      INTEGER NOT NULL,
    region    TEXT    NOT NULL,
    part      INTEGER NOT NULL,
    micro_kwh INTEGER NOT NULL,
    meters    INTEGER NOT NULL,
    readings  INTEGER NOT NULL,
    PRIMARY KEY (slot, region, part)
) STRICT, WITHOUT ROWID;
