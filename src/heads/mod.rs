//! Distribution heads: the last, distribution-making step of a likelihood `p(x|z)`
//! (from a decoder's output) or of a prior `p(z)`, with their own parameters where they
//! have any, so that a model can swap its likelihood or prior without other changes.

use dfdx::prelude::*;

use crate::distributions::{
    Bernoulli, ContinuousBernoulli, MixtureOfDiagNormals, Normal, StandardNormal,
};
use crate::error::{Error, Result};
use crate::kernels::ops::{cst, Events, Real};
use crate::nn::options::options;

/// Turns a decoder output of shape `(batch, X)` into the likelihood `p(x | z)`.
pub trait LikelihoodHead<X: Dim, E: Real, D: Device<E>, T: Tape<E, D>> {
    /// The family of `p(x | z)`.
    type Dist: crate::Distribution<X, E, D, Tape = T> + 'static;
    /// `p(x | z)` from the decoder output.
    ///
    /// # Errors
    /// Shape errors from the family's constructor.
    fn distribution(&self, decoder_output: Events<X, E, D, T>) -> Result<Self::Dist>;
}

/// Makes the prior `p(z)` for a batch.
pub trait PriorHead<Z: Dim, E: Real, D: Device<E>, T: Tape<E, D>> {
    /// The family of `p(z)`.
    type Dist: crate::Distribution<Z, E, D, Tape = T> + 'static;
    /// `p(z)` repeated for `batch` examples.
    ///
    /// # Errors
    /// Errors of the family's constructor.
    fn prior(&self, batch: usize, dim: Z, device: &D) -> Result<Self::Dist>;
}

/// `new(device, columns)` (all zeros) and the `TensorCollection` of a head whose only
/// tensor is one learned vector `$field` of shape `(P,)`: one per column (`P = X`) or
/// one shared (`P = 1`), trained, saved and reset to zero like a network's parameters.
macro_rules! one_learned_vector {
    ($head:ident, $field:ident, $doc:literal) => {
        impl<P: Dim, E: crate::kernels::ops::Real, D: Device<E>> $head<P, E, D> {
            #[doc = $doc]
            ///
            /// # Errors
            /// The device's allocation errors.
            pub fn new(device: &D, columns: P) -> crate::error::Result<Self> {
                Ok(Self {
                    $field: device
                        .try_zeros_like(&(columns,))
                        .map_err(crate::error::Error::device)?,
                })
            }
        }

        impl<P: Dim + Default, E: crate::kernels::ops::Real, D: Device<E>> TensorCollection<E, D>
            for $head<P, E, D>
        {
            type To<E2: Dtype, D2: Device<E2>> = $head<P, E2, D2>;
            fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
                visitor: &mut V,
            ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
                visitor.visit_fields(
                    Self::tensor(
                        stringify!($field),
                        |s| &s.$field,
                        |s| &mut s.$field,
                        crate::nn::options::options(Default::default(), |t| {
                            t.try_fill_with_zeros()
                        }),
                    ),
                    |$field| $head { $field },
                )
            }
        }
    };
}

mod counts;
mod positive;

pub use counts::{BinomialHead, NegativeBinomialHead, PoissonHead, ZinbHead};
pub use positive::{BetaHead, GammaHead, LogNormalHead};

/// Declares a head without tensors (a unit struct whose `LikelihoodHead` or `PriorHead`
/// impl only reshapes the decoder's output into a distribution) as a dfdx
/// `TensorCollection`, so that a model holding it can be saved, loaded and trained.
///
/// ```
/// use dfdx::prelude::*;
/// use latent::distributions::Poisson;
/// use latent::heads::LikelihoodHead;
/// use latent::{parameterless_head, Events, Real, Result};
///
/// /// `p(x|z) = Poisson(rate = exp(decoder output))`.
/// #[derive(Debug, Clone, Copy, Default)]
/// pub struct MyPoissonHead;
/// parameterless_head!(MyPoissonHead);
///
/// impl<X: Dim, E: Real, D: Device<E> + 'static, T: Tape<E, D> + 'static>
///     LikelihoodHead<X, E, D, T> for MyPoissonHead
/// {
///     type Dist = Poisson<X, E, D, T>;
///     fn distribution(&self, out: Events<X, E, D, T>) -> Result<Self::Dist> {
///         Ok(Poisson::new(out))
///     }
/// }
/// ```
#[macro_export]
macro_rules! parameterless_head {
    ($name:ident) => {
        impl<E: $crate::__dfdx::prelude::Dtype, D: $crate::__dfdx::prelude::Device<E>>
            $crate::__dfdx::prelude::TensorCollection<E, D> for $name
        {
            type To<E2: $crate::__dfdx::prelude::Dtype, D2: $crate::__dfdx::prelude::Device<E2>> =
                $name;
            fn iter_tensors<V: $crate::__dfdx::prelude::ModuleVisitor<Self, E, D>>(
                visitor: &mut V,
            ) -> ::std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
                visitor.visit_fields((), |_| $name)
            }
        }
    };
}
use parameterless_head as parameterless;

/// A learned parameter per column (`P = X`) or one shared by all columns (`P = 1`),
/// broadcast to the decoder output's shape `(batch, X)` and put on its tape type.
///
/// # Errors
/// [`Error::ShapeMismatch`] unless `P` is 1 or `X`.
pub(crate) fn per_column<P: Dim, X: Dim, E: Real, D: Device<E>, T: Tape<E, D>>(
    context: &str,
    values: &Tensor<(P,), E, D>,
    shape: (usize, X),
) -> Result<Events<X, E, D, T>> {
    let (b, x) = shape;
    let p = values.shape().0.size();
    let v = values.retaped::<T>();
    if p == x.size() {
        Ok(v.reshape_like(&(x,)).broadcast_like(&(b, x)))
    } else if p == 1 {
        Ok(v.reshape_like(&()).broadcast_like(&(b, x)))
    } else {
        Err(Error::shape(
            format!("{context} (columns)"),
            &[x.size()],
            &[p],
        ))
    }
}

/// `p(x|z) = Bernoulli(logits = decoder output)`: binary pixels. On grey-level pixels
/// its log-probability is a cross-entropy, not a log-density over `[0, 1]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BernoulliHead;
parameterless!(BernoulliHead);

impl<X: Dim, E: Real, D: Device<E> + 'static, T: Tape<E, D> + 'static> LikelihoodHead<X, E, D, T>
    for BernoulliHead
{
    type Dist = Bernoulli<X, E, D, T>;
    fn distribution(&self, out: Events<X, E, D, T>) -> Result<Self::Dist> {
        Ok(Bernoulli::new(out))
    }
}

/// `p(x|z) = ContinuousBernoulli(logits = decoder output)`: a proper density for
/// intensities in `[0, 1]` (Loaiza-Ganem & Cunningham 2019).
#[derive(Debug, Clone, Copy, Default)]
pub struct ContinuousBernoulliHead;
parameterless!(ContinuousBernoulliHead);

impl<X: Dim, E: Real, D: Device<E> + 'static, T: Tape<E, D> + 'static> LikelihoodHead<X, E, D, T>
    for ContinuousBernoulliHead
{
    type Dist = ContinuousBernoulli<X, E, D, T>;
    fn distribution(&self, out: Events<X, E, D, T>) -> Result<Self::Dist> {
        Ok(ContinuousBernoulli::new(out))
    }
}

/// `p(x|z) = N(decoder output, σ² I)` with a **fixed** `σ`.
#[derive(Debug, Clone, Copy)]
pub struct FixedGaussianHead {
    log_scale: f64,
}

impl FixedGaussianHead {
    /// A Gaussian likelihood with standard deviation `sigma`.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] unless `sigma` is positive and finite.
    pub fn new(sigma: f64) -> Result<Self> {
        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(Error::invalid(
                "sigma",
                format!("must be positive, got {sigma}"),
            ));
        }
        Ok(Self {
            log_scale: sigma.ln(),
        })
    }
}

impl<E: Real, D: Device<E>> TensorCollection<E, D> for FixedGaussianHead {
    type To<E2: Dtype, D2: Device<E2>> = FixedGaussianHead;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        // Rebuilding a fixed head keeps σ = 1; set it again with `new` if needed.
        visitor.visit_fields((), |_| FixedGaussianHead { log_scale: 0.0 })
    }
}

impl<X: Dim, E: Real, D: Device<E> + 'static, T: Tape<E, D> + 'static> LikelihoodHead<X, E, D, T>
    for FixedGaussianHead
{
    type Dist = Normal<X, E, D, T>;
    fn distribution(&self, out: Events<X, E, D, T>) -> Result<Self::Dist> {
        let shape = *out.shape();
        let log_scale =
            (out.device().ones_like(&shape) * cst::<E>(self.log_scale)).put_tape(T::default());
        Normal::new(out, log_scale)
    }
}

/// `p(x|z) = N(decoder output, diag σ²)` with a **learned** `log σ`: one per pixel
/// (`P = X`) or one shared by all pixels (`P = 1`). Initialized to `σ = 1`.
#[derive(Debug, Clone)]
pub struct LearnedGaussianHead<P: Dim, E: Dtype, D: Storage<E>> {
    /// `log σ`, shape `(P,)`.
    pub log_scale: Tensor<(P,), E, D>,
}

one_learned_vector!(
    LearnedGaussianHead,
    log_scale,
    "A head with `columns` learned `log σ` (1 shared, or one per pixel), all 0. With \
     `Const` sizes, `BuildModule::build(&dev)` makes the same."
);

impl<X: Dim, P: Dim, E: Real, D: Device<E> + 'static, T: Tape<E, D> + 'static>
    LikelihoodHead<X, E, D, T> for LearnedGaussianHead<P, E, D>
{
    type Dist = Normal<X, E, D, T>;
    /// # Errors
    /// [`Error::ShapeMismatch`] unless `P` is 1 or `X`.
    fn distribution(&self, out: Events<X, E, D, T>) -> Result<Self::Dist> {
        let log_scale = per_column("LearnedGaussianHead", &self.log_scale, *out.shape())?;
        Normal::new(out, log_scale)
    }
}

/// The prior `p(z) = N(0, I)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StandardNormalPrior;
parameterless!(StandardNormalPrior);

impl<Z: Dim, E: Real, D: Device<E> + 'static, T: Tape<E, D> + 'static> PriorHead<Z, E, D, T>
    for StandardNormalPrior
{
    type Dist = StandardNormal<Z, E, D, T>;
    fn prior(&self, batch: usize, dim: Z, device: &D) -> Result<Self::Dist> {
        Ok(StandardNormal::new(batch, dim, device))
    }
}

/// A learned prior `p(z) = Σ_k π_k N(μ_k, diag σ_k²)` with `K` components. Initialized
/// with equal weights, unit scales and means drawn from `U(−1.5, 1.5)`, so the components
/// start apart. Its KL from a Normal guide has no closed form: `Elbo` estimates it.
#[derive(Debug, Clone)]
pub struct MixturePrior<K: Dim, Z: Dim, E: Dtype, D: Storage<E>> {
    /// Component logits, shape `(K,)`.
    pub logits: Tensor<(K,), E, D>,
    /// Component means, shape `(K, Z)`.
    pub loc: Tensor<(K, Z), E, D>,
    /// Component `log σ`, shape `(K, Z)`.
    pub log_scale: Tensor<(K, Z), E, D>,
}

impl<K: Dim, Z: Dim, E: Real, D: Device<E>> MixturePrior<K, Z, E, D> {
    /// A mixture of `components` Normals over `dim` latent dimensions, initialized as
    /// described above. With `Const` sizes, `BuildModule::build(&dev)` makes the same.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for zero components; the device's allocation errors.
    pub fn new(device: &D, components: K, dim: Z) -> Result<Self> {
        if components.size() == 0 {
            return Err(Error::invalid(
                "K",
                "a mixture needs at least one component",
            ));
        }
        let init = rand_distr::Uniform::new(cst::<E>(-1.5), cst::<E>(1.5));
        Ok(Self {
            logits: device
                .try_zeros_like(&(components,))
                .map_err(Error::device)?,
            loc: device
                .try_sample_like(&(components, dim), init)
                .map_err(Error::device)?,
            log_scale: device
                .try_zeros_like(&(components, dim))
                .map_err(Error::device)?,
        })
    }
}

impl<K: Dim + Default, Z: Dim + Default, E: Real, D: Device<E>> TensorCollection<E, D>
    for MixturePrior<K, Z, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = MixturePrior<K, Z, E2, D2>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "logits",
                    |s| &s.logits,
                    |s| &mut s.logits,
                    options(Default::default(), |t| t.try_fill_with_zeros()),
                ),
                Self::tensor(
                    "loc",
                    |s| &s.loc,
                    |s| &mut s.loc,
                    options(Default::default(), |t| {
                        t.try_fill_with_distr(rand_distr::Uniform::new(
                            cst::<E>(-1.5),
                            cst::<E>(1.5),
                        ))
                    }),
                ),
                Self::tensor(
                    "log_scale",
                    |s| &s.log_scale,
                    |s| &mut s.log_scale,
                    options(Default::default(), |t| t.try_fill_with_zeros()),
                ),
            ),
            |(logits, loc, log_scale)| MixturePrior {
                logits,
                loc,
                log_scale,
            },
        )
    }
}

impl<K: Dim, Z: Dim, E: Real, D: Device<E> + 'static, T: Tape<E, D> + 'static> PriorHead<Z, E, D, T>
    for MixturePrior<K, Z, E, D>
{
    type Dist = MixtureOfDiagNormals<K, Z, E, D, T>;
    fn prior(&self, batch: usize, dim: Z, _device: &D) -> Result<Self::Dist> {
        crate::kernels::ops::check_width(
            "MixturePrior::prior (latent dimensions)",
            self.loc.shape().1,
            dim,
        )?;
        MixtureOfDiagNormals::shared(
            batch,
            self.logits.retaped::<T>(),
            self.loc.retaped::<T>(),
            self.log_scale.retaped::<T>(),
        )
    }
}

impl crate::train::Named for BernoulliHead {
    fn name(&self) -> String {
        "bernoulli".into()
    }
}

impl crate::train::Named for ContinuousBernoulliHead {
    fn name(&self) -> String {
        "continuous-bernoulli".into()
    }
}

impl crate::train::Named for FixedGaussianHead {
    fn name(&self) -> String {
        format!("gaussian(sigma={})", self.log_scale.exp())
    }
}

impl<P: Dim, E: Dtype, D: Storage<E>> crate::train::Named for LearnedGaussianHead<P, E, D> {
    fn name(&self) -> String {
        "learned-gaussian".into()
    }
}

impl crate::train::Named for StandardNormalPrior {
    fn name(&self) -> String {
        "standard-normal".into()
    }
}

impl<K: Dim, Z: Dim, E: Dtype, D: Storage<E>> crate::train::Named for MixturePrior<K, Z, E, D> {
    fn name(&self) -> String {
        format!("mixture(k={})", self.logits.shape().0.size())
    }
}
