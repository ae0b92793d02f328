#!/usr/bin/env python3
"""Runs one SQL query in DuckDB over a Parquet file of readings, as `analytics sql --input`
does in DataFusion: the file is the view `readings(meter_id, region, ts, kwh)`.

Usage: sql_duckdb.py READINGS.parquet "QUERY" OUT.csv [--threads N] [--memory-mib M]
Prints the query time (fetch included, start-up and view creation excluded) and the process's
peak resident memory. Needs: duckdb.
"""
import csv, resource, sys, time
import duckdb

src, query, out = sys.argv[1], sys.argv[2], sys.argv[3]
threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 2
memory = int(sys.argv[sys.argv.index("--memory-mib") + 1]) if "--memory-mib" in sys.argv else 512
con = duckdb.connect()
con.execute(f"SET threads={threads}")
con.execute(f"SET memory_limit='{memory}MB'")
con.execute("SET TimeZone='UTC'")
con.execute(f"CREATE VIEW readings AS SELECT meter_id, region_id AS region, ts, kwh FROM read_parquet('{src}')")
t0 = time.perf_counter()
try:
    cur = con.execute(query)
    rows = cur.fetchall()
    names = [d[0] for d in cur.description]
except duckdb.Error as e:
    print(f"duckdb {duckdb.__version__}: failed after {time.perf_counter() - t0:.3f} s: {e}")
    sys.exit(1)
dt = time.perf_counter() - t0
with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(names)
    w.writerows(rows)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"duckdb {duckdb.__version__}: {len(rows)} rows in {dt:.3f} s; peak RSS {peak:.1f} MiB")
