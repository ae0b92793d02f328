#!/usr/bin/env bash
# The store's half of the pipeline on the real Apache Cassandra (one node of tests/nodes/run,
# 1 GiB heap) side by side with the embedded SQLite store: `analytics bench-store` writes
# METERS × 28 days of half-hourly readings through the sink's store write (batches of 5,000,
# the sink's default) and then makes one profile run over them. Prints readings written per
# second, rows scanned per second and the run's time for each store and fleet size, and the
# Cassandra node's memory.
#
#   bench/stores.sh              # 300 and 3,000 meters
#   bench/stores.sh 300 30000    # other fleet sizes
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(300 3000)

cargo build --release -p iot-analytics --bin analytics -p iot-cassandra --bin migrate
work=$(mktemp -d)
addr=127.0.0.42
cleanup() { tests/nodes/run stop "$work/cassandra" || true; rm -rf "$work"; }
trap cleanup EXIT
echo "starting Cassandra on $addr (about a minute)"
tests/nodes/run start cassandra --addr "$addr" --dir "$work/cassandra" >/dev/null
node_pid=$(cat "$work/cassandra/pid")

export RUST_LOG=${RUST_LOG:-warn} IOT_CASSANDRA_REPLICATION_STRATEGY=SimpleStrategy \
  IOT_CASSANDRA_REPLICATION_FACTOR=1
for meters in "${sizes[@]}"; do
  echo
  echo "== $meters meters × 28 days"
  target/release/analytics bench-store --meters "$meters" --data-dir "$work/sqlite-$meters"
  keyspace="iot_bench_$meters"
  target/release/migrate --cassandra-nodes "$addr" --cassandra-keyspace "$keyspace" >/dev/null
  target/release/analytics bench-store --meters "$meters" \
    --cassandra-nodes "$addr" --cassandra-keyspace "$keyspace"
done
echo
grep -E '^Vm(RSS|HWM)' "/proc/$node_pid/status" | sed 's/^/Cassandra node /'
