//! The Gaussian-mixture VAE: a categorical cluster latent, summed out exactly, over a
//! Gaussian latent (Dilokthanakul et al. 2016, in the form without their extra `w`
//! latent; Kingma et al. 2014's M2 without labels, with the cluster in the prior rather
//! than the decoder).

use dfdx::nn::modules::ReLU;
use dfdx::optim::AdamConfig;
use dfdx::prelude::*;
use latent::data::Dataset;
use latent::distributions::{Categorical, Normal};
use latent::inference::enumerate::EnumeratedModel;
use latent::nn::Linear;
use latent::ops::{check_width, cst, observed, to_f64_vec};
use latent::train::optim::Adam;
use latent::{
    AmortizedGuide, Bernoulli, ConditionalModel, DiagonalNormalGuide, Error, Events, Real, Result,
};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::cvae::{CvaeGuide, Joint};
use crate::gmm::DiagonalGmm;
use crate::mlp::{MlpDecoder, MlpVae};
use crate::vae::InputTransform;

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

    /// The GMVAE started from a pretrained VAE and a mixture fitted to its latent means:
    /// Variational Deep Embedding's initialization (Jiang et al. 2017, §3.3, with a VAE
    /// in place of their stacked autoencoder). `q(z | x, y)` starts as the VAE's
    /// `q(z | x)` for every `y` (its `y` weights zero), the decoder as the VAE's, and
    /// `p(z | y = k)` as the mixture's `N(μ_k, diag σ_k²)`; `q(y | x)` is fresh: fit it
    /// to the prior's responsibilities with [`GmVae::fit_cluster_net`] before training,
    /// or its first steps, near uniform, pull every `μ_k` to the same place. The
    /// mixture's weights are not used (`p(y)` is uniform).
    ///
    /// Start from a VAE of the same sizes `(X, H, Z)` ([`crate::mlp_vae`]) trained with
    /// the ELBO, and a [`DiagonalGmm`] of `K` components in `R^Z` fitted with
    /// [`DiagonalGmm::fit`] to its guide's means on the training images
    /// ([`latent::eval::explore::encode`]).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if the mixture is not over `R^Z`;
    /// [`Error::InvalidSetting`] if `K` cannot hold the mixture's number of components
    /// (a `Const` of another size), or if the VAE transforms its input before the
    /// encoder (the GMVAE's guide sees `x` as it is); the device's errors.
    pub fn from_pretrained(
        device: &D,
        vae: &MlpVae<X, H, Z, E, D>,
        gmm: &DiagonalGmm,
    ) -> Result<Self> {
        if vae.input != InputTransform::Identity {
            return Err(Error::invalid(
                "GmVae::from_pretrained",
                format!(
                    "the VAE's encoder sees {}(x), the GMVAE's sees x",
                    vae.input.name()
                ),
            ));
        }
        let first = &vae.guide.encoder.0;
        let (x, h, z) = (first.inputs(), first.outputs(), vae.guide.loc.outputs());
        if gmm.dim() != z.size() {
            return Err(Error::shape(
                "GmVae::from_pretrained (the mixture's dimension, the VAE's latents)",
                &[z.size()],
                &[gmm.dim()],
            ));
        }
        let k = K::from_size(gmm.components()).ok_or_else(|| {
            Error::invalid(
                "GmVae::from_pretrained",
                format!("K cannot hold {} components", gmm.components()),
            )
        })?;
        let mut model = Self::new(device, (x, k, h, z))?;
        model.guide.encoder.a = copy(first, device);
        model.guide.encoder.b.weight = device.zeros_like(&model.guide.encoder.b.weight);
        model.guide.loc = copy(&vae.guide.loc, device);
        model.guide.log_scale = copy(&vae.guide.log_scale, device);
        model.decoder = (
            copy(&vae.decoder.0, device),
            ReLU,
            copy(&vae.decoder.2, device),
        );
        // The prior's heads map the one-hot y to the column y of their weights.
        let (zs, ks) = (z.size(), k.size());
        let (mut loc, mut log_scale) = (vec![E::default(); zs * ks], vec![E::default(); zs * ks]);
        for c in 0..ks {
            for j in 0..zs {
                loc[j * ks + c] = cst(gmm.means[c][j]);
                log_scale[j * ks + c] = cst(0.5 * gmm.variances[c][j].ln());
            }
        }
        let prior = &mut model.prior;
        prior.loc.weight = device.tensor_from_vec(loc, (z, k));
        prior.log_scale.weight = device.tensor_from_vec(log_scale, (z, k));
        prior.loc.bias = device.zeros_like(&prior.loc.bias);
        prior.log_scale.bias = device.zeros_like(&prior.log_scale.bias);
        Ok(model)
    }

    /// The marginal prior `p(z) = (1/K) Σ_y N(z; μ_y, diag σ_y²)` as a
    /// [`DiagonalGmm`], on the host.
    ///
    /// # Errors
    /// The device's errors; [`Error::InvalidSetting`] if a parameter is not finite.
    pub fn cluster_prior(&self) -> Result<DiagonalGmm> {
        let (k, z) = (self.clusters(), self.guide.loc.outputs());
        let (ks, zs) = (k.size(), z.size());
        let eye: Vec<E> = (0..ks * ks)
            .map(|i| cst(if i / ks == i % ks { 1.0 } else { 0.0 }))
            .collect();
        let eye: Events<K, E, D> = self.prior.loc.weight.device().tensor_from_vec(eye, (ks, k));
        let p = self.prior.posterior(eye)?;
        let rows = |t: Vec<f64>| t.chunks(zs).map(<[f64]>::to_vec).collect::<Vec<_>>();
        let variances = rows(to_f64_vec(&p.log_scale))
            .into_iter()
            .map(|r| r.iter().map(|l| (2.0 * l).exp()).collect())
            .collect();
        DiagonalGmm::new(
            vec![1.0 / ks as f64; ks],
            rows(to_f64_vec(&p.loc)),
            variances,
        )
    }

    /// The means of `q(z | x, y)` at `y = 0` for each example of `x` (shape
    /// `(batch, X)`), on the host: `batch × Z` values, row-major. After
    /// [`GmVae::from_pretrained`] they are the VAE's guide means (equal for every `y`).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for `x` of another width; the device's errors.
    pub fn guide_means(&self, x: Events<X, E, D>) -> Result<Vec<f64>> {
        let (b, k) = (x.shape().0, self.clusters());
        let mut y = vec![E::default(); b * k.size()];
        y.iter_mut().step_by(k.size()).for_each(|v| *v = cst(1.0));
        let y = x.device().tensor_from_vec(y, (b, k));
        check_width(
            "GmVae::guide_means (x)",
            self.guide.encoder.a.inputs(),
            x.shape().1,
        )?;
        Ok(to_f64_vec(&self.guide.posterior((x, y))?.loc))
    }

    /// Trains `q(y | x)` alone, by Adam on the cross-entropy
    /// `−(1/B) Σ_i Σ_y t_iy log q(y | x_i)` to target probabilities `targets`
    /// (`n × K` values, row-major, a row per image of `data`, e.g. the responsibilities
    /// of [`GmVae::cluster_prior`] at [`GmVae::guide_means`]: VaDE's `q(c | x)`, Jiang et
    /// al. 2017, eq. 16, at the mean). Returns the last epoch's mean cross-entropy (nats
    /// per image).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `targets` is not `len(data) × K` or the images are
    /// not `X` wide; [`Error::InvalidSetting`] for settings out of range
    /// ([`ClusterFit`]); the device's errors.
    pub fn fit_cluster_net(
        &mut self,
        data: &Dataset,
        targets: &[f64],
        settings: &ClusterFit,
        device: &D,
    ) -> Result<f64>
    where
        X: Default,
        K: Default,
        H: Default,
    {
        let k = self.clusters();
        if targets.len() != data.len() * k.size() {
            return Err(Error::shape(
                "GmVae::fit_cluster_net (targets: images × K)",
                &[data.len() * k.size()],
                &[targets.len()],
            ));
        }
        if settings.epochs == 0
            || settings.batch_size == 0
            || !(settings.lr.is_finite() && settings.lr > 0.0)
        {
            return Err(Error::invalid(
                "ClusterFit",
                format!("epochs, batch_size and lr must be positive, got {settings:?}"),
            ));
        }
        let cfg = AdamConfig {
            lr: settings.lr,
            ..Default::default()
        };
        let mut opt = Adam::new(&self.cluster, cfg, 1)?;
        let mut grads = self.cluster.try_alloc_grads().map_err(Error::device)?;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(settings.seed);
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut mean = f64::NAN;
        for _ in 0..settings.epochs {
            order.shuffle(&mut rng);
            let mut total = 0.0;
            for idx in order.chunks(settings.batch_size) {
                let x: Events<X, E, D> = data.batch(device, idx, None)?;
                let t: Vec<E> = idx
                    .iter()
                    .flat_map(|&i| &targets[i * k.size()..(i + 1) * k.size()])
                    .map(|&v| cst(v))
                    .collect();
                let t = device.tensor_from_vec(t, (idx.len(), k));
                let logits = self
                    .cluster
                    .try_forward(observed(x, grads))
                    .map_err(Error::device)?;
                let loss = (logits.log_softmax::<Axis<1>>() * t).sum::<(), _>()
                    * cst::<E>(-1.0 / idx.len() as f64);
                total += to_f64_vec(&loss)[0] * idx.len() as f64;
                grads = loss.backward();
                opt.update(&mut self.cluster, &mut grads)?;
            }
            mean = total / data.len() as f64;
            if !mean.is_finite() {
                return Err(Error::invalid(
                    "GmVae::fit_cluster_net",
                    format!("the cross-entropy is not finite ({mean})"),
                ));
            }
        }
        Ok(mean)
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

/// The settings of [`GmVae::fit_cluster_net`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusterFit {
    /// Passes over the data (at least 1).
    pub epochs: usize,
    /// Images per Adam step (at least 1).
    pub batch_size: usize,
    /// Adam's learning rate (positive).
    pub lr: f64,
    /// Seed of the shuffling.
    pub seed: u64,
}

impl Default for ClusterFit {
    /// 5 epochs of batches of 128 at `lr = 1e-3`, seed 0.
    fn default() -> Self {
        Self {
            epochs: 5,
            batch_size: 128,
            lr: 1e-3,
            seed: 0,
        }
    }
}

/// A copy of `l` in new tensors (new ids: no gradient is shared with `l`).
fn copy<I: Dim, O: Dim, E: Real, D: Device<E>>(
    l: &Linear<I, O, E, D>,
    device: &D,
) -> Linear<I, O, E, D> {
    Linear {
        weight: device.tensor_from_vec(l.weight.as_vec(), *l.weight.shape()),
        bias: device.tensor_from_vec(l.bias.as_vec(), *l.bias.shape()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mlp_vae;

    type Gm = GmVae<usize, usize, usize, usize, f64, Cpu>;

    fn mixture() -> DiagonalGmm {
        DiagonalGmm::new(
            vec![0.2, 0.3, 0.5],
            vec![vec![-1.0, 0.5], vec![2.0, 0.0], vec![0.0, -3.0]],
            vec![vec![0.25, 1.0], vec![4.0, 0.5], vec![1.5, 2.0]],
        )
        .unwrap()
    }

    /// After `from_pretrained`, `q(z | x, y)` is the VAE's `q(z | x)` for every `y`,
    /// the decoder is the VAE's, and `p(z | y = k)` is the mixture's `k`-th component.
    #[test]
    fn from_pretrained_is_the_vae_and_the_mixture() {
        let dev = Cpu::seed_from_u64(7);
        let vae = mlp_vae::<usize, usize, usize, f64, Cpu>(&dev, (8, 16, 2)).unwrap();
        let model = Gm::from_pretrained(&dev, &vae, &mixture()).unwrap();
        assert_eq!(model.clusters(), 3);
        let bits: Vec<f64> = (0..32)
            .map(|i| f64::from(u8::from(i % 3 == 0 || i % 5 == 1)))
            .collect();
        let x: Events<usize, f64, Cpu> = dev.tensor_from_vec(bits, (4, 8));
        let want = vae.guide.posterior(x.clone()).unwrap();
        for k in 0..3 {
            let y: Vec<f64> = (0..12).map(|i| f64::from(u8::from(i % 3 == k))).collect();
            let q = <Gm as ConditionalModel<f64, Cpu, NoneTape>>::guide(
                &model,
                x.clone(),
                dev.tensor_from_vec(y, (4, 3)),
            )
            .unwrap();
            assert_eq!(q.loc.as_vec(), want.loc.as_vec());
            assert_eq!(q.log_scale.as_vec(), want.log_scale.as_vec());
        }
        assert_eq!(model.guide_means(x).unwrap(), want.loc.as_vec());
        let z: Events<usize, f64, Cpu> = dev.sample_normal_like(&(4, 2));
        assert_eq!(
            model.decoder.forward(z.clone()).as_vec(),
            vae.decoder.forward(z).as_vec()
        );
        let prior = model.cluster_prior().unwrap();
        let gmm = mixture();
        assert_eq!(prior.weights, vec![1.0 / 3.0; 3]);
        for k in 0..3 {
            for j in 0..2 {
                assert!((prior.means[k][j] - gmm.means[k][j]).abs() < 1e-12);
                assert!((prior.variances[k][j] / gmm.variances[k][j] - 1.0).abs() < 1e-12);
            }
        }
        let wrong = DiagonalGmm::new(vec![1.0], vec![vec![0.0; 3]], vec![vec![1.0; 3]]).unwrap();
        assert!(matches!(
            Gm::from_pretrained(&dev, &vae, &wrong),
            Err(Error::ShapeMismatch { .. })
        ));
    }

    /// `fit_cluster_net` teaches `q(y | x)` a rule it can represent: images lit in
    /// their first half are cluster 0, in their second half cluster 1: after it, the
    /// cross-entropy is under 0.1 nats and `q(y | x)` puts more than 0.9 on the target
    /// of every image.
    #[test]
    fn fit_cluster_net_learns_the_targets() {
        let dev = Cpu::seed_from_u64(3);
        let (n, w) = (64, 8);
        let mut images = Vec::with_capacity(n * w);
        let mut targets = Vec::with_capacity(n * 2);
        for i in 0..n {
            let first = i % 2 == 0;
            images.extend((0..w).map(|j| if (j < w / 2) == first { 255 } else { 0 }));
            targets.extend(if first { [1.0, 0.0] } else { [0.0, 1.0] });
        }
        let data = Dataset {
            images,
            labels: vec![0; n],
            rows: 1,
            cols: w,
            values: None,
        };
        let mut model = Gm::new(&dev, (w, 2, 16, 2)).unwrap();
        let settings = ClusterFit {
            epochs: 30,
            batch_size: 16,
            lr: 1e-2,
            seed: 1,
        };
        assert!(matches!(
            model.fit_cluster_net(&data, &targets[2..], &settings, &dev),
            Err(Error::ShapeMismatch { .. })
        ));
        let ce = model
            .fit_cluster_net(&data, &targets, &settings, &dev)
            .unwrap();
        assert!(ce < 0.1, "cross-entropy {ce}");
        let x: Events<usize, f64, Cpu> =
            data.batch(&dev, &(0..n).collect::<Vec<_>>(), None).unwrap();
        for (i, p) in model.cluster_probs(x).unwrap().iter().enumerate() {
            assert!(p[i % 2] > 0.9, "image {i}: {p:?}");
        }
    }
}
