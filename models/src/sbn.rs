//! The VAE with a layer of binary latents: a sigmoid belief network with a Bernoulli
//! guide, the model of the NVIL and VIMCO papers (Mnih & Gregor 2014, §6.2; Mnih &
//! Rezende 2016, §6.2, "SBN 200").

use dfdx::nn::modules::Tanh;
use dfdx::prelude::*;
use latent::nn::Linear;
use latent::ops::check_width;
use latent::{Bernoulli, Error, Events, LatentVariableModel, PerExample, Real, Result};

/// NVIL's input-dependent baseline `C_ψ(x)`: one hidden layer of tanh units and a
/// scalar output (Mnih & Gregor 2014, §6: 100 tanh units), `(batch, X) → (batch,)`.
pub type BaselineNet<X, E, D> = (Linear<X, usize, E, D>, Tanh, Linear<usize, usize, E, D>);

/// A one-layer sigmoid belief network over `x ∈ {0,1}^X` with `Z` binary latents,
/// trained as a VAE (Mnih & Gregor 2014, §6.2):
///
/// - prior `p(z) = Π_j Bernoulli(z_j; σ(b_j))`, `b` learned;
/// - likelihood `p(x | z) = Bernoulli(σ(W z + c))`;
/// - guide `q(z | x) = Bernoulli(σ(V x + a))`, a discrete guide (no pathwise draw): train
///   it with [`latent::Nvil`], [`latent::Vimco`], the [`latent::Elbo`]'s plain score
///   function, or the relaxation [`latent::Concrete`];
/// - NVIL's baseline network `C_ψ(x)` ([`BaselineNet`]), returned by
///   [`LatentVariableModel::baseline`]; part of the model's parameters, so the trainer
///   updates and checkpoints it; the other estimators leave it untouched.
///
/// `KL(q ‖ p)` between the two Bernoulli layers has a closed form, so the ELBO's
/// sampled term is the reconstruction only.
#[derive(Debug, Clone)]
pub struct SbnVae<X: Dim, Z: Dim, E: Dtype, D: Storage<E>> {
    /// `x ↦ V x + a`, the guide's logits.
    pub encoder: Linear<X, Z, E, D>,
    /// `z ↦ W z + c`, the likelihood's logits.
    pub decoder: Linear<Z, X, E, D>,
    /// `b`, the prior's logits, shape `(Z,)`.
    pub prior_logits: Tensor<(Z,), E, D>,
    /// `C_ψ(x)`.
    pub baseline: BaselineNet<X, E, D>,
}

impl<X: Dim, Z: Dim, E: Real, D: Device<E>> SbnVae<X, Z, E, D> {
    /// An SBN VAE with `x` observed and `z` binary latents, a baseline network of
    /// `baseline_hidden` tanh units, linear layers initialized as PyTorch's `nn.Linear`,
    /// the prior at `p = ½`.
    ///
    /// # Examples
    /// ```
    /// use dfdx::prelude::*;
    /// use latent::{log_marginal_likelihood, Elbo};
    /// use latent_models::SbnVae;
    ///
    /// let dev = Cpu::default();
    /// let model: SbnVae<usize, usize, f64, Cpu> = SbnVae::new(&dev, 6, 3, 4)?;
    /// let x = dev.tensor_from_vec(vec![1.0, 0.0, 1.0, 1.0, 0.0, 0.0], (1, 6));
    /// let elbo = Elbo::new(2000)?.estimate(&model, x.clone())?.elbo.as_vec()[0];
    /// let ll = log_marginal_likelihood(&model, &x, 2000, 500)?.log_px[0];
    /// assert!(elbo < ll);
    /// # Ok::<(), latent::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if a size is 0; the device's allocation errors.
    pub fn new(device: &D, x: X, z: Z, baseline_hidden: usize) -> Result<Self> {
        if x.size() == 0 || z.size() == 0 || baseline_hidden == 0 {
            return Err(Error::invalid(
                "SbnVae sizes",
                format!(
                    "X ({}), Z ({}) and the baseline's hidden units ({baseline_hidden}) must be positive",
                    x.size(),
                    z.size()
                ),
            ));
        }
        Ok(Self {
            encoder: Linear::new(device, x, z)?,
            decoder: Linear::new(device, z, x)?,
            prior_logits: device.zeros_like(&(z,)),
            baseline: (
                Linear::new(device, x, baseline_hidden)?,
                Tanh,
                Linear::new(device, baseline_hidden, 1)?,
            ),
        })
    }

    /// The number of binary latents.
    pub fn latents(&self) -> Z {
        self.encoder.outputs()
    }
}

impl<X: Dim + Default, Z: Dim + Default, E: Real, D: Device<E>> TensorCollection<E, D>
    for SbnVae<X, Z, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = SbnVae<X, Z, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("encoder", |s| &s.encoder, |s| &mut s.encoder),
                Self::module("decoder", |s| &s.decoder, |s| &mut s.decoder),
                Self::tensor(
                    "prior_logits",
                    |s| &s.prior_logits,
                    |s| &mut s.prior_logits,
                    latent::nn::tensor_options(Default::default(), |t| t.try_fill_with_zeros()),
                ),
                Self::module("baseline", |s| &s.baseline, |s| &mut s.baseline),
            ),
            |(encoder, decoder, prior_logits, baseline)| SbnVae {
                encoder,
                decoder,
                prior_logits,
                baseline,
            },
        )
    }
}

impl<X: Dim, Z: Dim, E, D, T> LatentVariableModel<E, D, T> for SbnVae<X, Z, E, D>
where
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
{
    type X = X;
    type Z = Z;
    type Posterior = Bernoulli<Z, E, D, T>;
    type Prior = Bernoulli<Z, E, D, T>;
    type Likelihood = Bernoulli<X, E, D, T>;

    fn guide(&self, x: Events<X, E, D, T>) -> Result<Bernoulli<Z, E, D, T>> {
        check_width("SbnVae::guide (x)", self.encoder.inputs(), x.shape().1)?;
        Ok(Bernoulli::new(
            self.encoder.try_forward(x).map_err(Error::device)?,
        ))
    }

    fn prior(&self, batch: usize, _device: &D) -> Result<Bernoulli<Z, E, D, T>> {
        let z = self.prior_logits.shape().0;
        Ok(Bernoulli::new(
            self.prior_logits
                .retaped::<T>()
                .broadcast_like::<_, Axis<0>>(&(batch, z))
                // Materialized: dfdx 0.13's reductions mishandle a stride-0 broadcast's
                // gradient (see `MixtureOfDiagNormals::shared`).
                .contiguous(),
        ))
    }

    fn likelihood(&self, z: Events<Z, E, D, T>) -> Result<Bernoulli<X, E, D, T>> {
        check_width("SbnVae::likelihood (z)", self.decoder.inputs(), z.shape().1)?;
        Ok(Bernoulli::new(
            self.decoder.try_forward(z).map_err(Error::device)?,
        ))
    }

    fn baseline(&self, x: Events<X, E, D, T>) -> Option<Result<PerExample<E, D, T>>> {
        Some(
            check_width("SbnVae::baseline (x)", self.encoder.inputs(), x.shape().1).and_then(
                |()| {
                    let b = x.shape().0;
                    let c = self.baseline.try_forward(x).map_err(Error::device)?;
                    Ok(c.reshape_like(&(b,)))
                },
            ),
        )
    }
}
