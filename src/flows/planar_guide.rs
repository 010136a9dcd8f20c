//! An amortized guide of a diagonal Normal and `K` planar steps.

use dfdx::prelude::*;

use super::{Planar, TransformedDistribution};
use crate::distributions::Normal;
use crate::error::{Error, Result};
use crate::inference::guide::{AmortizedGuide, DiagonalNormalGuide};
use crate::kernels::ops::{Events, Real};
use crate::nn::Linear;

/// `q(z|x)`: `z₀ ~ N(μ(x), diag σ²(x))` through `K` planar steps whose parameters the
/// encoder outputs per example (Rezende & Mohamed 2015, §4.2 and §6.2: "the parameters
/// of the flow are output by the inference network"):
///
/// `h = encoder(x)`, `(μ, log σ)` from the heads of a [`DiagonalNormalGuide`], and for
/// step `k`: `u_k = U_k h + c_k`, `w_k = W_k h + d_k` (shape `(batch, Z)`),
/// `b_k = B_k h + e_k` (shape `(batch,)`). The posterior is a
/// [`TransformedDistribution`] of the Normal and the `Vec` of [`Planar`] steps: its KL
/// from the prior is estimated by Monte Carlo, and `log_prob` at an arbitrary point
/// is unavailable (planar steps have no inverse).
///
/// `K` (the number of steps) is fixed at compile time, like dfdx's `Repeated`; the
/// sizes `H`, `Z` are dfdx `Dim`s (`Const` or `usize`).
#[derive(Debug, Clone)]
pub struct PlanarGuide<Enc, H: Dim, Z: Dim, const K: usize, E: Dtype, D: Storage<E>> {
    /// The encoder and the base Normal's heads.
    pub base: DiagonalNormalGuide<Enc, H, Z, E, D>,
    /// The heads of `u_k`, `H → Z`.
    pub u: Vec<Linear<H, Z, E, D>>,
    /// The heads of `w_k`, `H → Z`.
    pub w: Vec<Linear<H, Z, E, D>>,
    /// The heads of `b_k`, `H → 1`.
    pub b: Vec<Linear<H, usize, E, D>>,
}

impl<Enc, H: Dim, Z: Dim, const K: usize, E: Real, D: Device<E>> PlanarGuide<Enc, H, Z, K, E, D> {
    /// A guide around `encoder` (with `hidden` output features) for `latent`
    /// dimensions and `K` steps; heads initialized as PyTorch's `nn.Linear`.
    ///
    /// # Errors
    /// The device's allocation errors.
    pub fn new(encoder: Enc, hidden: H, latent: Z, device: &D) -> Result<Self> {
        let heads = |out: Z| {
            (0..K)
                .map(|_| Linear::new(device, hidden, out))
                .collect::<Result<Vec<_>>>()
        };
        Ok(Self {
            base: DiagonalNormalGuide::new(encoder, hidden, latent, device)?,
            u: heads(latent)?,
            w: heads(latent)?,
            b: (0..K)
                .map(|_| Linear::new(device, hidden, 1))
                .collect::<Result<Vec<_>>>()?,
        })
    }

    /// The latent size `Z`.
    pub fn latent_dim(&self) -> Z {
        self.base.latent_dim()
    }
}

impl<Enc, H, Z, const K: usize, E: Real, D: Device<E>> TensorCollection<E, D>
    for PlanarGuide<Enc, H, Z, K, E, D>
where
    H: Dim + Default,
    Z: Dim + Default,
    Enc: TensorCollection<E, D>,
{
    type To<E2: Dtype, D2: Device<E2>> = PlanarGuide<Enc::To<E2, D2>, H, Z, K, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        let names = |p: &str| (0..K).map(|k| format!("{p}{k}")).collect::<Vec<_>>();
        let (nu, nw, nb) = (names("u"), names("w"), names("b"));
        visitor.visit_fields(
            (
                Self::module("base", |s| &s.base, |s| &mut s.base),
                nu.iter()
                    .enumerate()
                    .map(|(k, n)| Self::module(n, move |s| &s.u[k], move |s| &mut s.u[k]))
                    .collect::<Vec<_>>(),
                nw.iter()
                    .enumerate()
                    .map(|(k, n)| Self::module(n, move |s| &s.w[k], move |s| &mut s.w[k]))
                    .collect::<Vec<_>>(),
                nb.iter()
                    .enumerate()
                    .map(|(k, n)| Self::module(n, move |s| &s.b[k], move |s| &mut s.b[k]))
                    .collect::<Vec<_>>(),
            ),
            |(base, u, w, b)| PlanarGuide { base, u, w, b },
        )
    }
}

/// The posterior family of a [`PlanarGuide`].
pub type PlanarPosterior<Z, E, D, T> =
    TransformedDistribution<Normal<Z, E, D, T>, Vec<Planar<Z, E, D, T>>>;

impl<X, Enc, H: Dim, Z: Dim, const K: usize, E: Real, D: Device<E>, T: Tape<E, D>>
    AmortizedGuide<X, Z, E, D> for PlanarGuide<Enc, H, Z, K, E, D>
where
    Enc: Module<X, Output = Tensor<(usize, H), E, D, T>>,
{
    type Posterior = PlanarPosterior<Z, E, D, T>;

    fn posterior(&self, x: X) -> Result<Self::Posterior> {
        let h = self.base.encoder.try_forward(x).map_err(Error::device)?;
        let batch = h.shape().0;
        let fwd = |l: &Linear<H, Z, E, D>| -> Result<Events<Z, E, D, T>> {
            l.try_forward(h.with_empty_tape()).map_err(Error::device)
        };
        let steps = (0..K)
            .map(|k| {
                let b = self.b[k]
                    .try_forward(h.with_empty_tape())
                    .map_err(Error::device)?
                    .reshape_like(&(batch,));
                Planar::new(fwd(&self.u[k])?, fwd(&self.w[k])?, b)
            })
            .collect::<Result<Vec<_>>>()?;
        TransformedDistribution::new(self.base.head(h)?, steps)
    }
}

impl<Enc, H: Dim, Z: Dim, const K: usize, E: Real, D: Device<E>>
    crate::inference::guide::LatentWidth<Z> for PlanarGuide<Enc, H, Z, K, E, D>
{
    fn latent_dim(&self) -> Z {
        self.base.latent_dim()
    }
}

/// As a part of a model: `"planar(k=K)"`.
impl<Enc, H: Dim, Z: Dim, const K: usize, E: Dtype, D: Storage<E>> crate::train::Named
    for PlanarGuide<Enc, H, Z, K, E, D>
{
    fn name(&self) -> String {
        format!("planar(k={K})")
    }
}
