#!/usr/bin/env python3
"""Compare two regional-profile CSVs (ours and a reference script's) figure by figure.

Usage: compare.py OURS.csv REFERENCE.csv [--rel 1e-9]
Counts must be equal, and the peak hour too unless the reference's figures for the two hours
tie at six decimals; every other figure must agree to --rel relative.
The hourly columns are printed to six decimals by the reference scripts, so they are compared
as printed (both sides use the same format). Exits 1 on any difference. Standard library only.
"""
import csv, math, sys

def load(path):
    with open(path, newline="") as f:
        return {row["region_id"]: row for row in csv.DictReader(f)}

def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    rel = float(sys.argv[sys.argv.index("--rel") + 1]) if "--rel" in sys.argv else 1e-9
    if "--rel" in sys.argv:
        args.remove(sys.argv[sys.argv.index("--rel") + 1])
    ours, ref = load(args[0]), load(args[1])
    bad = 0
    if set(ours) != set(ref):
        print(f"regions differ: only ours {sorted(set(ours) - set(ref))}, only reference {sorted(set(ref) - set(ours))}")
        bad += 1
    worst = 0.0
    for region in sorted(set(ours) & set(ref)):
        a, b = ours[region], ref[region]
        for col in b:
            if col == "region_id":
                continue
            x, y = a.get(col, ""), b[col]
            if col in ("meters", "readings", "peak_hour") or col.startswith("h"):
                same = x == y or (col.startswith("h") and abs(float(x) - float(y)) <= 1.5e-6)
                # Hours equal to the printed precision tie: either may be the peak.
                if col == "peak_hour" and not same:
                    hour = lambda h: float(b[f"h{int(h):02d}"])
                    same = abs(hour(x) - hour(y)) <= 1.5e-6
                if not same:
                    print(f"{region} {col}: ours {x} reference {y}")
                    bad += 1
                continue
            if y in ("", "None") or x in ("", "None"):
                if (x in ("", "None")) != (y in ("", "None")):
                    print(f"{region} {col}: ours {x!r} reference {y!r}")
                    bad += 1
                continue
            fx, fy = float(x), float(y)
            err = abs(fx - fy) / max(abs(fy), 1e-300)
            worst = max(worst, err)
            if not math.isclose(fx, fy, rel_tol=rel, abs_tol=0.0):
                print(f"{region} {col}: ours {x} reference {y} (relative {err:.2e})")
                bad += 1
    print(f"{len(ref)} regions compared; worst relative difference {worst:.2e}; {bad} differences")
    sys.exit(1 if bad else 0)

if __name__ == "__main__":
    main()
