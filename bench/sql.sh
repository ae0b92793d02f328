#!/usr/bin/env bash
# Times analysts' SQL side by side on one Parquet file of readings: `analytics sql --input`
# (DataFusion, this project) and DuckDB (bench/sql_duckdb.py), the same query text, the same
# threads and memory limit, and checks that the answers agree. Then shows a query over the
# memory limit failing with a clear error.
#
#   bench/sql.sh [READINGS.parquet]        (default: /tmp/r10m.parquet, generated if missing)
#   THREADS=2 MEMORY_MIB=512 bench/sql.sh  (environment knobs)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-/tmp/bench-venv}
file=${1:-/tmp/r10m.parquet}
threads=${THREADS:-2}
memory=${MEMORY_MIB:-512}
out=${OUT:-/tmp/iot-bench-sql}
mkdir -p "$out"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -c 'import duckdb, pyarrow, numpy' 2>/dev/null \
  || "$venv/bin/pip" install -q duckdb pyarrow numpy
if [ ! -f "$file" ]; then
  "$venv/bin/python" bench/reference/gen_readings.py "$file" --meters 2000 --days 105
fi
cargo build --release -q -p iot-analytics --bin analytics

queries=(
  # Per region over the whole file: a scan and a small aggregation.
  "SELECT region, count(DISTINCT meter_id) AS meters, count(*) AS readings, sum(kwh) AS kwh FROM readings WHERE ts >= '2026-01-01T00:00:00Z' GROUP BY region ORDER BY region"
  # Daily kWh per meter, then each region's mean and p90 of them: 210,000 groups.
  "WITH daily AS (SELECT region, meter_id, date_trunc('day', ts) AS day, sum(kwh) AS kwh FROM readings WHERE ts >= '2026-01-01T00:00:00Z' GROUP BY region, meter_id, day) SELECT region, count(*) AS meter_days, avg(kwh) AS avg_daily_kwh, percentile_cont(0.9) WITHIN GROUP (ORDER BY kwh) AS p90_daily_kwh FROM daily GROUP BY region ORDER BY region"
)
i=0
for q in "${queries[@]}"; do
  i=$((i + 1))
  echo "== query $i: $q"
  echo "-- DataFusion (this project), $threads threads, $memory MiB"
  target/release/analytics sql "$q" --input "$file" --threads "$threads" \
    --sql-memory-mib "$memory" --sql-timeout-s 600 --output "$out/ours-$i.csv" 2>&1 | grep -v INFO
  echo "-- DuckDB, $threads threads, $memory MiB"
  "$venv/bin/python" bench/sql_duckdb.py "$file" "$q" "$out/duckdb-$i.csv" --threads "$threads" --memory-mib "$memory"
  # DataFusion's percentile_cont rounds its interpolation weight down to a millionth, so a
  # percentile may differ from DuckDB's quantile by a millionth of the gap between two values.
  python3 bench/compare_answers.py "$out/ours-$i.csv" "$out/duckdb-$i.csv" --rel 1e-6
done

echo "== over the limit: every reading sorted, in 256 MiB"
q="SELECT * FROM readings WHERE ts >= '2026-01-01T00:00:00Z' ORDER BY kwh"
target/release/analytics sql "$q" --input "$file" --threads "$threads" \
  --sql-memory-mib 256 --sql-max-rows 10 2>&1 | grep -v INFO || true
