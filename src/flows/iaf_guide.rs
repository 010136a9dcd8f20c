//! An amortized guide of a diagonal Normal and `K` inverse autoregressive steps.

use dfdx::prelude::*;

use super::{IafStep, Made, TransformedDistribution};
use crate::distributions::Normal;
use crate::error::{Error, Result};
use crate::inference::guide::{AmortizedGuide, DiagonalNormalGuide};
use crate::kernels::ops::Real;
use crate::nn::Linear;

/// `q(z|x)` with an inverse autoregressive flow (Kingma et al. 2016, §4 and Algorithm 1):
///
/// `h = encoder(x)`; `(μ, log σ)` from the heads of a [`DiagonalNormalGuide`];
/// a context `c = relu(C h + d)` of `C` features; `z₀ = μ + σ ⊙ ε`; then `K`
/// [`IafStep`]s, step `k` with its own [`Made`] network fed `c`, in the order `1..Z`
/// for even `k` and `Z..1` for odd `k`.
///
/// The posterior is a [`TransformedDistribution`] of the Normal and the `Vec` of
/// steps: the ELBO estimates its KL by Monte Carlo, and `log_prob` at any point works
/// (each step's inverse takes `Z` network passes).
///
/// `K` is fixed at compile time (like dfdx's `Repeated`); `H`, `Z` are dfdx `Dim`s.
#[derive(Debug, Clone)]
pub struct IafGuide<Enc, H: Dim, Z: Dim, const K: usize, E: Dtype, D: Storage<E>> {
    /// The encoder and the base Normal's heads.
    pub base: DiagonalNormalGuide<Enc, H, Z, E, D>,
    /// The context head `H → C`.
    pub context: Linear<H, usize, E, D>,
    /// The steps' networks.
    pub steps: Vec<Made<Z, E, D>>,
}

impl<Enc, H: Dim, Z: Dim, const K: usize, E: Real, D: Device<E>> IafGuide<Enc, H, Z, K, E, D> {
    /// A guide around `encoder` (with `hidden` output features) for `latent`
    /// dimensions, with a context of `context` features and `K` steps of MADEs with
    /// `made_hidden` units each.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for zero `context` or `made_hidden`; allocation errors.
    pub fn new(
        encoder: Enc,
        (hidden, latent): (H, Z),
        context: usize,
        made_hidden: usize,
        device: &D,
    ) -> Result<Self> {
        if context == 0 {
            return Err(Error::invalid("context", "needs at least 1 feature"));
        }
        Ok(Self {
            base: DiagonalNormalGuide::new(encoder, hidden, latent, device)?,
            context: Linear::new(device, hidden, context)?,
            steps: (0..K)
                .map(|_| Made::new(device, latent, made_hidden, context))
                .collect::<Result<Vec<_>>>()?,
        })
    }

    /// The latent size `Z`.
    pub fn latent_dim(&self) -> Z {
        self.base.latent_dim()
    }
}

impl<Enc, H, Z, const K: usize, E: Real, D: Device<E>> TensorCollection<E, D>
    for IafGuide<Enc, H, Z, K, E, D>
where
    H: Dim + Default,
    Z: Dim + Default,
    Enc: TensorCollection<E, D>,
{
    type To<E2: Dtype, D2: Device<E2>> = IafGuide<Enc::To<E2, D2>, H, Z, K, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        let names: Vec<String> = (0..K).map(|k| format!("step{k}")).collect();
        visitor.visit_fields(
            (
                Self::module("base", |s| &s.base, |s| &mut s.base),
                Self::module("context", |s| &s.context, |s| &mut s.context),
                names
                    .iter()
                    .enumerate()
                    .map(|(k, n)| Self::module(n, move |s| &s.steps[k], move |s| &mut s.steps[k]))
                    .collect::<Vec<_>>(),
            ),
            |(base, context, steps)| IafGuide {
                base,
                context,
                steps,
            },
        )
    }
}

/// The posterior family of an [`IafGuide`].
pub type IafPosterior<Z, E, D, T> =
    TransformedDistribution<Normal<Z, E, D, T>, Vec<IafStep<Z, E, D, T>>>;

impl<X, Enc, H: Dim, Z: Dim, const K: usize, E: Real, D: Device<E>, T: Tape<E, D>>
    AmortizedGuide<X, Z, E, D> for IafGuide<Enc, H, Z, K, E, D>
where
    Enc: Module<X, Output = Tensor<(usize, H), E, D, T>>,
{
    type Posterior = IafPosterior<Z, E, D, T>;

    fn posterior(&self, x: X) -> Result<Self::Posterior> {
        let h = self.base.encoder.try_forward(x).map_err(Error::device)?;
        let c = self
            .context
            .try_forward(h.with_empty_tape())
            .map_err(Error::device)?
            .relu();
        // One step carries the context's tape; the others share it with empty tapes.
        let (c, tape) = c.split_tape();
        let mut tape = Some(tape);
        let steps = self
            .steps
            .iter()
            .enumerate()
            .map(|(k, made)| {
                let ck = c.clone().put_tape(tape.take().unwrap_or_default());
                IafStep::new(made.clone(), ck, k % 2 == 1)
            })
            .collect::<Result<Vec<_>>>()?;
        let base = self.base.head(h)?;
        // With K = 0 nobody took the context's tape: it joins the base's.
        let base = match tape {
            Some(t) => Normal {
                loc: {
                    let (l, lt) = base.loc.split_tape();
                    l.put_tape(lt.merge(t))
                },
                log_scale: base.log_scale,
            },
            None => base,
        };
        TransformedDistribution::new(base, steps)
    }
}

impl<Enc, H: Dim, Z: Dim, const K: usize, E: Real, D: Device<E>>
    crate::inference::guide::LatentWidth<Z> for IafGuide<Enc, H, Z, K, E, D>
{
    fn latent_dim(&self) -> Z {
        self.base.latent_dim()
    }
}

/// As a part of a model: `"iaf(k=K, context=C, made=M)"`.
impl<Enc, H: Dim, Z: Dim, const K: usize, E: Dtype, D: Storage<E>> crate::train::Named
    for IafGuide<Enc, H, Z, K, E, D>
{
    fn name(&self) -> String {
        let made = self.steps.first().map_or(0, |m| m.input.weight.shape().0);
        format!(
            "iaf(k={K}, context={}, made={made})",
            self.context.weight.shape().0.size()
        )
    }
}
