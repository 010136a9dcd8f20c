//! Vector quantization with a straight-through gradient, the EMA codebook update and
//! dead-code restarts (van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete
//! Representation Learning").

use dfdx::prelude::*;
use latent::kernels::linear;
use latent::ops::{cst, detach, host_values, to_f64_vec};
use latent::{Error, Events, PerExample, Real, Result};
use rand::Rng;

/// A codebook of `K` vectors `e_k ∈ R^DM` and the nearest-neighbour quantizer
/// `z_q(z_e) = e_{k*}`, `k* = argmin_k ‖z_e − e_k‖²` (van den Oord et al. 2017, eq. 1–2).
#[derive(Debug, Clone)]
pub struct VectorQuantizer<K: Dim, DM: Dim, E: Dtype, D: Storage<E>> {
    /// The codebook `e`, shape `(K, DM)`, initialized `U(−1/K, 1/K)` as in the paper's
    /// reference implementation (Sonnet).
    pub codebook: Tensor<(K, DM), E, D>,
}

impl<K: Dim + Default, DM: Dim + Default, E: Real, D: Device<E>> TensorCollection<E, D>
    for VectorQuantizer<K, DM, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = VectorQuantizer<K, DM, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            Self::tensor(
                "codebook",
                |s| &s.codebook,
                |s| &mut s.codebook,
                latent::nn::tensor_options(Default::default(), |t: &mut Tensor<(K, DM), E, D>| {
                    t.try_fill_with_distr(init::<E>(t.shape().0.size()))
                }),
            ),
            |codebook| VectorQuantizer { codebook },
        )
    }
}

/// What [`VectorQuantizer::quantize`] returns for `n` encoder vectors.
pub struct Quantized<DM: Dim, E: Dtype, D: Device<E>, T> {
    /// The straight-through output `z_e + sg[z_q − z_e]`, shape `(n, DM)`: its value is
    /// `z_q`, its gradient goes to `z_e` unchanged (eq. 3 and the text after it).
    pub z_q: Events<DM, E, D, T>,
    /// `‖sg[z_e] − e_{k*}‖²` per vector, shape `(n,)`: the codebook term, whose gradient
    /// reaches the codebook only.
    pub codebook_loss: PerExample<E, D, T>,
    /// `‖z_e − sg[e_{k*}]‖²` per vector, shape `(n,)`: the commitment term (multiply by
    /// `commitment_cost = β`), whose gradient reaches the encoder only.
    pub commitment_loss: PerExample<E, D, T>,
    /// `k*` for each vector.
    pub indices: Vec<usize>,
    /// `z_e` on the host (`n · DM` values), for the EMA update and restarts.
    pub z_e: Vec<f64>,
}

/// `U(−1/K, 1/K)`, the initialization of the paper's reference code.
fn init<E: Real>(k: usize) -> rand_distr::Uniform<E> {
    let b = cst::<E>(1.0 / k.max(1) as f64);
    rand_distr::Uniform::new(-b, b)
}

impl<K: Dim, DM: Dim, E: Real, D: Device<E>> VectorQuantizer<K, DM, E, D> {
    /// A quantizer with a freshly initialized codebook.
    pub fn new(device: &D, codes: K, dim: DM) -> Result<Self> {
        let codebook = device
            .try_sample_like(&(codes, dim), init::<E>(codes.size()))
            .map_err(Error::device)?;
        Ok(Self { codebook })
    }

    /// The index of the nearest code of each row of `z_e` (shape `(n, DM)`): the `k`
    /// maximizing `z·e_k − ½‖e_k‖²`, which minimizes `‖z − e_k‖² = ‖z‖² − 2 z·e_k +
    /// ‖e_k‖²`, computed as one affine map ([`latent::kernels::linear`] with the
    /// codebook as weight and `−½‖e_k‖²` as bias). Ties go to the lowest index.
    ///
    /// # Errors
    /// The device's allocation errors, as [`Error::device`].
    pub fn nearest<T: Tape<E, D>>(&self, z_e: &Events<DM, E, D, T>) -> Result<Vec<usize>> {
        let (k, dm) = *self.codebook.shape();
        if z_e.shape().1.size() != dm.size() {
            return Err(Error::shape(
                "VectorQuantizer::nearest (code dimension)",
                &[dm.size()],
                &[z_e.shape().1.size()],
            ));
        }
        let z = z_e.retaped::<NoneTape>();
        let half_norms: Vec<E> = host_values(&self.codebook)
            .chunks(dm.size().max(1))
            .map(|e| {
                e.iter()
                    .fold(E::zero(), |acc, &v| acc - v * v * cst::<E>(0.5))
            })
            .collect();
        let dev = self.codebook.device().clone();
        let bias = dev.tensor_from_vec(half_norms, (k,));
        let score = linear(z, &self.codebook, &bias).map_err(Error::device)?;
        Ok(host_values(&score)
            .chunks(k.size().max(1))
            .map(|row| {
                let mut best = (0, E::neg_infinity());
                for (k, &s) in row.iter().enumerate() {
                    if s > best.1 {
                        best = (k, s);
                    }
                }
                best.0
            })
            .collect())
    }

    /// The codes `indices` as a `(n, DM)` tensor without gradient.
    pub fn lookup(&self, indices: &[usize]) -> Events<DM, E, D> {
        let dev = self.codebook.device().clone();
        let idx = dev.tensor_from_vec(indices.to_vec(), (indices.len(),));
        self.codebook.clone().gather(idx)
    }

    /// Quantizes `z_e` (shape `(n, DM)`, carrying the encoder's tape).
    ///
    /// # Errors
    /// [`Error::NonFinite`] if `z_e` contains NaN or infinity.
    pub fn quantize<T: Tape<E, D>>(
        &self,
        z_e: Events<DM, E, D, T>,
    ) -> Result<Quantized<DM, E, D, T>> {
        let host = to_f64_vec(&z_e);
        if let Some(v) = host.iter().find(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: "encoder output z_e".into(),
                epoch: 0,
                step: 0,
                value: *v,
            });
        }
        let indices = self.nearest(&z_e)?;
        let dev = self.codebook.device().clone();
        let idx = dev.tensor_from_vec(indices.clone(), (indices.len(),));
        // e_{k*} with a fresh tape: gradients reach the codebook rows by id.
        let e: Events<DM, E, D, T> = self.codebook.retaped::<T>().gather(idx);
        let e_value = detach(&e);
        let z_value = detach(&z_e);
        let codebook_loss = (e - z_value.clone()).square().sum::<(usize,), Axis<1>>();
        let commitment_loss = (z_e.with_empty_tape() - e_value.clone())
            .square()
            .sum::<(usize,), Axis<1>>();
        let z_q = z_e + (e_value - z_value);
        Ok(Quantized {
            z_q,
            codebook_loss,
            commitment_loss,
            indices,
            z_e: host,
        })
    }
}

/// The codebook's exponential-moving-average update, an alternative to the codebook
/// loss (van den Oord et al. 2017, Appendix A.1; Laplace smoothing as in Sonnet's
/// `VectorQuantizerEMA`):
///
/// - `N_k ← γ N_k + (1 − γ) n_k`, with `n_k` the number of vectors assigned to code `k`;
/// - `m_k ← γ m_k + (1 − γ) Σ_{j: k*(j) = k} z_e,j`;
/// - `Ñ_k = (N_k + ε) / (Σ_i N_i + K ε) · Σ_i N_i` (Laplace smoothing);
/// - `e_k ← m_k / Ñ_k` for every code that has been assigned at least once (`N_k > 0`);
///   codes never used keep their value (dead-code restarts take care of them).
///
/// `N` and `m` start at zero.
#[derive(Debug, Clone, PartialEq)]
pub struct CodebookEma {
    /// `γ ∈ [0, 1)`, 0.99 in the paper.
    pub decay: f64,
    /// `ε > 0` of the Laplace smoothing (1e-5 in Sonnet).
    pub epsilon: f64,
    /// `N_k`, the smoothed assignment counts.
    pub counts: Vec<f64>,
    /// `m_k`, the smoothed sums of assigned vectors, `K · DM` values.
    pub sums: Vec<f64>,
}

impl CodebookEma {
    /// An EMA with zero statistics for `k` codes of dimension `dm`.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] unless `0 ≤ decay < 1` and `epsilon > 0` (both finite).
    pub fn new(k: usize, dm: usize, decay: f64, epsilon: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&decay) {
            return Err(Error::invalid(
                "decay",
                format!("must be in [0, 1), got {decay}"),
            ));
        }
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(Error::invalid(
                "epsilon",
                format!("must be positive and finite, got {epsilon}"),
            ));
        }
        Ok(Self {
            decay,
            epsilon,
            counts: vec![0.0; k],
            sums: vec![0.0; k * dm],
        })
    }

    /// One update from the vectors `z_e` (`n · dm` values) assigned to `indices`;
    /// returns the new codebook (`k · dm` values) given the current one.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the lengths of `z_e`, `indices` and `codebook`
    /// disagree with the EMA's sizes; [`Error::InvalidSetting`] for an index `≥ k`.
    pub fn update(&mut self, codebook: &[f64], z_e: &[f64], indices: &[usize]) -> Result<Vec<f64>> {
        let k = self.counts.len();
        let dm = self.sums.len() / k;
        let mismatch = |what: &str, expected: usize, found: usize| {
            Error::shape(
                format!("CodebookEma::update ({what})"),
                &[expected],
                &[found],
            )
        };
        if codebook.len() != k * dm {
            return Err(mismatch("codebook", k * dm, codebook.len()));
        }
        if z_e.len() != indices.len() * dm {
            return Err(mismatch("z_e", indices.len() * dm, z_e.len()));
        }
        if let Some(&i) = indices.iter().find(|&&i| i >= k) {
            return Err(Error::invalid(
                "index",
                format!("code {i} is not below {k}"),
            ));
        }
        let g = self.decay;
        let mut n = vec![0.0; k];
        let mut s = vec![0.0; k * dm];
        for (row, &i) in z_e.chunks(dm).zip(indices) {
            n[i] += 1.0;
            for (acc, v) in s[i * dm..(i + 1) * dm].iter_mut().zip(row) {
                *acc += v;
            }
        }
        for (c, ni) in self.counts.iter_mut().zip(&n) {
            *c = g * *c + (1.0 - g) * ni;
        }
        for (m, si) in self.sums.iter_mut().zip(&s) {
            *m = g * *m + (1.0 - g) * si;
        }
        let total: f64 = self.counts.iter().sum();
        let mut out = codebook.to_vec();
        for i in 0..k {
            if self.counts[i] > 0.0 {
                let smoothed =
                    (self.counts[i] + self.epsilon) / (total + k as f64 * self.epsilon) * total;
                for d in 0..dm {
                    out[i * dm + d] = self.sums[i * dm + d] / smoothed;
                }
            }
        }
        Ok(out)
    }

    /// Restarts code `i` at vector `v`: its statistics become those of one assignment.
    pub fn reset(&mut self, i: usize, v: &[f64]) {
        let dm = v.len();
        self.counts[i] = 1.0;
        self.sums[i * dm..(i + 1) * dm].copy_from_slice(v);
    }
}

/// Dead-code restarts (Williams et al. 2020, §3.3; Dhariwal et al. 2020, "Jukebox",
/// §3.2): a code whose moving-average usage falls below `threshold` assignments per
/// batch is moved onto a randomly chosen encoder output of the current batch, so that
/// the whole codebook stays in use.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadCodeRestart {
    /// The usage below which a code is dead (assignments per batch, moving average).
    pub threshold: f64,
    /// The decay of the usage average.
    pub decay: f64,
    /// The moving-average usage of each code, assignments per batch. Starts at
    /// `threshold` so that no code is restarted before it has had a chance.
    pub usage: Vec<f64>,
}

impl DeadCodeRestart {
    /// Tracks `k` codes.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] unless `threshold ≥ 0` and `0 ≤ decay < 1`.
    pub fn new(k: usize, threshold: f64, decay: f64) -> Result<Self> {
        if !(threshold.is_finite() && threshold >= 0.0) {
            return Err(Error::invalid(
                "threshold",
                format!("must be finite and non-negative, got {threshold}"),
            ));
        }
        if !(0.0..1.0).contains(&decay) {
            return Err(Error::invalid(
                "decay",
                format!("must be in [0, 1), got {decay}"),
            ));
        }
        Ok(Self {
            threshold,
            decay,
            usage: vec![threshold; k],
        })
    }

    /// Updates the usage with one batch's `indices` and returns the dead codes, each
    /// paired with the row of `z_e` (`n · dm` values) it restarts at.
    pub fn step(
        &mut self,
        z_e: &[f64],
        indices: &[usize],
        rng: &mut impl Rng,
    ) -> Vec<(usize, Vec<f64>)> {
        let k = self.usage.len();
        let mut n = vec![0.0; k];
        for &i in indices {
            n[i] += 1.0;
        }
        let dm = if indices.is_empty() {
            0
        } else {
            z_e.len() / indices.len()
        };
        let mut restarts = Vec::new();
        for (i, (u, ni)) in self.usage.iter_mut().zip(&n).enumerate() {
            *u = self.decay * *u + (1.0 - self.decay) * ni;
            if *u < self.threshold && dm > 0 {
                let j = rng.gen_range(0..indices.len());
                restarts.push((i, z_e[j * dm..(j + 1) * dm].to_vec()));
                *u = self.threshold;
            }
        }
        restarts
    }
}

/// Codebook usage over a set of assignments: the perplexity
/// `exp(−Σ_k p_k ln p_k)` of the code frequencies `p_k` (1 if one code is used, `K` if
/// all are used equally) and the fraction of codes used at least once.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CodeUsage {
    /// `exp(H(p))`, between 1 and `K`.
    pub perplexity: f64,
    /// Codes used at least once, divided by `K`.
    pub used_fraction: f64,
}

impl CodeUsage {
    /// The usage of `k` codes by `indices`.
    ///
    /// # Panics
    /// If an index is `≥ k`.
    pub fn of(indices: &[usize], k: usize) -> Self {
        let mut n = vec![0usize; k];
        for &i in indices {
            n[i] += 1;
        }
        let total = indices.len().max(1) as f64;
        let h: f64 = n
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / total;
                -p * p.ln()
            })
            .sum();
        Self {
            perplexity: h.exp(),
            used_fraction: n.iter().filter(|&&c| c > 0).count() as f64 / k as f64,
        }
    }
}
