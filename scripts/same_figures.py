#!/usr/bin/env python3
"""Checks that two JSON result files hold the same figures (CI).

    python3 scripts/same_figures.py A.json B.json KEY [KEY ...] [--tolerance T]

Exits 1, naming each key, when |A[key] - B[key]| > T (default 0: bit for bit, as
`evaluate` must give `long_run`'s figures from the same checkpoint, seed and options).
"""

import argparse
import json
import sys


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("keys", nargs="+")
    p.add_argument("--tolerance", type=float, default=0.0)
    args = p.parse_args()
    a, b = (json.load(open(f)) for f in (args.a, args.b))
    bad = [k for k in args.keys if abs(a[k] - b[k]) > args.tolerance]
    for k in args.keys:
        print(f"{k}: {a[k]!r} and {b[k]!r}")
    if bad:
        print(f"differ beyond {args.tolerance}: {', '.join(bad)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
