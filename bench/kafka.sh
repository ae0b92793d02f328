#!/usr/bin/env bash
# Meter ingest over HTTP into Kafka against the raw producer, on a private tansu broker
# (in-memory storage) on a free loopback port. Extra arguments go to `meter bench`
# (--seconds, --batch, --concurrency, --meters). Needs tansu: cargo install tansu --features dynostore
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
command -v tansu >/dev/null || { echo "tansu not found: cargo install tansu --features dynostore" >&2; exit 1; }
cargo build --release -p iot-meter --bin meter
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="tcp://127.0.0.1:$port"
tansu broker --listener-url "$url" --advertised-listener-url "$url" --storage-engine memory://tansu/ \
  >/tmp/bench-tansu.log 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
RUST_LOG=${RUST_LOG:-warn} target/release/meter --kafka-brokers "127.0.0.1:$port" bench "$@"
