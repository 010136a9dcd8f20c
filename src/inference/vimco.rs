//! VIMCO: the multi-sample bound with leave-one-out baselines for discrete latents
//! (Mnih & Rezende 2016).

use dfdx::prelude::*;

use crate::error::{Error, Result};
use crate::inference::iwae::scored_log_weights;
use crate::inference::model::LatentVariableModel;
use crate::inference::score::{summed_over_draws, weights_like};
use crate::kernels::ops::{cst, to_f64_vec, Events, PerExample, Real};

/// The `k`-sample importance-weighted bound `L̂ = log (1/k) Σ_j w_j` trained with VIMCO's
/// gradient (Mnih & Rezende 2016, eq. 10):
///
/// `∇L̂ ≈ Σ_j (L̂ − L̂_{−j}) ∇_φ log q(z_j | x) + Σ_j w̃_j ∇ log w_j`,
///
/// with the leave-one-out baseline of each sample (their eq. 9)
/// `L̂_{−j} = log (1/k) (Σ_{i≠j} w_i + exp((1/(k−1)) Σ_{i≠j} log w_i))`: `w_j` replaced by
/// the geometric mean of the others. The baseline of sample `j` does not depend on
/// `z_j`, so the gradient stays unbiased, and the signal `L̂ − L̂_{−j}` is sample `j`'s
/// own contribution to the bound. For a reparameterized guide this is the IWAE bound.
///
/// The reported value (the objective) is `L̂` per example, in nats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "VimcoSettings", into = "VimcoSettings")]
pub struct Vimco {
    k: usize,
}

#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
struct VimcoSettings {
    k: usize,
}

impl TryFrom<VimcoSettings> for Vimco {
    type Error = Error;
    fn try_from(s: VimcoSettings) -> Result<Self> {
        Vimco::new(s.k)
    }
}

impl From<Vimco> for VimcoSettings {
    fn from(v: Vimco) -> Self {
        VimcoSettings { k: v.k }
    }
}

impl Vimco {
    /// VIMCO with `k` samples per example.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if `k < 2` (a leave-one-out baseline needs another sample).
    pub fn new(k: usize) -> Result<Self> {
        if k < 2 {
            return Err(Error::invalid(
                "k",
                format!("VIMCO's leave-one-out baselines need k ≥ 2 samples, got {k}"),
            ));
        }
        Ok(Self { k })
    }

    /// The number of samples per example.
    pub fn k(&self) -> usize {
        self.k
    }

    /// `L̂` per example, shape `(batch,)`, nats, carrying VIMCO's gradient.
    ///
    /// # Errors
    /// The model's errors.
    pub fn estimate<X: Dim, Z: Dim, E, D, T, M>(
        &self,
        model: &M,
        x: Events<X, E, D, T>,
    ) -> Result<PerExample<E, D, T>>
    where
        E: Real,
        D: Device<E> + 'static,
        T: Tape<E, D> + 'static,
        M: LatentVariableModel<E, D, T, X = X, Z = Z>,
    {
        let k = self.k;
        let (lw, score) = scored_log_weights(model, x, k)?;
        let batch = lw.shape().1;
        // The weights reach the host only when a score needs their signals.
        let log_w = score.as_ref().map(|_| to_f64_vec(&lw));
        let bound = lw.logsumexp::<(usize,), Axis<0>>() - cst::<E>((k as f64).ln());
        let (Some(score), Some(log_w)) = (score, log_w) else {
            return Ok(bound);
        };
        let signal = weights_like(&bound, &leave_one_out_signals(&log_w, k, batch));
        Ok(bound + summed_over_draws(score, signal))
    }
}

/// `L̂ − L̂_{−j}` for every sample `j` of every example, from the log weights
/// `log_w[j·batch + b]` (shape `(k, batch)`, row-major), in the same layout, in `f64`
/// with the maximum subtracted. `k ≥ 2`.
pub fn leave_one_out_signals(log_w: &[f64], k: usize, batch: usize) -> Vec<f64> {
    let mut out = vec![0.0; k * batch];
    let kf = k as f64;
    for b in 0..batch {
        let col: Vec<f64> = (0..k).map(|j| log_w[j * batch + b]).collect();
        let m = col.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !m.is_finite() {
            continue;
        }
        let sum: f64 = col.iter().map(|l| (l - m).exp()).sum();
        let total: f64 = col.iter().sum();
        let bound = m + (sum / kf).ln();
        for j in 0..k {
            let geometric = (total - col[j]) / (kf - 1.0);
            // Σ_{i≠j} summed afresh: subtracting w_j from the total loses the others
            // when w_j dominates.
            let others: f64 = col
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != j)
                .map(|(_, l)| (l - m).exp())
                .sum::<f64>()
                + (geometric - m).exp();
            out[j * batch + b] = bound - (m + (others / kf).ln());
        }
    }
    out
}
