//! The Gaussian-mixture VAE: a categorical cluster latent, summed out exactly, over a
//! Gaussian latent (Dilokthanakul et al. 2016, in the form without their extra `w`
//! latent; Kingma et al. 2014's M2 without labels, with the cluster in the prior rather
//! than the decoder).

use dfdx::nn::modules::ReLU;
use dfdx::prelude::*;
use latent::distributions::{Categorical, Normal};
use latent::inference::enumerate::EnumeratedModel;
use latent::nn::Linear;
use latent::ops::check_width;
use latent::{
    AmortizedGuide, Bernoulli, ConditionalModel, DiagonalNormalGuide, Error, Events, Real, Result,
};

use crate::cvae::{CvaeGuide, Joint};
use crate::mlp::MlpDecoder;

/// `q(y | x)`: `x → relu(W x + b) ∈ R^H → logits ∈ R^K`.
pub type ClusterNet<X, H, K, E, D> = (Linear<X, H, E, D>, ReLU, Linear<H, K, E, D>);

/// `p(z | y) = N(μ_y, diag σ_y²)` with `(μ_y, log σ_y)` learned per cluster: an affine
/// map of the one-hot `y` (no hidden layer), initialized as PyTorch's `nn.Linear`, so
/// the `K` components start near each other (`|μ_y| ≲ 1/√K` per coordinate). Spread
/// apart from the start (`μ_y ~ N(0, I)`, as `nn.Embedding`), they collapsed onto one
/// cluster in three runs of four on Fashion-MNIST
/// (`docs/compare/discrete/gmvae-variants/`).
pub type ClusterPrior<K, Z, E, D> = DiagonalNormalGuide<(), K, Z, E, D>;

/// The Gaussian-mixture VAE for `x ∈ {0,1}^X` with `K` clusters and `Z` Gaussian latents:
///
/// - `p(y) = 1/K` (uniform), `p(z | y) = N(μ_y, diag σ_y²)` (learned per cluster),
///   `p(x | z) = Bernoulli(decoder(z))` (an `Z-H-X` MLP): the marginal prior of `z` is a
///   mixture of `K` Gaussians;
/// - guide `q(y | x) q(z | x, y)`: [`ClusterNet`] and a Gaussian whose first layer sees
///   `x` and the one-hot `y` ([`CvaeGuide`]).
///
/// `y` is enumerated: train with [`latent::train::EnumeratedTask`] (the
/// [`latent::inference::enumerate::EnumeratedElbo`]), estimate `log p(x)` with
/// [`latent::inference::enumerate::enumerated_log_marginal_likelihood`], and read the
/// clusters from [`GmVae::cluster_probs`].
#[derive(Debug, Clone)]
pub struct GmVae<X: Dim, K: Dim, H: Dim, Z: Dim, E: Dtype, D: Storage<E>> {
    /// `q(y | x)`.
    pub cluster: ClusterNet<X, H, K, E, D>,
    /// `q(z | x, y)`.
    pub guide: CvaeGuide<X, K, H, Z, E, D>,
    /// `p(z | y)`.
    pub prior: ClusterPrior<K, Z, E, D>,
    /// `z ↦ ℓ`, the Bernoulli logits of `p(x | z)`.
    pub decoder: MlpDecoder<X, H, Z, E, D>,
}

impl<X: Dim, K: Dim, H: Dim, Z: Dim, E: Real, D: Device<E>> GmVae<X, K, H, Z, E, D> {
    /// A GMVAE with sizes `(X, K, H, Z)`, layers initialized as PyTorch's `nn.Linear`.
    ///
    /// # Examples
    /// ```
    /// use dfdx::prelude::*;
    /// use latent::inference::enumerate::EnumeratedElbo;
    /// use latent_models::GmVae;
    ///
    /// let dev = Cpu::default();
    /// let model: GmVae<usize, usize, usize, usize, f32, Cpu> = GmVae::new(&dev, (8, 3, 16, 2))?;
    /// let x = dev.tensor_from_vec(vec![1.0f32; 16], (2, 8));
    /// let terms = EnumeratedElbo::default().estimate(&model, x.clone())?;
    /// assert_eq!(terms.elbo.shape().0, 2);
    /// // q(y | x) sums to 1 over the 3 clusters.
    /// let p = model.cluster_probs(x)?;
    /// assert!((p[0].iter().sum::<f64>() - 1.0).abs() < 1e-6);
    /// # Ok::<(), latent::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] if a size is 0; the device's allocation errors.
    pub fn new(device: &D, (x, k, h, z): (X, K, H, Z)) -> Result<Self> {
        if [x.size(), k.size(), h.size(), z.size()].contains(&0) {
            return Err(Error::invalid(
                "GmVae sizes",
                format!(
                    "X, K, H and Z must be positive, got ({}, {}, {}, {})",
                    x.size(),
                    k.size(),
                    h.size(),
                    z.size()
                ),
            ));
        }
        Ok(Self {
            cluster: (Linear::new(device, x, h)?, ReLU, Linear::new(device, h, k)?),
            guide: DiagonalNormalGuide::new(Joint::new(device, x, k, h)?, h, z, device)?,
            prior: DiagonalNormalGuide::new((), k, z, device)?,
            decoder: (Linear::new(device, z, h)?, ReLU, Linear::new(device, h, x)?),
        })
    }

    /// The number of clusters `K`.
    pub fn clusters(&self) -> K {
        self.cluster.2.outputs()
    }

    /// `q(y | x)` for each example of `x` (shape `(batch, X)`), on the host: one row of
    /// `K` probabilities per example.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for `x` of another width; the device's errors.
    pub fn cluster_probs(&self, x: Events<X, E, D>) -> Result<Vec<Vec<f64>>> {
        let q = <Self as EnumeratedModel<E, D, NoneTape>>::site_guide(self, x)?;
        let k = q.logits.shape().1.size();
        let p = latent::ops::to_f64_vec(&q.logits.softmax::<Axis<1>>());
        Ok(p.chunks(k).map(<[f64]>::to_vec).collect())
    }
}

impl<X, K, H, Z, E, D> TensorCollection<E, D> for GmVae<X, K, H, Z, E, D>
where
    X: Dim + Default,
    K: Dim + Default,
    H: Dim + Default,
    Z: Dim + Default,
    E: Real,
    D: Device<E>,
{
    type To<E2: Dtype, D2: Device<E2>> = GmVae<X, K, H, Z, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("cluster", |s| &s.cluster, |s| &mut s.cluster),
                Self::module("guide", |s| &s.guide, |s| &mut s.guide),
                Self::module("prior", |s| &s.prior, |s| &mut s.prior),
                Self::module("decoder", |s| &s.decoder, |s| &mut s.decoder),
            ),
            |(cluster, guide, prior, decoder)| GmVae {
                cluster,
                guide,
                prior,
                decoder,
            },
        )
    }
}

impl<X: Dim, K: Dim, H: Dim, Z: Dim, E, D, T> ConditionalModel<E, D, T> for GmVae<X, K, H, Z, E, D>
where
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
{
    type X = X;
    type Y = K;
    type Z = Z;
    type Posterior = Normal<Z, E, D, T>;
    type Prior = Normal<Z, E, D, T>;
    type Likelihood = Bernoulli<X, E, D, T>;

    fn guide(&self, x: Events<X, E, D, T>, y: Events<K, E, D, T>) -> Result<Normal<Z, E, D, T>> {
        let joint = &self.guide.encoder;
        check_width("GmVae::guide (x)", joint.a.inputs(), x.shape().1)?;
        check_width("GmVae::guide (y)", joint.b.inputs(), y.shape().1)?;
        self.guide.posterior((x, y))
    }

    fn prior(&self, y: Events<K, E, D, T>) -> Result<Normal<Z, E, D, T>> {
        check_width("GmVae::prior (y)", self.prior.loc.inputs(), y.shape().1)?;
        self.prior.posterior(y)
    }

    fn likelihood(
        &self,
        z: Events<Z, E, D, T>,
        _y: Events<K, E, D, T>,
    ) -> Result<Bernoulli<X, E, D, T>> {
        check_width(
            "GmVae::likelihood (z)",
            self.decoder.0.inputs(),
            z.shape().1,
        )?;
        Ok(Bernoulli::new(
            self.decoder.try_forward(z).map_err(Error::device)?,
        ))
    }
}

impl<X: Dim, K: Dim, H: Dim, Z: Dim, E, D, T> EnumeratedModel<E, D, T> for GmVae<X, K, H, Z, E, D>
where
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
{
    fn site_guide(&self, x: Events<X, E, D, T>) -> Result<Categorical<K, E, D, T>> {
        check_width(
            "GmVae::site_guide (x)",
            self.cluster.0.inputs(),
            x.shape().1,
        )?;
        Ok(Categorical::new(
            self.cluster.try_forward(x).map_err(Error::device)?,
        ))
    }

    fn site_prior(&self, batch: usize, device: &D) -> Result<Categorical<K, E, D, T>> {
        let k = self.clusters();
        Ok(Categorical::new(
            device.zeros_like(&(batch, k)).retaped::<T>(),
        ))
    }
}
