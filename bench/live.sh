#!/usr/bin/env bash
# How soon a reading's 202 shows in the live API (docs/live.md), on the all-in-one with its
# fleet running: by default at the fleet's default size (300 meters) and at ten times it.
# Arguments: fleet sizes. PROFILE=release (default) or dev picks the build; PROBE (e.g.
# "--slot past") passes options to bench/live_probe.py.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-release}
read -r -a PROBE_ARGS <<<"${PROBE:-}"
cargo build --profile "$profile" --bin iot-demo
bin=target/$([ "$profile" = dev ] && echo debug || echo "$profile")/iot-demo
for meters in "${@:-300 3000}"; do
  for m in $meters; do
    data=$(mktemp -d)
    out=$(mktemp)
    # No faults: each household posts each half hour once, as it ends, so during the probe
    # the live half hour changes only by the probe's readings.
    IOT_DATA_DIR=$data RUST_LOG=warn "$bin" --meters "$m" --backfill-days 2 --faults off \
      --external-addr 127.0.0.1:0 --internal-addr 127.0.0.1:0 > "$out" &
    pid=$!
    trap 'kill -TERM $pid 2>/dev/null || true; rm -rf "$data" "$out"' EXIT
    until grep -q '^listening' "$out"; do sleep 0.2; done
    line=$(grep '^listening' "$out")
    ext=$(sed -E 's/.*external=([^ ]+).*/\1/' <<<"$line")
    int=$(sed -E 's/.*internal=([^ ]+).*/\1/' <<<"$line")
    # The fleet's backfill first (the start-up run waits until it is stored): the live layer
    # then sees only the live posts and the probe.
    until curl -fs "$int/internal/v1/runs" -H "Authorization: Bearer $(cat "$data/analyst-token")" \
        | grep -q '"succeeded"'; do sleep 1; done
    echo "fleet of $m meters, backfill stored"
    python3 bench/live_probe.py --external "$ext" --internal "$int" \
      --analyst-token "$(cat "$data/analyst-token")" "${PROBE_ARGS[@]}"
    grep -E '^Vm(RSS|HWM)' "/proc/$pid/status" | sed 's/^/iot-demo /'
    kill -TERM "$pid"; wait "$pid" || true
    rm -rf "$data" "$out"
    trap - EXIT
  done
done
