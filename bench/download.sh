#!/usr/bin/env bash
# A household's CSV download against its window: starts the all-in-one with one meter and
# two years of half-hourly history, then downloads its readings as CSV (`Accept: text/csv`)
# over 7 days to two years, printing rows, bytes, time and how far the process's peak
# resident memory rose during each download (VmHWM reset before each; Linux only).
#
#   bench/download.sh          (BIN=path/to/iot-demo skips the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }; rm -rf "$data"' EXIT
bin=${BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -q -p iot-demo --bin iot-demo
  bin=target/release/iot-demo
fi
"$bin" --data-dir "$data" --meters 1 --backfill-days 729 \
  --external-addr 127.0.0.1:18481 --internal-addr 127.0.0.1:19481 >"$data/log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  grep -q "run succeeded" "$data/log" 2>/dev/null && break
  sleep 0.5
done
meter=MAC000001
token=$("$bin" --data-dir "$data" token "$meter")
to=$(date -u +%Y-%m-%dT00:00:00Z)
for days in 7 30 365 729; do
  from=$(date -u -d "-$days days" +%Y-%m-%dT00:00:00Z)
  echo 5 > "/proc/$pid/clear_refs"
  before=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  start=$(date +%s.%N)
  curl -fsS -o "$data/out.csv" -H "authorization: Bearer $token" -H "accept: text/csv" \
    "http://127.0.0.1:18481/api/v1/meters/$meter/readings?from=$from&to=$to"
  end=$(date +%s.%N)
  peak=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  rows=$(($(wc -l < "$data/out.csv") - 1))
  printf '%4d days: %6d rows, %8d bytes, %.2f s, peak RSS %d KiB (+%d KiB during the download)\n' \
    "$days" "$rows" "$(stat -c %s "$data/out.csv")" "$(awk "BEGIN {print $end - $start}")" "$peak" "$((peak - before))"
done
