"""The reference VAE in PyTorch, the other side of `cargo bench --bench vae_throughput`.

The same model and protocol as `latent`'s main job (`examples/vae.rs`, its defaults):
an MLP VAE 784-400-20 with ReLU units, a diagonal Normal guide with heads for the mean
and the log standard deviation, a standard Normal prior and Bernoulli logits
(Kingma & Welling 2014, Appendix C), trained with Adam (lr 1e-3) on minus the mean
one-sample ELBO of batches of 128 shuffled images, each batch binarized afresh
(dynamic binarization). After training: the test ELBO on all test images (binarized
once with a fixed seed) and the negative log-likelihood by importance sampling
(k = 1000 draws from the guide, Burda et al. 2015, eq. 12) on the first 1000 of them.
All figures in nats per image.

Usage: python reference_vae.py DATA_DIR [epochs=1] [threads=2] [binarize=1] [device=cpu]
(device: cpu, cuda or cuda:N). Prints one line of key=value pairs, among them
train_images_per_s (training steps only, synchronized with the device) and
eval_nll_images_per_s (the importance-sampled NLL).
"""
import gzip
import math
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

LOG_2PI = math.log(2.0 * math.pi)


def read_images(path):
    """The images of a gzipped IDX file as float32 rows in [0, 1]."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape[0], -1)
    return torch.from_numpy(pixels.astype(np.float32) / 255.0)


class ReferenceVae(nn.Module):
    def __init__(self, pixels=784, hidden=400, latents=20):
        super().__init__()
        self.hidden = nn.Linear(pixels, hidden)
        self.loc = nn.Linear(hidden, latents)
        self.log_scale = nn.Linear(hidden, latents)
        self.decoder = nn.Sequential(nn.Linear(latents, hidden), nn.ReLU(), nn.Linear(hidden, pixels))

    def guide(self, x):
        h = F.relu(self.hidden(x))
        return self.loc(h), self.log_scale(h)

    def elbo(self, x):
        """One-sample ELBO per image, closed-form KL against N(0, I)."""
        loc, log_scale = self.guide(x)
        z = loc + torch.randn_like(loc) * log_scale.exp()
        log_lik = -F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").sum(-1)
        kl = 0.5 * (loc.pow(2) + (2 * log_scale).exp() - 1 - 2 * log_scale).sum(-1)
        return log_lik - kl

    @torch.no_grad()
    def log_marginal(self, x, k):
        """log p(x) by importance sampling with k draws from the guide, per image."""
        loc, log_scale = self.guide(x)
        eps = torch.randn(k, *loc.shape, device=loc.device)
        z = loc + eps * log_scale.exp()
        log_lik = -F.binary_cross_entropy_with_logits(
            self.decoder(z), x.expand(k, *x.shape), reduction="none").sum(-1)
        log_prior = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
        log_guide = -0.5 * (eps.pow(2) + LOG_2PI).sum(-1) - log_scale.sum(-1)
        return torch.logsumexp(log_lik + log_prior - log_guide, 0) - math.log(k)


def main():
    data = sys.argv[1]
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    binarize = (sys.argv[4] if len(sys.argv) > 4 else "1") == "1"
    device = torch.device(sys.argv[5] if len(sys.argv) > 5 else "cpu")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    train = read_images(f"{data}/train-images-idx3-ubyte.gz").to(device)
    test = read_images(f"{data}/t10k-images-idx3-ubyte.gz").to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model = ReferenceVae().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seen, busy = 0, 0.0
    for _ in range(epochs):
        order = torch.randperm(len(train), device=device)
        for start in range(0, len(train), 128):
            t0 = time.perf_counter()
            x = train[order[start:start + 128]]
            if binarize:
                x = torch.bernoulli(x)
            loss = -model.elbo(x).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sync()
            busy += time.perf_counter() - t0
            seen += len(x)
    with torch.no_grad():
        generator = torch.Generator(device=device).manual_seed(1)
        xt = torch.bernoulli(test, generator=generator) if binarize else test
        test_elbo = torch.cat([model.elbo(xt[i:i + 1000]) for i in range(0, len(xt), 1000)]).mean().item()
        t0 = time.perf_counter()
        log_px = torch.cat([model.log_marginal(xt[i:i + 100], 1000) for i in range(0, 1000, 100)])
        sync()
        nll_seconds = time.perf_counter() - t0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch={torch.__version__} device={device} gpu={name.replace(' ', '_')} "
          f"threads={threads} epochs={epochs} binarize={int(binarize)} "
          f"train_images_per_s={seen / busy:.0f} train_seconds={busy:.1f} test_elbo={test_elbo:.2f} "
          f"test_nll={-log_px.mean().item():.2f} eval_nll_images_per_s={1000 / nll_seconds:.1f}")


if __name__ == "__main__":
    main()
