#!/usr/bin/env python3
"""Compare two query answers as CSV, row by row: the same columns' count, the same rows in the
same order, numbers to 1e-9 relative (summation order differs between engines), text equal.

Usage: compare_answers.py A.csv B.csv [--rel 1e-9]. Exits 1 on any difference. Standard
library only.
"""
import csv, math, sys

def rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))

rel = float(sys.argv[sys.argv.index("--rel") + 1]) if "--rel" in sys.argv else 1e-9

def same(a, b):
    try:
        x, y = float(a), float(b)
    except ValueError:
        return a == b
    return math.isclose(x, y, rel_tol=rel, abs_tol=1e-12)

a, b = rows(sys.argv[1]), rows(sys.argv[2])
if len(a) != len(b) or len(a[0]) != len(b[0]):
    print(f"answers differ in shape: {len(a)} rows × {len(a[0])} against {len(b)} × {len(b[0])}")
    sys.exit(1)
bad = [(i, x, y) for i, (ra, rb) in enumerate(zip(a[1:], b[1:]), 1) for x, y in zip(ra, rb) if not same(x, y)]
if bad:
    for i, x, y in bad[:5]:
        print(f"row {i}: {x} != {y}")
    sys.exit(1)
print(f"answers agree: {len(a) - 1} rows × {len(a[0])} columns, to {rel:g} relative")
