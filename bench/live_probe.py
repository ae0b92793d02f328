#!/usr/bin/env python3
"""How soon a reading's 202 shows in the live API, measured on a running iot-demo (or any
deployment's edge): registers probe meters in one borough, posts one reading at a time and
polls the live API every 100 ms; a reading is visible once its half hour's reading count
covers it (the embedded bus keeps order). Prints p50, p99 and the worst latency.

--slot now (the default): readings go into the last complete half hour and visibility is read
from GET /api/v1/live, the map's own source. Run the fleet without faults (its meters post
each half hour once, as it ends) and start at least two minutes into a half hour: the probe
waits for that, and stops if the half hour moves on while it runs.
--slot past: a half hour three hours back, read from GET /api/v1/live/{code}."""

import argparse
import datetime as dt
import json
import statistics
import threading
import time
import urllib.request

def call(url, token=None, body=None, method=None):
    req = urllib.request.Request(url, method=method or ("POST" if body is not None else "GET"))
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, data, timeout=30) as res:
        return res.status, json.loads(res.read() or b"null")

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--external", required=True)
    p.add_argument("--internal", required=True)
    p.add_argument("--analyst-token", required=True)
    p.add_argument("--region", default="E09000007")
    p.add_argument("--readings", type=int, default=600)
    p.add_argument("--rate", type=float, default=10.0, help="readings posted per second")
    p.add_argument("--slot", choices=["now", "past"], default="now")
    a = p.parse_args()

    def half_hour(t):
        return t.replace(minute=(t.minute // 30) * 30, second=0, microsecond=0)

    # Posting and the wait after it fit in a half hour; start two minutes past its start, once
    # the fleet's posts of the half hour that just ended are in.
    budget = dt.timedelta(seconds=a.readings / a.rate + 150)
    now = dt.datetime.now(dt.timezone.utc)
    into = now - half_hour(now)
    if a.slot == "now" and (into < dt.timedelta(minutes=2) or into + budget > dt.timedelta(minutes=30)):
        wait = (dt.timedelta(minutes=32) - into) if into >= dt.timedelta(minutes=2) else dt.timedelta(minutes=2) - into
        print(f"waiting {wait.total_seconds():.0f} s for the start of a half hour")
        time.sleep(wait.total_seconds())
        now = dt.datetime.now(dt.timezone.utc)
    slot = half_hour(now) - (dt.timedelta(minutes=30) if a.slot == "now" else dt.timedelta(hours=3))
    slot_iso = slot.strftime("%Y-%m-%dT%H:%M:%SZ")
    probes = []
    stamp = int(time.time())
    for i in range(a.readings):
        meter = f"PROBE{stamp}-{i:04d}"
        status, body = call(f"{a.internal}/internal/v1/meters", a.analyst_token,
                            {"meter_id": meter, "region": a.region})
        assert status == 201, (status, body)
        probes.append((meter, body["token"]))

    def count():
        if a.slot == "now":
            _, body = call(f"{a.external}/api/v1/live")
            if not body["slot"].startswith(slot_iso[:16]):
                raise SystemExit(f"the half hour moved on to {body['slot']}; run again")
            return next(r["readings"] for r in body["regions"] if r["code"] == a.region)
        _, body = call(f"{a.external}/api/v1/live/{a.region}")
        for s in body["slots"]:
            if s["slot"].startswith(slot_iso[:16]):
                return s["readings"]
        return 0

    base = count()
    seen = []  # (time, readings in the slot)
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            seen.append((time.monotonic(), count()))
            time.sleep(0.1)

    poller = threading.Thread(target=poll)
    poller.start()
    accepted = []
    for i, (meter, token) in enumerate(probes):
        status, _ = call(f"{a.external}/api/v1/readings", token,
                         [{"meter_id": meter, "ts": slot_iso, "kwh": 0.25}])
        assert status == 202, status
        accepted.append(time.monotonic())
        time.sleep(1.0 / a.rate)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (not seen or seen[-1][1] < base + len(probes)):
        time.sleep(0.2)
    stop.set()
    poller.join()

    latencies = []
    for i, t202 in enumerate(accepted):
        shown = next((t for t, n in seen if t >= t202 and n >= base + i + 1), None)
        latencies.append(float("inf") if shown is None else shown - t202)
    latencies.sort()
    q = lambda f: latencies[min(len(latencies) - 1, int(f * len(latencies)))]
    missing = sum(1 for l in latencies if l == float("inf"))
    source = "/api/v1/live" if a.slot == "now" else f"/api/v1/live/{a.region}"
    print(f"live latency over {len(latencies)} readings (202 -> {source}, {a.region}): "
          f"p50 {q(0.5):.2f} s, p99 {q(0.99):.2f} s, max {latencies[-1]:.2f} s, "
          f"mean {statistics.fmean(l for l in latencies if l != float('inf')):.2f} s, "
          f"never shown {missing}")

if __name__ == "__main__":
    main()
