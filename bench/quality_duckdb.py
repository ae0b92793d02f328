#!/usr/bin/env python3
"""The regional profile from validated meter-days, computed in DuckDB SQL from the rules as
docs/analytics.md ("Data quality") states them, written apart from the Rust job so each
checks the other (analytics/tests/quality_reference.rs compares them).

Usage: quality_duckdb.py READINGS.parquet OUT.csv [--tz Europe/London]

READINGS.parquet has meter_id, region_id (strings), ts (timestamp, UTC) and kwh (double).
OUT.csv has one row per region: region_id, meters, readings, complete, estimated, excluded,
avg_daily_kwh, p50_daily_kwh, p90_daily_kwh, weekday_avg_daily_kwh, weekend_avg_daily_kwh,
peak_hour, h00 ... h23.
"""
import sys

import duckdb

SLOT_S = 1800
INTERPOLATE_MAX_SLOTS = 4
MAX_ESTIMATED_SHARE = 0.25
SPIKE_RATIO = 5.0
SPIKE_FLOOR_KWH = 0.5

src, out = sys.argv[1], sys.argv[2]
tz = sys.argv[sys.argv.index("--tz") + 1] if "--tz" in sys.argv else "Europe/London"
con = duckdb.connect()
con.execute("SET TimeZone='UTC'")
con.execute(f"SET VARIABLE tz = '{tz}'")

con.execute(f"""
-- Readings, their local day, and that day's start (UTC epoch seconds).
CREATE TEMP TABLE r AS
SELECT meter_id, region_id, epoch(ts)::BIGINT AS t, kwh,
       CAST(timezone(getvariable('tz'), ts) AS DATE) AS d
FROM read_parquet('{src}');

-- Every local day that occurs, with its start and its number of half-hour slots.
CREATE TEMP TABLE days AS
WITH span AS (SELECT min(d) AS lo, max(d) AS hi FROM r),
     gen AS (SELECT unnest(generate_series(lo - 15, hi + 1, INTERVAL 1 DAY))::DATE AS d FROM span)
SELECT d,
       epoch(timezone(getvariable('tz'), d::TIMESTAMP))::BIGINT AS start,
       ((epoch(timezone(getvariable('tz'), (d + 1)::TIMESTAMP))
         - epoch(timezone(getvariable('tz'), d::TIMESTAMP))) / {SLOT_S})::INT AS slots
FROM gen;

-- Readings by meter-day slot.
CREATE TEMP TABLE slot_kwh AS
SELECT r.meter_id, r.region_id, r.d, ((r.t - days.start) // {SLOT_S})::INT AS k,
       sum(r.kwh) AS kwh, count(*) AS n
FROM r JOIN days USING (d)
GROUP BY ALL;

-- Each meter's days: from its first reading to the last day any meter has one.
CREATE TEMP TABLE meter_days AS
WITH first AS (SELECT meter_id, region_id, min(d) AS first FROM r GROUP BY ALL),
     last AS (SELECT max(d) AS last FROM r)
SELECT f.meter_id, f.region_id, days.d, days.slots
FROM first f, last, days
WHERE days.d BETWEEN f.first AND last.last;

-- Validation per meter-day: readings, raw sum, complete, the spike slot.
CREATE TEMP TABLE checked AS
WITH ranked AS (
  SELECT *, row_number() OVER (PARTITION BY meter_id, d ORDER BY kwh DESC, k) AS rank
  FROM slot_kwh
),
per_day AS (
  SELECT meter_id, d, count(*) AS present, sum(n) AS readings, sum(kwh) AS raw,
         max(kwh) FILTER (WHERE rank = 1) AS top1,
         max(k) FILTER (WHERE rank = 1) AS top1_slot,
         max(kwh) FILTER (WHERE rank = 3) AS top3,
         bool_and(kwh = 0) AS all_zero
  FROM ranked GROUP BY ALL
)
SELECT md.meter_id, md.region_id, md.d, md.slots,
       coalesce(p.readings, 0) AS readings, coalesce(p.raw, 0) AS raw,
       p.present IS NOT NULL AS has_readings,
       coalesce(p.present, 0) = md.slots AS complete,
       CASE WHEN p.present >= 3 AND p.top1 >= {SPIKE_FLOOR_KWH} AND p.top1 > {SPIKE_RATIO} * p.top3
            THEN p.top1_slot END AS spike_slot,
       coalesce(p.all_zero, false) AND coalesce(p.present, 0) = md.slots AS zero_day
FROM meter_days md LEFT JOIN per_day p USING (meter_id, d);

-- Every expected slot of every meter-day in order, and whether it holds an accepted reading.
CREATE TEMP TABLE timeline AS
SELECT c.meter_id, c.d, g.k, s.kwh,
       s.kwh IS NOT NULL AND g.k IS DISTINCT FROM c.spike_slot AS accepted,
       row_number() OVER (PARTITION BY c.meter_id ORDER BY c.d, g.k) AS pos
FROM checked c
JOIN (SELECT unnest(range(50)) AS k) g ON g.k < c.slots
LEFT JOIN slot_kwh s ON s.meter_id = c.meter_id AND s.d = c.d AND s.k = g.k;

-- Runs of slots without an accepted reading (gaps and islands), with their neighbours.
CREATE TEMP TABLE runs AS
WITH holes AS (
  SELECT meter_id, pos,
         pos - row_number() OVER (PARTITION BY meter_id ORDER BY pos) AS run
  FROM timeline WHERE NOT accepted
),
bounds AS (
  SELECT meter_id, run, min(pos) AS p0, max(pos) AS p1 FROM holes GROUP BY ALL
)
SELECT b.meter_id, b.run, b.p0, b.p1, b.p1 - b.p0 + 1 AS len,
       l.kwh AS left_kwh, rt.kwh AS right_kwh
FROM bounds b
LEFT JOIN timeline l ON l.meter_id = b.meter_id AND l.pos = b.p0 - 1
LEFT JOIN timeline rt ON rt.meter_id = b.meter_id AND rt.pos = b.p1 + 1;

-- Estimates: interpolation for a short run with readings on both sides, else the same slot
-- of a reference day (one week back, else two) that was complete with no spike and not all
-- zero, and has as many slots.
CREATE TEMP TABLE estimates AS
WITH hole AS (
  SELECT t.meter_id, t.d, t.k, t.pos, ru.p0, ru.len, ru.left_kwh, ru.right_kwh
  FROM timeline t JOIN runs ru ON ru.meter_id = t.meter_id AND t.pos BETWEEN ru.p0 AND ru.p1
),
reference_days AS (
  SELECT meter_id, d, slots FROM checked
  WHERE complete AND spike_slot IS NULL AND NOT zero_day
),
reference AS (
  SELECT h.meter_id, h.d, h.k, coalesce(s7.kwh, s14.kwh) AS kwh
  FROM hole h
  JOIN checked c ON c.meter_id = h.meter_id AND c.d = h.d
  LEFT JOIN reference_days r7 ON r7.meter_id = h.meter_id AND r7.d = h.d - 7 AND r7.slots = c.slots
  LEFT JOIN slot_kwh s7 ON s7.meter_id = r7.meter_id AND s7.d = r7.d AND s7.k = h.k
  LEFT JOIN reference_days r14 ON r14.meter_id = h.meter_id AND r14.d = h.d - 14 AND r14.slots = c.slots
  LEFT JOIN slot_kwh s14 ON s14.meter_id = r14.meter_id AND s14.d = r14.d AND s14.k = h.k
  WHERE NOT (h.left_kwh IS NOT NULL AND h.right_kwh IS NOT NULL AND h.len <= {INTERPOLATE_MAX_SLOTS})
)
SELECT meter_id, d, k,
       left_kwh + (right_kwh - left_kwh) * CAST(pos - p0 + 1 AS DOUBLE) / CAST(len + 1 AS DOUBLE) AS kwh
FROM hole
WHERE left_kwh IS NOT NULL AND right_kwh IS NOT NULL AND len <= {INTERPOLATE_MAX_SLOTS}
UNION ALL
SELECT meter_id, d, k, kwh FROM reference WHERE kwh IS NOT NULL;

-- What each meter-day comes to.
CREATE TEMP TABLE outcome AS
WITH acc AS (
  SELECT meter_id, d, count(*) FILTER (WHERE accepted) AS accepted,
         coalesce(sum(kwh) FILTER (WHERE accepted), 0) AS accepted_kwh
  FROM timeline GROUP BY ALL
),
est AS (SELECT meter_id, d, count(*) AS n, sum(kwh) AS kwh FROM estimates GROUP BY ALL)
SELECT c.*, coalesce(e.n, 0) AS estimated_slots,
       c.slots - a.accepted - coalesce(e.n, 0) > 0
         OR coalesce(e.n, 0) > {MAX_ESTIMATED_SHARE} * c.slots AS excluded,
       CASE WHEN coalesce(e.n, 0) = 0 AND c.spike_slot IS NULL THEN c.raw
            ELSE a.accepted_kwh + coalesce(e.kwh, 0) END AS kwh
FROM checked c JOIN acc a USING (meter_id, d) LEFT JOIN est e USING (meter_id, d);

-- The kept meter-days' use by local hour: accepted readings and estimates.
CREATE TEMP TABLE kept_hours AS
WITH vals AS (
  SELECT meter_id, d, k, kwh FROM timeline WHERE accepted
  UNION ALL
  SELECT meter_id, d, k, kwh FROM estimates
)
SELECT o.region_id, v.meter_id, v.d,
       hour(timezone(getvariable('tz'), to_timestamp(days.start + v.k * {SLOT_S}))) AS h,
       sum(v.kwh) AS kwh
FROM vals v JOIN outcome o USING (meter_id, d) JOIN days ON days.d = v.d
WHERE NOT o.excluded
GROUP BY ALL;
""")

daily = con.execute("""
SELECT region_id,
       count(DISTINCT meter_id) FILTER (WHERE TRUE) AS meters,
       sum(readings) AS readings,
       count(*) FILTER (WHERE NOT excluded AND estimated_slots = 0 AND spike_slot IS NULL AND has_readings) AS complete,
       count(*) FILTER (WHERE NOT excluded AND NOT (estimated_slots = 0 AND spike_slot IS NULL AND has_readings)) AS estimated,
       count(*) FILTER (WHERE excluded) AS excluded,
       avg(kwh) FILTER (WHERE NOT excluded) AS avg_daily_kwh,
       quantile_cont(kwh, 0.5) FILTER (WHERE NOT excluded) AS p50_daily_kwh,
       quantile_cont(kwh, 0.9) FILTER (WHERE NOT excluded) AS p90_daily_kwh,
       avg(kwh) FILTER (WHERE NOT excluded AND isodow(d) <= 5) AS weekday_avg_daily_kwh,
       avg(kwh) FILTER (WHERE NOT excluded AND isodow(d) > 5) AS weekend_avg_daily_kwh
FROM outcome
GROUP BY region_id
HAVING count(*) FILTER (WHERE NOT excluded) > 0
ORDER BY region_id""").fetchall()
hourly = con.execute("""
SELECT region_id, h, sum(kwh) / count(*) FROM kept_hours GROUP BY region_id, h ORDER BY region_id, h
""").fetchall()

curves = {}
for reg, h, v in hourly:
    curves.setdefault(reg, [0.0] * 24)[h] = v
with open(out, "w") as f:
    f.write("region_id,meters,readings,complete,estimated,excluded,avg_daily_kwh,p50_daily_kwh,"
            "p90_daily_kwh,weekday_avg_daily_kwh,weekend_avg_daily_kwh,peak_hour,"
            + ",".join(f"h{h:02d}" for h in range(24)) + "\n")
    for row in daily:
        c = curves.get(row[0], [0.0] * 24)
        peak = max(range(24), key=lambda h: (c[h], -h))
        cells = ["" if x is None else repr(x) if isinstance(x, float) else str(x) for x in row]
        f.write(",".join(cells) + f",{peak}," + ",".join(repr(x) for x in c) + "\n")
print(f"duckdb {duckdb.__version__}: {len(daily)} regions")
