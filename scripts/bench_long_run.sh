#!/usr/bin/env bash
# Training speed of the long run's models, two builds interleaved.
#
#   bash scripts/bench_long_run.sh BEFORE_BIN AFTER_BIN [PAIRS] [GUIDES]
#
# BEFORE_BIN and AFTER_BIN are two builds of `examples/long_run` (e.g. one from a
# worktree at an older commit with its own CARGO_TARGET_DIR, one from this checkout).
# For each guide (default: "gaussian iaf planar") runs PAIRS (default 3) pairs, the
# order alternating (before-after, after-before, ...), each 2 epochs on the full
# Fashion-MNIST training part (50,000 images, batch 100, as the recipe), and prints
# each run's training images/s (training steps only) and, per guide, the median and
# minimum of after/before. Time it with nothing else running; the CPU and SIMD level
# are printed first.
set -euo pipefail
before=$1 after=$2 pairs=${3:-3} guides=${4:-"gaussian iaf planar"}
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) threads," \
  "avx512f: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no), avx2: $(grep -qw avx2 /proc/cpuinfo && echo yes || echo no)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
speed() { # BIN GUIDE -> images/s
  "$1" --guide "$2" --batch-size 100 --lr 5e-4 --epochs 2 --warmup-epochs 100 --patience 50 \
    --eval-k 1 --eval-n 1 --out "$tmp/run" --quiet --overwrite > "$tmp/out" 2>&1 || { cat "$tmp/out" >&2; exit 1; }
  python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['train_images_per_s']))" "$tmp/run/summary.json"
}
for g in $guides; do
  ratios=()
  for p in $(seq 1 "$pairs"); do
    if (( p % 2 )); then b=$(speed "$before" "$g"); a=$(speed "$after" "$g"); else a=$(speed "$after" "$g"); b=$(speed "$before" "$g"); fi
    r=$(python3 -c "print(f'{$a/$b:.3f}')")
    ratios+=("$r")
    echo "$g pair $p: before $b img/s, after $a img/s, after/before $r"
  done
  python3 -c "import statistics,sys; r=[float(x) for x in sys.argv[2:]]; print(f'{sys.argv[1]}: after/before median {statistics.median(r):.3f}, min {min(r):.3f}')" "$g" "${ratios[@]}"
done
