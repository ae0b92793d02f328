#!/usr/bin/env bash
# The profile job three ways over the same readings in the real Apache Cassandra (one node of
# tests/nodes/run): in one process, on a local Ballista cluster of our own `analytics scheduler`
# and `analytics executor` (one executor, then two), and the seed system's way, a Spark job
# reading Cassandra through the Spark Cassandra Connector (bench/reference). Prints each way's
# time and rows per second, and checks the answers: the cluster's equal the in-process run's
# (within 1e-12 relative), Spark's equal ours within the reference scripts' precision (1e-9;
# the data is complete days, so validation changes nothing).
#
#   bench/cluster.sh            # 3,000 meters × 28 days
#   bench/cluster.sh 10000      # another fleet size
#   SKIP_SPARK=1 bench/cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
meters=${1:-3000}
venv=${SPARK_VENV:-/tmp/spark-venv}
slots=${SLOTS:-2}

cargo build --release -p iot-analytics --bin analytics -p iot-cassandra --bin migrate
work=$(mktemp -d)
addr=127.0.0.43
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  tests/nodes/run stop "$work/cassandra" || true
  rm -rf "$work"
}
trap cleanup EXIT
echo "starting Cassandra on $addr (about a minute)"
tests/nodes/run start cassandra --addr "$addr" --dir "$work/cassandra" >/dev/null
keyspace=iot_cluster_bench
export RUST_LOG=${RUST_LOG:-warn} IOT_CASSANDRA_NODES=$addr IOT_CASSANDRA_KEYSPACE=$keyspace \
  IOT_CASSANDRA_CONSISTENCY=ONE IOT_CASSANDRA_REPLICATION_STRATEGY=SimpleStrategy \
  IOT_CASSANDRA_REPLICATION_FACTOR=1
target/release/migrate >/dev/null
echo "== writing $meters meters × 28 days (and one run in process)"
target/release/analytics bench-store --meters "$meters"

# One run; prints its rows per second and keeps its profiles as CSV.
run() {
  local label=$1 out=$2
  shift 2
  env "$@" target/release/analytics run --output "$out" 2>/dev/null | grep '^{' > "$work/run.json"
  python3 - "$label" "$work/run.json" <<'PY'
import json, sys
from datetime import datetime
run = json.load(open(sys.argv[2]))
at = lambda k: datetime.fromisoformat(run[k].replace("Z", "+00:00"))
s = (at("finished_at") - at("started_at")).total_seconds()
print(f"{sys.argv[1]:<28} {run['status']}: {run['rows_scanned']} rows in {s:.2f} s = {run['rows_scanned'] / s:,.0f} rows/s")
PY
}

echo
echo "== the same window three ways"
run "in process (2 threads)" "$work/local.csv" IOT_ANALYTICS_THREADS=2
python3 - "$work/run.json" > "$work/window" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
print(run["window_from"], run["window_to"])
PY

port=50150
target/release/analytics scheduler --bind 127.0.0.1:$port --external-host 127.0.0.1 \
  2> "$work/scheduler.log" &
pids+=($!)
executor() {
  local i=$1
  mkdir -p "$work/executor-$i"
  target/release/analytics executor --scheduler 127.0.0.1:$port --port $((port + 10 * i + 1)) \
    --grpc-port $((port + 10 * i + 2)) --slots "$slots" --work-dir "$work/executor-$i" \
    2> "$work/executor-$i.log" &
  pids+=($!)
  for _ in $(seq 1 120); do
    grep -q "Executor registration succeed" "$work/executor-$i.log" 2>/dev/null && return
    sleep 0.5
  done
  echo "executor $i did not register:"; tail "$work/executor-$i.log"; exit 1
}
RUST_LOG=info executor 1
run "Ballista, 1 executor" "$work/cluster-1.csv" \
  IOT_BALLISTA_SCHEDULER=127.0.0.1:$port IOT_ANALYTICS_THREADS=$((2 * slots))
RUST_LOG=info executor 2
run "Ballista, 2 executors" "$work/cluster-2.csv" \
  IOT_BALLISTA_SCHEDULER=127.0.0.1:$port IOT_ANALYTICS_THREADS=$((2 * slots))
for n in 1 2; do
  echo "tasks run by executor $n: $(grep -c 'Execute task' "$work/executor-$n.log" || true)"
done

echo
echo "== answers"
# Every comparison is printed (a difference on its own line) before the script says no.
differ=0
for n in 1 2; do
  echo "Ballista, $n executor(s) against in process:"
  python3 bench/compare.py "$work/cluster-$n.csv" "$work/local.csv" --rel 1e-12 || differ=1
done
if [ -n "${SKIP_SPARK:-}" ]; then
  echo "Spark skipped (SKIP_SPARK)"
  exit $differ
fi
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q pyspark==3.5.7
fi
# The connector and its dependencies from Maven Central, less what Spark itself ships.
mkdir -p "$work/connector"
cat > "$work/connector/pom.xml" <<'POM'
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local</groupId><artifactId>connector-classpath</artifactId><version>1</version>
  <dependencies>
    <dependency>
      <groupId>com.datastax.spark</groupId>
      <artifactId>spark-cassandra-connector_2.12</artifactId>
      <version>3.5.1</version>
    </dependency>
  </dependencies>
</project>
POM
(cd "$work/connector" && mvn -q dependency:build-classpath -Dmdep.outputFile=cp.txt \
  -Dmdep.includeScope=runtime >/dev/null)
jars=$(tr ':' '\n' < "$work/connector/cp.txt" | grep -Ev '/(scala-library|scala-reflect|slf4j-api|commons-lang3)-' | paste -sd,)
read -r from to < "$work/window"
"$venv/bin/python" bench/reference/profile_spark_cassandra.py "$addr" "$keyspace" "$from" "$to" \
  "$work/spark.csv" --threads 2 --jars "$jars" 2> "$work/spark.log" || { tail -20 "$work/spark.log"; exit 1; }
echo "ours against Spark on Cassandra:"
python3 bench/compare.py "$work/local.csv" "$work/spark.csv" || differ=1
exit $differ
