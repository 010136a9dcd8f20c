//! A family of your own (the logistic), checked by the conformance kit and trained in a VAE
//! as the likelihood of Fashion-MNIST's grey levels (guide: `docs/guide/family.md`).
//! `cargo run --release --features conformance --example custom_family -- --epochs 2`

use dfdx::prelude::*;
use latent::conformance::{block, check_family, require_finite, Config, Dev, Family, Theta};
use latent::heads::LikelihoodHead;
use latent::heads::StandardNormalPrior as Prior;
use latent::ops::{cst, repeat_rows};
use latent::prelude::*;
use latent::train::{fit, TrainConfig};
use latent_models::{mlp_vae_with_heads, MlpVae};
use proptest::prelude::*;

type Ev<T> = Events<Const<1>, f64, Dev, T>;

/// Step 1, the family: `Logistic(μ, s)` per coordinate, the scale as `ln s`, shapes `(batch, N)`.
/// `log p(x) = Σ −z − 2 softplus(−z) − ln s`, `z = (x − μ)/s`; `rsample = μ + s ln(u/(1−u))`.
struct Logistic<N: Dim, E: Dtype, D: Device<E>, T = NoneTape> {
    loc: Events<N, E, D, T>,
    log_scale: Events<N, E, D, T>,
}
impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Distribution<N, E, D> for Logistic<N, E, D, T> {
    type Tape = T;
    fn batch_size(&self) -> usize {
        self.loc.shape().0
    }
    fn device(&self) -> D {
        self.loc.device().clone()
    }
    fn log_prob(self, x: Events<N, E, D, T>) -> Result<PerExample<E, D, T>> {
        // A value used twice is taken again with `with_empty_tape()`; tapes go left.
        let ls = self.log_scale.with_empty_tape();
        let z = (x - self.loc) * self.log_scale.negate().exp();
        let z2 = z.with_empty_tape();
        let lp = z.negate() - latent::special::softplus(z2.negate()) * cst::<E>(2.0) - ls;
        Ok(lp.sum::<(usize,), Axis<1>>())
    }
    fn sample(&self) -> Events<N, E, D> {
        self.fork().rsample().retaped::<NoneTape>()
    }
    fn mean(self) -> Events<N, E, D, T> {
        self.loc
    }
    fn fork(&self) -> Self {
        Logistic { loc: self.loc.with_empty_tape(), log_scale: self.log_scale.with_empty_tape() }
    }
    fn repeat(self, n: usize) -> Self {
        Logistic { loc: repeat_rows(self.loc, n), log_scale: repeat_rows(self.log_scale, n) }
    }
    fn into_tape(self) -> T {
        self.loc.split_tape().1.merge(self.log_scale.split_tape().1)
    }
}
impl<N: Dim, E: Real, D: Device<E>, T: Tape<E, D>> Reparameterizable<N, E, D>
    for Logistic<N, E, D, T>
{
    fn rsample(self) -> Events<N, E, D, T> {
        let u = E::uniform01(self.loc.device(), self.loc.shape()).clamp(1e-6, 1.0 - 1e-6);
        let eps = u.clone().ln() - (u.negate() + E::one()).ln();
        self.loc + self.log_scale.exp() * eps
    }
}

/// Step 2, what the kit needs: θ = `[μ; ln s]`, valid ranges, and a reference log-density.
struct LogisticFamily;
impl Family<1> for LogisticFamily {
    type Dist<T: Tape<f64, Dev>> = Logistic<Const<1>, f64, Dev, T>;
    fn name(&self) -> String {
        "Logistic".into()
    }
    fn num_params(&self) -> usize {
        2
    }
    fn parameters(&self) -> proptest::strategy::BoxedStrategy<Vec<f64>> {
        (-3.0..3.0f64, -1.5..1.5f64).prop_map(|(m, l)| vec![m, l]).boxed()
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
        require_finite(&theta)?;
        Ok(Logistic { log_scale: block(theta.with_empty_tape(), 1)?, loc: block(theta, 0)? })
    }
    fn reference_log_prob(&self, t: &[f64], x: &[f64]) -> Option<f64> {
        let z = (x[0] - t[0]) / t[1].exp();
        Some(-z - 2.0 * (-z).exp().ln_1p() - t[1])
    }
    fn rsample<T: Tape<f64, Dev>>(&self, d: Self::Dist<T>) -> Option<Ev<T>> {
        Some(d.rsample())
    }
}

/// Step 3, a likelihood head: the decoder gives `μ`, the scale is fixed at 1/16.
#[derive(Clone, Copy, Default)]
struct LogisticHead;
latent::parameterless_head!(LogisticHead);
impl<X: Dim, E: Real, D: Device<E> + 'static, T: Tape<E, D> + 'static> LikelihoodHead<X, E, D, T>
    for LogisticHead
{
    type Dist = Logistic<X, E, D, T>;
    fn distribution(&self, loc: Events<X, E, D, T>) -> Result<Self::Dist> {
        let log_scale =
            (loc.device().ones_like(loc.shape()) * cst::<E>(-(16f64.ln()))).put_tape(T::default());
        Ok(Logistic { loc, log_scale })
    }
}
fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let epochs = std::env::args().skip_while(|a| a != "--epochs").nth(1).unwrap_or("2".into());
    // 4. Check it: typed errors, log-density, normalization, moments, gradients.
    check_family(&LogisticFamily, &Config::default())?;
    // 5. Train it in a VAE as the likelihood of grey levels in [0, 1].
    let dev = Cpu::seed_from_u64(0);
    let data = latent::data::embedded()?;
    let mut vae: MlpVae<usize, usize, usize, f32, Cpu, LogisticHead, Prior> =
        mlp_vae_with_heads(&dev, (784, 256, 16), LogisticHead, Prior)?;
    let config = TrainConfig { epochs: epochs.parse()?, progress: false, ..Default::default() };
    let report = fit(&mut vae, &Elbo::default(), &data.train, &data.test, &config, &dev)?;
    let e = report.epochs.last().ok_or("no epoch was trained")?;
    println!("Logistic conforms; epoch {}: test ELBO {:.1} nats/image", e.epoch, e.test_elbo);
    Ok(())
}
