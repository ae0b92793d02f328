#!/usr/bin/env bash
# Times the regional-profile computation side by side on one Parquet file with the same
# number of threads: this project's DataFusion job, DuckDB, and Spark local mode (the
# reference scripts in bench/reference), and checks that our figures equal the profile's
# data-quality rules written apart in DuckDB SQL (bench/quality_duckdb.py). The reference
# scripts sum every day's readings as stored; on meter-days with missing readings our
# figures differ from theirs by design (docs/analytics.md, "Data quality").
#
#   bench/run.sh [READINGS.parquet]      (default: /tmp/r10m.parquet, generated if missing)
#   THREADS=2 SKIP_SPARK=1 bench/run.sh  (environment knobs)
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-bench/reference}
venv=${VENV:-/tmp/bench-venv}
file=${1:-/tmp/r10m.parquet}
threads=${THREADS:-2}
out=${OUT:-/tmp/iot-bench}
mkdir -p "$out"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q duckdb pyarrow numpy pyspark==4.0.1
fi
if [ ! -f "$file" ]; then
  "$venv/bin/python" "$shared/gen_readings.py" "$file" --meters 2000 --days 105
fi
cargo build --release -q -p iot-analytics

echo "== DataFusion (this project), $threads threads"
target/release/analytics bench --input "$file" --threads "$threads"
target/release/analytics run --input "$file" --output "$out/ours.csv" --threads "$threads" 2>/dev/null
echo "== DuckDB, $threads threads"
"$venv/bin/python" "$shared/profile_duckdb.py" "$file" "$out/duckdb.csv" --threads "$threads"
echo "== DuckDB, the data-quality rules (bench/quality_duckdb.py)"
"$venv/bin/python" bench/quality_duckdb.py "$file" "$out/quality.csv"
echo "== our figures against the data-quality rules in DuckDB"
python3 bench/compare.py "$out/ours.csv" "$out/quality.csv"
if [ -z "${SKIP_SPARK:-}" ]; then
  echo "== Spark local, $threads threads"
  "$venv/bin/python" "$shared/profile_spark.py" "$file" "$out/spark.csv" --threads "$threads" 2>/dev/null
fi
