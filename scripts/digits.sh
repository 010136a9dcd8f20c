#!/usr/bin/env bash
# The count likelihoods on scikit-learn's bundled digits (1,797 images of 8x8 pixels,
# integers 0-16; no download): Binomial(16), Poisson and negative binomial VAEs on the
# same split (seed 0: 20% test, 10% of the rest for validation), each with the
# independent-per-pixel baseline of its family where there is one. Writes
# docs/digits/<likelihood>/summary.json and docs/digits/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-docs/digits}
mkdir -p "$out" target/digits
python3 -c "from sklearn.datasets import load_digits as l; import numpy as np; d = l(); np.savez('target/digits/digits.npz', x=d.data, y=d.target)"
cargo build --release --example tabular
for lik in binomial:16 poisson negative-binomial; do
  name=${lik%%:*}
  target/release/examples/tabular --train target/digits/digits.npz --likelihood "$lik" \
    --hidden 128 --latent-dim 8 --epochs 500 --patience 50 --eval-k 1000 --seed 0 \
    --out "target/digits/$name" --overwrite --quiet
  mkdir -p "$out/$name"
  cp "target/digits/$name/summary.json" "$out/$name/summary.json"
done
python3 - "$out" <<'PY'
import json, sys, platform
out = sys.argv[1]
rows = []
for name, label in [("binomial", "Binomial(16)"), ("poisson", "Poisson"), ("negative-binomial", "negative binomial")]:
    s = json.load(open(f"{out}/{name}/summary.json"))
    base = s["independent_baseline_test_nll"]
    rows.append(f"| {label} | {s['test_nll']:.2f} ± {s['test_nll_stderr']:.2f} | {-s['test_elbo']:.2f} | "
                f"{s['best_epoch']} | {s['active_units']} | "
                + (f"{base:.2f}" if base is not None else "–") + " |")
with open(f"{out}/results.md", "w") as f:
    f.write("| likelihood | test NLL (k = 1000) | test −ELBO | best epoch | active units | independent pixels |\n")
    f.write("|---|---|---|---|---|---|\n")
    f.write("\n".join(rows) + "\n")
print(open(f"{out}/results.md").read())
PY
