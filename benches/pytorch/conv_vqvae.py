"""The convolutional VQ-VAE in PyTorch, the other side of the VQ-VAE comparison in
`cargo bench --bench vae_throughput`.

The architecture of `latent_models::conv_vq_vae` (DM = 16, K = 256): van den Oord,
Vinyals & Kavukcuoglu 2017, §4.1, scaled to 28x28 images.
- Encoder: conv 4x4 stride 2 (1 -> 32), ReLU, conv 4x4 stride 2 (32 -> 64), ReLU,
  conv 1x1 (64 -> DM): a 7x7 grid of DM-dimensional vectors.
- Quantizer: the nearest of K codes, the straight-through gradient (§3.1), the
  commitment term with beta = 0.25 (eq. 3), the codebook learned by exponential moving
  averages (Appendix A.1: decay 0.99, Laplace smoothing 1e-5), codes started at
  encoder outputs of the first batch, and codes whose average count falls below 1e-3
  restarted at random encoder outputs.
- Decoder: conv 3x3 (DM -> 64), ReLU, conv 3x3 (64 -> 128), depth-to-space 2, ReLU,
  conv 3x3 (32 -> 4), depth-to-space 2: 28x28 Bernoulli logits.
Adam (lr 1e-3) on reconstruction + 0.25 commitment, batches of 128, dynamic
binarization.

Usage: python conv_vqvae.py DATA_DIR [epochs=1] [threads=2]
Prints train_images_per_s (training steps only), test_reconstruction_nats and the
code perplexity on the test set.
"""
import gzip
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def read_images(path):
    """The images of a gzipped IDX file as float32 tensors (n, 1, 28, 28) in [0, 1]."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    return torch.from_numpy(pixels.astype(np.float32) / 255.0)


class ConvVqVae(nn.Module):
    def __init__(self, dm=16, k=256, decay=0.99, epsilon=1e-5):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, dm, 1))
        self.up1 = nn.Conv2d(dm, 64, 3, padding=1)
        self.up2 = nn.Conv2d(64, 128, 3, padding=1)
        self.up3 = nn.Conv2d(32, 4, 3, padding=1)
        self.k, self.decay, self.epsilon = k, decay, epsilon
        self.register_buffer("codebook", torch.zeros(k, dm))
        self.register_buffer("ema_count", torch.ones(k))
        self.register_buffer("ema_sum", torch.zeros(k, dm))
        self.started = False

    def decode(self, z_q):
        h = F.relu(self.up1(z_q))
        h = F.relu(F.pixel_shuffle(self.up2(h), 2))
        return F.pixel_shuffle(self.up3(h), 2)

    @torch.no_grad()
    def update_codebook(self, flat, codes):
        if not self.started:
            self.codebook.copy_(flat[torch.randint(len(flat), (self.k,))])
            self.ema_sum.copy_(self.codebook)
            self.started = True
        one_hot = F.one_hot(codes, self.k).to(flat.dtype)
        self.ema_count.mul_(self.decay).add_(one_hot.sum(0), alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(one_hot.t() @ flat, alpha=1 - self.decay)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + self.epsilon) / (total + self.k * self.epsilon) * total
        self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(1))
        dead = self.ema_count < 1e-3
        if dead.any():
            fresh = flat[torch.randint(len(flat), (int(dead.sum()),))]
            self.codebook[dead] = fresh
            self.ema_sum[dead] = fresh * self.ema_count[dead].clamp_min(self.epsilon).unsqueeze(1)

    def forward(self, x):
        z_e = self.encoder(x)
        n, dm, h, w = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, dm)
        # ‖z − e‖² = ‖z‖² − 2 z·e + ‖e‖² for every vector and code.
        distances = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t()
                     + self.codebook.pow(2).sum(1))
        codes = distances.argmin(1)
        z_q = self.codebook[codes].view(n, h, w, dm).permute(0, 3, 1, 2)
        commitment = (z_e - z_q.detach()).pow(2).sum() / n
        logits = self.decode(z_e + (z_q - z_e).detach())
        if self.training:
            self.update_codebook(flat.detach(), codes)
        return logits, commitment, codes


def main():
    data = sys.argv[1]
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    train = read_images(f"{data}/train-images-idx3-ubyte.gz")
    test = read_images(f"{data}/t10k-images-idx3-ubyte.gz")
    model = ConvVqVae()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seen, busy = 0, 0.0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train))
        for start in range(0, len(train), 128):
            t0 = time.perf_counter()
            x = torch.bernoulli(train[order[start:start + 128]])
            logits, commitment, _ = model(x)
            reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
            loss = reconstruction + 0.25 * commitment
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            busy += time.perf_counter() - t0
            seen += len(x)
    model.eval()
    generator = torch.Generator().manual_seed(1)
    total, usage = 0.0, torch.zeros(model.k)
    with torch.no_grad():
        for start in range(0, len(test), 500):
            x = torch.bernoulli(test[start:start + 500], generator=generator)
            logits, _, codes = model(x)
            total += F.binary_cross_entropy_with_logits(logits, x, reduction="sum").item()
            usage += torch.bincount(codes, minlength=model.k).float()
    p = usage[usage > 0] / usage.sum()
    perplexity = torch.exp(-(p * p.log()).sum()).item()
    print(f"torch={torch.__version__} threads={threads} epochs={epochs} "
          f"train_images_per_s={seen / busy:.1f} test_reconstruction_nats={total / len(test):.2f} "
          f"perplexity={perplexity:.1f}")


if __name__ == "__main__":
    main()
