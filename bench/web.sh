#!/usr/bin/env bash
# The map page under load: starts the all-in-one (release build) with a fleet, waits for the
# first profiles, then has ApacheBench fetch `/` with 200 clients at once and prints the
# page's size and the latency percentiles. Also the region page with its trend, and `/me`.
#
#   bench/web.sh                        (REQUESTS=20000 CONCURRENCY=200 METERS=300 knobs;
#                                        BIN=path/to/iot-demo skips the build)
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${REQUESTS:-20000}
concurrency=${CONCURRENCY:-200}
meters=${METERS:-300}
data=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }; rm -rf "$data"' EXIT

command -v ab >/dev/null || { apt-get update -q && apt-get install -y -q apache2-utils; }
bin=${BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -q -p iot-demo --bin iot-demo
  bin=target/release/iot-demo
fi
"$bin" --data-dir "$data" --meters "$meters" --backfill-days 7 \
  --external-addr 127.0.0.1:18480 --internal-addr 127.0.0.1:19480 >"$data/log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  if curl -fsS http://127.0.0.1:18480/api/v1/regions/E09000007 2>/dev/null | grep -q '"p50_daily_kwh"'; then
    break
  fi
  sleep 0.5
done
# Raise the open-files limit for 200 connections at once.
ulimit -n 4096 2>/dev/null || true
for path in / /regions/E09000007; do
  bytes=$(curl -fsS "http://127.0.0.1:18480$path" | wc -c)
  echo "== GET $path: $bytes bytes of HTML; $requests requests, $concurrency at a time"
  ab -q -k -n "$requests" -c "$concurrency" "http://127.0.0.1:18480$path" \
    | grep -E "Requests per second|Failed requests|Non-2xx|^  50%|^  90%|^  99%|^ 100%"
done
echo "== the page's assets: $(curl -fsS http://127.0.0.1:18480/static/app.css | wc -c) bytes of CSS, $(curl -fsS http://127.0.0.1:18480/static/map.js | wc -c) bytes of JS"
