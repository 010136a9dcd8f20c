#!/usr/bin/env bash
# Runs a PyTorch side of `latent`'s comparisons on Fashion-MNIST:
#   run.sh vae   [DATA_DIR] [epochs] [threads] [binarize 0|1]   reference VAE (reference_vae.py)
#   run.sh vqvae [DATA_DIR] [epochs] [threads]                   conv VQ-VAE (conv_vqvae.py)
# Uses a Python that already imports torch and numpy ($TORCH_PYTHON, else python3),
# or installs requirements.txt into a virtual environment ($TORCH_VENV, default
# target/torch-venv beside this repository) on first use (a large download).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
program=${1:?usage: run.sh vae|vqvae [DATA_DIR] [epochs] [threads] [binarize]}
shift
case $program in
  vae) script=$here/reference_vae.py ;;
  vqvae) script=$here/conv_vqvae.py ;;
  *) echo "unknown program '$program': vae or vqvae" >&2; exit 2 ;;
esac
python=${TORCH_PYTHON:-python3}
if ! "$python" -c 'import torch, numpy' 2>/dev/null; then
  venv=${TORCH_VENV:-$here/../../target/torch-venv}
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import torch, numpy' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r "$here/requirements.txt"
  fi
  python=$venv/bin/python
fi
data=${1:-/usr/share/datasets/fashion-mnist}
if [ ! -f "$data/train-images-idx3-ubyte.gz" ]; then
  echo "Fashion-MNIST not found in $data (apt-get install dataset-fashion-mnist)" >&2
  exit 2
fi
shift || true
exec "$python" "$script" "$data" "$@"
