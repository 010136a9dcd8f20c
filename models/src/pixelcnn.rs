//! A gated PixelCNN over a grid of discrete codes: the autoregressive prior of the
//! VQ-VAE (van den Oord et al. 2017, §3.2 and §4.1).

use dfdx::prelude::*;
use latent::distributions::{Categorical, Distribution};
use latent::kernels::{gated_activation, gather_rows};
use latent::nn::Linear;
use latent::ops::to_f64_vec;
use latent::{Error, Real, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// A 3×3 kernel's taps `(Δrow, Δcol)` that a layer may read. The vertical stack reads
/// only rows above (its first layer) or rows above and its own row of the previous
/// vertical layer, which itself saw only rows above; the horizontal stack reads only
/// the left of its row (first layer) or the left and itself. No tap ever reads the code
/// being predicted or one after it in raster order, so there is no blind spot and no
/// leak (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
/// Decoders", §2.1–2.2, Figure 1).
const VERTICAL_FIRST: &[(isize, isize)] = &[(-1, -1), (-1, 0), (-1, 1)];
const VERTICAL: &[(isize, isize)] = &[(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 0), (0, 1)];
const HORIZONTAL_FIRST: &[(isize, isize)] = &[(0, -1)];
const HORIZONTAL: &[(isize, isize)] = &[(0, -1), (0, 0)];

/// One gated layer of both stacks (van den Oord et al. 2016, eq. 2 and Figure 2):
/// `v' = tanh(a_v) ⊙ σ(b_v)` with `[a_v, b_v] = V ∗ v`; `[a_h, b_h] = H ∗ h + U [a_v, b_v]`,
/// `h' = h + O (tanh(a_h) ⊙ σ(b_h))` (no residual in the first layer, whose input at a
/// position is the code there).
#[derive(Debug, Clone)]
pub struct GatedLayer<E: Dtype, D: Storage<E>> {
    /// The vertical stack's masked convolution, `taps · C → 2C`.
    pub vertical: Linear<usize, usize, E, D>,
    /// The horizontal stack's masked convolution, `taps · C → 2C`.
    pub horizontal: Linear<usize, usize, E, D>,
    /// The 1×1 link from the vertical stack to the horizontal, `2C → 2C`.
    pub link: Linear<usize, usize, E, D>,
    /// The horizontal stack's 1×1 output map, `C → C`.
    pub out: Linear<usize, usize, E, D>,
}

impl<E: Real, D: Device<E>> TensorCollection<E, D> for GatedLayer<E, D> {
    type To<E2: Dtype, D2: Device<E2>> = GatedLayer<E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("vertical", |s| &s.vertical, |s| &mut s.vertical),
                Self::module("horizontal", |s| &s.horizontal, |s| &mut s.horizontal),
                Self::module("link", |s| &s.link, |s| &mut s.link),
                Self::module("out", |s| &s.out, |s| &mut s.out),
            ),
            |(vertical, horizontal, link, out)| GatedLayer {
                vertical,
                horizontal,
                link,
                out,
            },
        )
    }
}

/// A gated PixelCNN with `L` layers over an `H × W` grid of codes from a codebook of
/// `K` (run-time) codes: `p(c) = Π_{i} p(c_i | c_{<i})` in raster order, each factor a
/// categorical on the logits of a 1×1 map of the last horizontal layer (van den Oord et
/// al. 2016; the prior over the VQ-VAE's codes of van den Oord et al. 2017, §3.2).
///
/// Codes are `n · H · W` indices, row-major per example (as
/// [`crate::VqVae::encode`] gives them). [`GatedPixelCnn::log_prob`] is the exact
/// `log p(c)` in nats per example; [`GatedPixelCnn::sample`] draws position by
/// position; [`GatedPixelCnn::fit`] trains it by maximum likelihood with Adam.
#[derive(Debug, Clone)]
pub struct GatedPixelCnn<const L: usize, const H: usize, const W: usize, E: Dtype, D: Storage<E>> {
    /// The code embedding, `(K, C)`.
    pub embedding: Tensor<(usize, usize), E, D>,
    /// The gated layers.
    pub layers: Vec<GatedLayer<E, D>>,
    /// `C → K` logits.
    pub logits: Linear<usize, usize, E, D>,
}

impl<const L: usize, const H: usize, const W: usize, E: Real, D: Device<E>> TensorCollection<E, D>
    for GatedPixelCnn<L, H, W, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = GatedPixelCnn<L, H, W, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        let names: Vec<String> = (0..L).map(|l| format!("layer{l}")).collect();
        visitor.visit_fields(
            (
                Self::tensor(
                    "embedding",
                    |s| &s.embedding,
                    |s| &mut s.embedding,
                    latent::nn::tensor_options(Default::default(), |t| {
                        let n = E::standard_normal(&t.device().clone(), t.shape());
                        t.copy_from(&n.as_vec());
                        Ok(())
                    }),
                ),
                names
                    .iter()
                    .enumerate()
                    .map(|(l, n)| Self::module(n, move |s| &s.layers[l], move |s| &mut s.layers[l]))
                    .collect::<Vec<_>>(),
                Self::module("logits", |s| &s.logits, |s| &mut s.logits),
            ),
            |(embedding, layers, logits)| GatedPixelCnn {
                embedding,
                layers,
                logits,
            },
        )
    }
}

/// For each position of each of `batch` grids and each tap, the row of the position the
/// tap reads, or `batch·H·W` (a zero row) outside the grid.
fn tap_index(batch: usize, (h, w): (usize, usize), taps: &[(isize, isize)]) -> Vec<usize> {
    let pad = batch * h * w;
    let mut idx = Vec::with_capacity(pad * taps.len());
    for b in 0..batch {
        for i in 0..h as isize {
            for j in 0..w as isize {
                for &(di, dj) in taps {
                    let (r, c) = (i + di, j + dj);
                    idx.push(if r < 0 || c < 0 || r >= h as isize || c >= w as isize {
                        pad
                    } else {
                        b * h * w + r as usize * w + c as usize
                    });
                }
            }
        }
    }
    idx
}

impl<const L: usize, const H: usize, const W: usize, E: Real, D: Device<E>>
    GatedPixelCnn<L, H, W, E, D>
{
    /// A network over `codes` codes with `channels` features per stack, initialized as
    /// PyTorch's `nn.Linear` (embedding `N(0, 1)`, as `nn.Embedding`).
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for `L = 0` or zero sizes; allocation errors.
    pub fn new(device: &D, codes: usize, channels: usize) -> Result<Self> {
        if L == 0 || codes == 0 || channels == 0 || H * W == 0 {
            return Err(Error::invalid(
                "PixelCNN sizes",
                "layers, codes, channels and the grid must be at least 1",
            ));
        }
        let c = channels;
        let layers = (0..L)
            .map(|l| {
                let (v, h) = if l == 0 {
                    (VERTICAL_FIRST.len(), HORIZONTAL_FIRST.len())
                } else {
                    (VERTICAL.len(), HORIZONTAL.len())
                };
                Ok(GatedLayer {
                    vertical: Linear::new(device, v * c, 2 * c)?,
                    horizontal: Linear::new(device, h * c, 2 * c)?,
                    link: Linear::new(device, 2 * c, 2 * c)?,
                    out: Linear::new(device, c, c)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embedding: E::standard_normal(device, &(codes, c)),
            layers,
            logits: Linear::new(device, c, codes)?,
        })
    }

    /// The codebook size `K`.
    pub fn codes(&self) -> usize {
        self.embedding.shape().0
    }

    /// Checks `codes` (a positive multiple of `H·W` indices below `K`) and returns the
    /// number of grids.
    fn grids(&self, codes: &[usize]) -> Result<usize> {
        let g = H * W;
        if codes.is_empty() || !codes.len().is_multiple_of(g) {
            return Err(Error::not_a_multiple(
                "GatedPixelCnn (codes)",
                g,
                codes.len(),
            ));
        }
        if let Some(c) = codes.iter().find(|&&c| c >= self.codes()) {
            return Err(Error::invalid(
                "code",
                format!("{c} is not below {}", self.codes()),
            ));
        }
        Ok(codes.len() / g)
    }

    /// The logits of `p(c_i | c_{<i})` at every position, `(n·H·W, K)`, from the
    /// embedding carrying `tape` (the computation's tape starts at the parameters).
    fn forward<T: Tape<E, D>>(
        &self,
        codes: &[usize],
        start: impl FnOnce(Tensor<(usize, usize), E, D>) -> Tensor<(usize, usize), E, D, T>,
    ) -> Result<Tensor<(usize, usize), E, D, T>> {
        let batch = codes.len() / (H * W);
        let rows = codes.len();
        let c = self.embedding.shape().1;
        let x = gather_rows(start(self.embedding.clone()), codes).map_err(Error::device)?;
        let conv = |t: Tensor<(usize, usize), E, D, T>,
                    taps: &[(isize, isize)],
                    lin: &Linear<usize, usize, E, D>| {
            let idx = tap_index(batch, (H, W), taps);
            let cols = gather_rows(t, &idx)?.try_reshape_like(&(rows, taps.len() * c))?;
            lin.try_forward(cols)
        };
        let (mut v, mut h) = (x.with_empty_tape(), x);
        for (l, layer) in self.layers.iter().enumerate() {
            let (vt, ht) = if l == 0 {
                (VERTICAL_FIRST, HORIZONTAL_FIRST)
            } else {
                (VERTICAL, HORIZONTAL)
            };
            let v_pre = conv(v, vt, &layer.vertical).map_err(Error::device)?;
            let linked = layer
                .link
                .try_forward(v_pre.with_empty_tape())
                .map_err(Error::device)?;
            let h_pre =
                conv(h.with_empty_tape(), ht, &layer.horizontal).map_err(Error::device)? + linked;
            let h_new = layer
                .out
                .try_forward(gated_activation(h_pre)?)
                .map_err(Error::device)?;
            v = gated_activation(v_pre)?;
            h = if l == 0 {
                // The first layer's input at a position is the code there: no residual.
                let (hn, t) = h_new.split_tape();
                let (_, t0) = h.split_tape();
                hn.put_tape(t.merge(t0))
            } else {
                h + h_new
            };
        }
        // The vertical stack's last output is not read: its tape joins the result.
        let (h, th) = h.split_tape();
        let (_, tv) = v.split_tape();
        self.logits
            .try_forward(h.put_tape(th.merge(tv)).relu())
            .map_err(Error::device)
    }

    /// `log p(c)` per grid, nats, shape `(n,)`, carrying `tape`.
    fn log_prob_taped<T: Tape<E, D>>(
        &self,
        codes: &[usize],
        start: impl FnOnce(Tensor<(usize, usize), E, D>) -> Tensor<(usize, usize), E, D, T>,
    ) -> Result<Tensor<(usize,), E, D, T>> {
        let n = self.grids(codes)?;
        let k = self.codes();
        let logits = self.forward(codes, start)?;
        let mut one_hot = vec![E::zero(); codes.len() * k];
        for (r, &c) in codes.iter().enumerate() {
            one_hot[r * k + c] = E::ONE;
        }
        let x = logits
            .device()
            .tensor_from_vec(one_hot, (codes.len(), k))
            .put_tape(T::default());
        let per_position = Categorical::new(logits).log_prob(x)?;
        Ok(per_position
            .reshape_like(&(n, H * W))
            .sum::<(usize,), Axis<1>>())
    }

    /// `log p(c_i | c_{<i})` at every position of every grid in `codes`, nats,
    /// `n · H · W` values in the order of `codes`: the per-position terms of
    /// [`GatedPixelCnn::log_prob`].
    ///
    /// # Errors
    /// [`Error::NotAMultiple`] / [`Error::InvalidSetting`] for malformed codes.
    pub fn conditionals(&self, codes: &[usize]) -> Result<Vec<f64>> {
        self.grids(codes)?;
        let k = self.codes();
        let mut out = Vec::with_capacity(codes.len());
        for chunk in codes.chunks(1000 * H * W) {
            let logits = to_f64_vec(&self.forward(chunk, |e| e)?);
            for (r, &c) in chunk.iter().enumerate() {
                let row = &logits[r * k..(r + 1) * k];
                let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lse = m + row.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
                out.push(row[c] - lse);
            }
        }
        Ok(out)
    }

    /// `log p(c)` of each grid in `codes` (`n · H · W` indices), nats per example.
    ///
    /// # Errors
    /// [`Error::NotAMultiple`] / [`Error::InvalidSetting`] for malformed codes.
    pub fn log_prob(&self, codes: &[usize]) -> Result<Vec<f64>> {
        let mut out = Vec::new();
        for chunk in codes.chunks(1000 * H * W) {
            out.extend(to_f64_vec(&self.log_prob_taped(chunk, |e| e)?));
        }
        Ok(out)
    }

    /// Trains by maximum likelihood on the grids in `codes`: `epochs` passes in shuffled
    /// batches of `batch` grids (from `seed`), Adam with learning rate `lr`. Returns the
    /// mean negative log-likelihood of each epoch's batches, nats per grid.
    ///
    /// # Errors
    /// Malformed codes; [`Error::InvalidSetting`] for zero `epochs` or `batch`, or a
    /// non-finite loss (with the epoch).
    pub fn fit(
        &mut self,
        codes: &[usize],
        epochs: usize,
        batch: usize,
        lr: f64,
        seed: u64,
    ) -> Result<Vec<f64>> {
        let n = self.grids(codes)?;
        if epochs == 0 || batch == 0 {
            return Err(Error::invalid("epochs / batch", "must be at least 1"));
        }
        let g = H * W;
        let mut opt = dfdx::optim::Adam::new(
            self,
            dfdx::optim::AdamConfig {
                lr,
                ..Default::default()
            },
        );
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut grads = self.try_alloc_grads().map_err(Error::device)?;
        let mut history = Vec::with_capacity(epochs);
        for epoch in 1..=epochs {
            order.shuffle(&mut rng);
            let (mut total, mut seen) = (0.0, 0usize);
            for part in order.chunks(batch) {
                let chunk: Vec<usize> = part
                    .iter()
                    .flat_map(|&i| codes[i * g..(i + 1) * g].iter().copied())
                    .collect();
                let lp = self.log_prob_taped(&chunk, |e| e.traced(grads))?;
                let loss = -lp.mean::<(), Axis<0>>();
                let value = to_f64_vec(&loss)[0];
                if !value.is_finite() {
                    return Err(Error::NonFinite {
                        what: "PixelCNN loss".into(),
                        epoch,
                        step: 0,
                        value,
                    });
                }
                total += value * part.len() as f64;
                seen += part.len();
                grads = loss.backward();
                opt.update(self, &grads).map_err(Error::device)?;
                self.zero_grads(&mut grads);
            }
            history.push(total / seen.max(1) as f64);
        }
        Ok(history)
    }

    /// Draws `n` grids, position by position in raster order (`H·W` passes of the
    /// network), with the device's generator.
    ///
    /// # Errors
    /// The device's errors.
    pub fn sample(&self, n: usize, device: &D) -> Result<Vec<usize>> {
        let (g, k) = (H * W, self.codes());
        let mut codes = vec![0usize; n * g];
        for pos in 0..g {
            let logits = to_f64_vec(&self.forward(&codes, |e| e)?);
            let u = to_f64_vec(&E::uniform01(device, &(n,)));
            for b in 0..n {
                let row = &logits[(b * g + pos) * k..(b * g + pos + 1) * k];
                codes[b * g + pos] = sample_row(row, u[b]);
            }
        }
        Ok(codes)
    }
}

/// The class whose cumulative softmax probability first exceeds `u ∈ [0, 1)`.
fn sample_row(logits: &[f64], u: f64) -> usize {
    let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let p: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
    let total: f64 = p.iter().sum();
    let mut acc = 0.0;
    for (k, pk) in p.iter().enumerate() {
        acc += pk / total;
        if u < acc {
            return k;
        }
    }
    p.len() - 1
}
