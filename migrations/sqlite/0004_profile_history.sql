-- Every succeeded run's profiles, kept for comparison and each region's history; rows older
-- than the retention (365 days, as run records in Cassandra) are removed as new ones arrive.
-- `published` says whether a run's profiles replaced the map's (a run over a window an
-- analyst chose does so only when asked).
ALTER TABLE runs ADD COLUMN published INTEGER NOT NULL DEFAULT 1;

CREATE TABLE profiles_by_run (
    run_id       TEXT    NOT NULL,
    region       TEXT    NOT NULL,
    window_from  INTEGER NOT NULL,
    window_to    INTEGER NOT NULL,
    computed_at  INTEGER NOT NULL,
    profile_json TEXT    NOT NULL,
    PRIMARY KEY (run_id, region)
) STRICT;
CREATE INDEX profiles_by_region ON profiles_by_run (region, computed_at);
