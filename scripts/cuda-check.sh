#!/usr/bin/env bash
# Proves the CUDA path on a machine with an NVIDIA GPU, from the repository root:
#
#   bash scripts/cuda-check.sh            # the whole check (needs a GPU)
#   bash scripts/cuda-check.sh --dry-run  # what can be checked without one (CI runs this)
#
# 1. Checks, one by one and with a clear message, what dfdx 0.13's CUDA build needs:
#    `nvidia-smi` (dfdx's build script asks it for the GPU's compute capability),
#    `nvcc` (it compiles dfdx's kernels to PTX for that capability), `include/cuda.h`
#    under $CUDA_ROOT, $CUDA_PATH, $CUDA_TOOLKIT_ROOT_DIR, /usr/local/cuda, /opt/cuda or
#    /usr (cudarc 0.9 looks there), and the libraries cudarc links or loads: the driver
#    (libcuda), NVRTC, cuBLAS and cuRAND. docs/cuda.md says how to bring each onto an
#    offline machine.
# 2. Builds with `--features cuda`, and runs the test files whose device follows that
#    feature (`type Dev` is `Cuda` then): the families and KL in f32 and f64 (against
#    closed forms and PyTorch's values), the estimators, gradients, heads, flows, the
#    trainer, and every model of the zoo (models/tests/zoo.rs, vamp.rs, hierarchical_vamp.rs) on the GPU.
# 3. Trains the reference VAE for 2 epochs with the same seed on the GPU and on the CPU
#    and compares the test ELBOs: they must agree within 1 nat (docs/cuda.md: the two
#    devices draw different noise, so they agree in distribution, not in digits).
# 4. Trains the repository's PyTorch reference VAE on the same GPU and prints both
#    speeds with the GPU's name.
# In dry-run mode it reports steps 1's findings without failing on a missing GPU, checks
# that this script and the PyTorch program parse, and type-checks the CUDA build
# (`--features cuda,ci-check`, no GPU or nvcc needed).
set -euo pipefail
cd "$(dirname "$0")/.."

dry=0
[ "${1:-}" = "--dry-run" ] && dry=1
missing=0
say() { printf '%s\n' "$*"; }
need() { # need WHAT FOUND-OR-EMPTY HOW
  if [ -n "$2" ]; then
    say "ok      $1: $2"
  else
    say "MISSING $1 — $3"
    missing=$((missing + 1))
  fi
}

say "== what the CUDA build needs"
smi=$(command -v nvidia-smi || true)
need "nvidia-smi (the driver's tool)" "$smi" "install the NVIDIA driver; dfdx's build runs nvidia-smi --query-gpu=compute_cap"
gpu=""
if [ -n "$smi" ]; then
  gpu=$(nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader 2>/dev/null | head -1 || true)
  need "a GPU" "$gpu" "nvidia-smi lists no GPU"
fi
nvcc_path=$(command -v nvcc || true)
need "nvcc" "$nvcc_path" "the CUDA toolkit's compiler (e.g. pip's nvidia-cuda-nvcc-cu12 wheel, see docs/cuda.md); put it on PATH"
python=${TORCH_PYTHON:-python3}
# PyTorch's CUDA wheels install a toolkit's headers and libraries under
# site-packages/nvidia/ (e.g. nvidia/cu13/{include,lib}): candidates too.
wheels=$("$python" -c 'import nvidia, sys; print(" ".join(nvidia.__path__))' 2>/dev/null || true)
wheel_roots=""
for w in $wheels; do
  for r in "$w"/*/; do [ -f "$r/include/cuda.h" ] && wheel_roots="$wheel_roots ${r%/}"; done
done
root=""
for r in "${CUDA_ROOT:-}" "${CUDA_PATH:-}" "${CUDA_TOOLKIT_ROOT_DIR:-}" /usr/local/cuda /opt/cuda /usr/lib/cuda /usr $wheel_roots; do
  if [ -n "$r" ] && [ -f "$r/include/cuda.h" ]; then root=$r; break; fi
done
need "include/cuda.h" "${root:+$root/include/cuda.h}" "set CUDA_ROOT to a toolkit holding include/cuda.h"
find_lib() { # the first lib$1.so* under the toolkit or the loader's path
  local hit
  hit=$({ ldconfig -p 2>/dev/null || true; } | awk -v l="lib$1.so" '$1 ~ "^"l {print $NF; exit}')
  if [ -z "$hit" ] && [ -n "$root" ]; then
    hit=$(find "$root/lib64" "$root/lib" "$root/targets" -name "lib$1.so*" 2>/dev/null | head -1 || true)
  fi
  if [ -z "$hit" ] && [ -n "$wheels" ]; then
    hit=$(find $wheels -name "lib$1.so*" 2>/dev/null | head -1 || true)
  fi
  printf '%s' "$hit"
}
# The linker wants unversioned names (libcublas.so); wheels ship only versioned ones
# (libcublas.so.13): a folder of links in target/ gives both the linker and the loader
# what they look for.
links=target/cuda-libs
mkdir -p "$links"
for lib in cuda nvrtc cublas curand; do
  found=$(find_lib $lib)
  need "lib$lib" "$found" "needed by cudarc 0.9 (docs/cuda.md: driver from the NVIDIA driver, the rest from the toolkit or pip's nvidia-* wheels); add its directory to LD_LIBRARY_PATH"
  if [ -n "$found" ]; then ln -sf "$found" "$links/lib$lib.so"; fi
done
torch_cuda=$("$python" -c 'import torch; print(torch.__version__, "cuda" if torch.cuda.is_available() else "no-gpu")' 2>/dev/null || true)
need "PyTorch (for the speed comparison)" "$torch_cuda" "pip install -r benches/pytorch/requirements.txt (a CUDA build of torch), or set TORCH_PYTHON"

if [ "$dry" = 1 ]; then
  say "== dry run: the script, the PyTorch program, and the CUDA type-check"
  bash -n "$0"
  python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())' benches/pytorch/reference_vae.py
  cargo check --workspace --all-targets --features cuda,ci-check
  say "dry run passed: $missing of the pieces above are missing here (expected without a GPU)"
  [ -n "$root" ] && say "note: with CUDA_ROOT=$root the build would use that toolkit (cudarc 0.9 was written for CUDA 11 and 12)"
  exit 0
fi
if [ "$missing" -gt 0 ]; then
  say "stopping: $missing pieces are missing (see above and docs/cuda.md)"
  exit 2
fi

export CUDA_ROOT="${CUDA_ROOT:-$root}"
links=$(cd "$links" && pwd)
export LIBRARY_PATH="$links${LIBRARY_PATH:+:$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$links${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
start=$(date +%s)
on_gpu_tests=(distributions estimators families flows full_covariance gradients heads
  hierarchical kl pixelcnn runtime_sizes torch_families training discrete)
say "== build with --features cuda (CUDA_ROOT=$CUDA_ROOT)"
cargo build --release --features cuda --example vae

say "== the device-generic tests on the GPU"
cargo test --release -p latent --features cuda,conformance ${on_gpu_tests[@]/#/--test }
cargo test --release -p latent-models --features cuda --test zoo --test vamp --test hierarchical_vamp

say "== the reference VAE, 2 epochs, on the GPU and on the CPU (same seed)"
data=${LATENT_DATA:-/usr/share/datasets/fashion-mnist}
[ -f "$data/train-images-idx3-ubyte.gz" ] || data=embedded
out=target/cuda-check
rm -rf "$out"
gpu_json=$(target/release/examples/vae --data "$data" --epochs 2 --eval-k 100 --eval-n 500 --out "$out/cuda" --quiet)
cargo build --release --example vae
cpu_json=$(target/release/examples/vae --data "$data" --epochs 2 --eval-k 100 --eval-n 500 --out "$out/cpu" --quiet)
field() { printf '%s' "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"; }
g_elbo=$(field "$gpu_json" test_elbo); c_elbo=$(field "$cpu_json" test_elbo)
g_ips=$(field "$gpu_json" train_images_per_s); c_ips=$(field "$cpu_json" train_images_per_s)
say "test ELBO: GPU $g_elbo, CPU $c_elbo (nats per image); training images/s: GPU $g_ips, CPU $c_ips"
python3 -c "import sys; d=abs($g_elbo-($c_elbo)); print(f'|difference| = {d:.3f} nats'); sys.exit(0 if d < 1.0 else 1)" \
  || { say "FAILED: the devices' ELBOs differ by 1 nat or more"; exit 1; }

say "== PyTorch's reference VAE on the same GPU"
if [ "$data" != embedded ]; then
  bash benches/pytorch/run.sh vae "$data" 2 2 1 cuda
else
  say "skipped: PyTorch's program needs the full Fashion-MNIST"
fi
say "GPU: $gpu; $(($(date +%s) - start)) s after the build started"
say "cuda-check passed"
