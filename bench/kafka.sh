#!/usr/bin/env bash
# Meter ingest over HTTP into Kafka against the raw producer, on a private Apache Kafka broker
# (tests/nodes/run: the compose file's version, one KRaft process, its data in a temporary
# folder). Extra arguments go to `meter bench` (--seconds, --batch, --concurrency, --meters).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p iot-meter --bin meter
work=$(mktemp -d)
trap 'tests/nodes/run stop "$work" || true; rm -rf "$work"' EXIT
brokers=$(tests/nodes/run start kafka --addr 127.0.0.43 --dir "$work")
RUST_LOG=${RUST_LOG:-warn} target/release/meter --kafka-brokers "$brokers" bench "$@"
grep -E '^Vm(RSS|HWM)' "/proc/$(cat "$work/pid")/status" | sed 's/^/Kafka broker /'
