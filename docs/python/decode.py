"""Decode latents of a trained `latent` MLP VAE with numpy alone.

    python3 docs/python/decode.py runs/vae/checkpoint.safetensors < z.json > probs.json

reads a JSON list of latents (n × Z numbers, flat or nested) on stdin and writes the
Bernoulli means p(x | z) (n × X) as JSON on stdout. `load_safetensors` parses the
safetensors format directly (an 8-byte header length, a JSON header, raw
little-endian data), so only numpy is needed; with the `safetensors` package,
`safetensors.numpy.load_file(path)` gives the same arrays. `tests/python_interop.rs`
runs this file and checks its output against `latent::explore::decode` to 1e-5.
"""
import json
import struct
import sys

import numpy as np


def load_safetensors(path):
    """The tensors of a .safetensors file as numpy arrays, and its metadata."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    dtypes = {"F32": "<f4", "F64": "<f8"}
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        raw = data[8 + n + start : 8 + n + end]
        tensors[name] = np.frombuffer(raw, dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return tensors, meta


def decode(t, z):
    """Bernoulli means of the MLP VAE: sigmoid(W2 relu(W1 z + b1) + b2).

    Weights are stored (out, in) like torch.nn.Linear's.
    """
    h = np.maximum(z @ t["decoder.0.weight"].T + t["decoder.0.bias"], 0.0)
    logits = h @ t["decoder.2.weight"].T + t["decoder.2.bias"]
    return 1.0 / (1.0 + np.exp(-logits))


if __name__ == "__main__":
    tensors, meta = load_safetensors(sys.argv[1])
    model = json.loads(meta["latent"])["model"]
    z_dim = model["sizes"]["z"]
    z = np.asarray(json.load(sys.stdin), dtype=np.float64).reshape(-1, z_dim)
    json.dump(decode(tensors, z).tolist(), sys.stdout)
