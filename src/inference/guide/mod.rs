//! Amortized guides `q(z | x)`: an encoder network plus a distribution head.

use crate::nn::Linear;
use dfdx::prelude::*;

use crate::distributions::{Normal, Reparameterizable};
use crate::error::{Error, Result};
use crate::kernels::ops::{Events, Real};

mod full_covariance;
pub use full_covariance::FullCovarianceGuide;

/// Maps an observation `x` to the variational posterior `q(z | x)` (amortized
/// inference, Kingma & Welling 2014, §2.1; Gershman & Goodman 2014).
///
/// `X` is the input (a batch of observations, possibly with a condition attached);
/// the posterior is a batch of `Z`-dimensional distributions, one per example.
pub trait AmortizedGuide<X, Z: Dim, E: Dtype, D: Device<E>> {
    /// The family of `q(z | x)`.
    type Posterior: Reparameterizable<Z, E, D> + crate::GuideDistribution<Z, E, D>;

    /// `q(z | x)` for a batch of observations.
    ///
    /// # Errors
    /// [`Error::Device`] if the network's forward pass fails on the device.
    fn posterior(&self, x: X) -> Result<Self::Posterior>;
}

/// A guide that knows the width `Z` of its latents, so a model can make a prior of
/// the same (possibly run-time) size without storing it twice.
pub trait LatentWidth<Z: Dim> {
    /// The latent size `Z`.
    fn latent_dim(&self) -> Z;
}

impl<Enc, H: Dim, Z: Dim, E: Real, D: Device<E>> LatentWidth<Z>
    for DiagonalNormalGuide<Enc, H, Z, E, D>
{
    fn latent_dim(&self) -> Z {
        self.loc.outputs()
    }
}

/// The bound on the guide's `log σ`: the head's output is clamped to
/// `[−LOG_SCALE_BOUND, LOG_SCALE_BOUND]` = `[−20, 20]`, so `σ ∈ [2·10⁻⁹, 5·10⁸]` never
/// underflows to 0 or overflows in `f32` (a diverging run once drove `log σ` to −730,
/// `σ = 0`, and every log-density to NaN). Inside the range the value and gradient are
/// untouched; outside, the gradient is 0, as with PyTorch's `logvar.clamp(...)`.
pub const LOG_SCALE_BOUND: f64 = 20.0;

/// The standard VAE guide: `h = encoder(x)`, `μ = W_μ h + b_μ`, `log σ = W_σ h + b_σ`
/// clamped to `[−20, 20]` ([`LOG_SCALE_BOUND`]), `q(z | x) = N(μ, diag σ²)` (Kingma &
/// Welling 2014, Appendix C.2).
///
/// `Enc` is any dfdx module mapping the input to `(batch, H)`; the two heads are
/// `Linear<H, Z>`. The head outputs `log σ` (not the log-variance; `log σ = ½ log σ²`).
#[derive(Debug, Clone)]
pub struct DiagonalNormalGuide<Enc, H: Dim, Z: Dim, E: Dtype, D: Storage<E>> {
    /// The encoder body, mapping `x` to features of shape `(batch, H)`.
    pub encoder: Enc,
    /// The head producing `μ`, shape `(batch, Z)`.
    pub loc: Linear<H, Z, E, D>,
    /// The head producing `log σ`, shape `(batch, Z)`.
    pub log_scale: Linear<H, Z, E, D>,
}

impl<Enc, H: Dim, Z: Dim, E: Real, D: Device<E>> DiagonalNormalGuide<Enc, H, Z, E, D> {
    /// A guide around `encoder` (whose output has `hidden` features), with freshly
    /// initialized heads to `latent` dimensions on `device` (dfdx's default `Linear`
    /// initialization, `U(−1/√H, 1/√H)`, as in PyTorch). Pass `Const` for sizes fixed
    /// at compile time.
    ///
    /// # Errors
    /// The device's allocation errors.
    pub fn new(encoder: Enc, hidden: H, latent: Z, device: &D) -> Result<Self> {
        Ok(Self {
            encoder,
            loc: Linear::new(device, hidden, latent)?,
            log_scale: Linear::new(device, hidden, latent)?,
        })
    }

    /// The latent size `Z`.
    pub fn latent_dim(&self) -> Z {
        self.loc.outputs()
    }
}

impl<Enc, H: Dim + Default, Z: Dim + Default, E: Real, D: Device<E>> TensorCollection<E, D>
    for DiagonalNormalGuide<Enc, H, Z, E, D>
where
    Enc: TensorCollection<E, D>,
{
    type To<E2: Dtype, D2: Device<E2>> = DiagonalNormalGuide<Enc::To<E2, D2>, H, Z, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("encoder", |s| &s.encoder, |s| &mut s.encoder),
                Self::module("loc", |s| &s.loc, |s| &mut s.loc),
                Self::module("log_scale", |s| &s.log_scale, |s| &mut s.log_scale),
            ),
            |(encoder, loc, log_scale)| DiagonalNormalGuide {
                encoder,
                loc,
                log_scale,
            },
        )
    }
}

impl<X, Enc, H: Dim, Z: Dim, E: Real, D: Device<E>, T: Tape<E, D>> AmortizedGuide<X, Z, E, D>
    for DiagonalNormalGuide<Enc, H, Z, E, D>
where
    Enc: Module<X, Output = Tensor<(usize, H), E, D, T>>,
{
    type Posterior = Normal<Z, E, D, T>;

    fn posterior(&self, x: X) -> Result<Normal<Z, E, D, T>> {
        let h = self.encoder.try_forward(x).map_err(Error::device)?;
        self.head(h)
    }
}

impl<Enc, H: Dim, Z: Dim, E: Real, D: Device<E>> DiagonalNormalGuide<Enc, H, Z, E, D> {
    /// `N(μ, diag σ²)` from encoder features `h` of shape `(batch, H)`: the heads alone,
    /// for guides that use `h` for more than the Normal (the flow guides of
    /// [`crate::flows`]).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `h` does not have `H` features.
    pub fn head<T: Tape<E, D>>(
        &self,
        h: Tensor<(usize, H), E, D, T>,
    ) -> Result<Normal<Z, E, D, T>> {
        crate::kernels::ops::check_width(
            "DiagonalNormalGuide::posterior (encoder features)",
            self.loc.inputs(),
            h.shape().1,
        )?;
        // One tensor owns the tape: the log-scale branch gets an empty tape, and the
        // tapes merge again when the two parameters meet in the loss.
        let log_scale: Events<Z, E, D, T> = self
            .log_scale
            .try_forward(h.with_empty_tape())
            .and_then(|s| s.try_clamp(-LOG_SCALE_BOUND, LOG_SCALE_BOUND))
            .map_err(Error::device)?;
        let loc: Events<Z, E, D, T> = self.loc.try_forward(h).map_err(Error::device)?;
        Normal::new(loc, log_scale)
    }
}

/// As a part of a model (a CVAE's learned prior network `p(z | y)`):
/// `"diagonal-normal-network"`.
impl<Enc, H: Dim, Z: Dim, E: Dtype, D: Storage<E>> crate::train::Named
    for DiagonalNormalGuide<Enc, H, Z, E, D>
{
    fn name(&self) -> String {
        "diagonal-normal-network".into()
    }
}
