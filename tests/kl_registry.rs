//! The open KL registry: a user's own closed form, implemented once as a
//! `KlDivergence` impl and registered, is what `Elbo`'s analytic KL uses *and* what the
//! conformance kit checks. A deliberately wrong registered formula changes the training
//! loss and fails the kit.

use std::sync::atomic::{AtomicBool, Ordering};

use dfdx::prelude::*;
use latent::conformance::families::NormalFamily;
use latent::conformance::{check_kl, Config, Dev, Family, KlPair, Theta};
use latent::distributions::{Distribution, Normal};
use latent::inference::elbo::KlEstimator;
use latent::kl::KlDivergence;
use latent::kl::{is_registered, register_kl};
use latent::ops::{to_f64_vec, Events, PerExample};
use latent::{Elbo, LatentVariableModel, Result};
use latent_models::LinearGaussian;
use proptest::strategy::BoxedStrategy;

/// A user's own prior family: a Normal under another name (so that no built-in pair
/// covers `KL(Normal ‖ Wide)`).
struct Wide<N: Dim, T>(Normal<N, f64, Dev, T>);

impl<N: Dim, T: Tape<f64, Dev>> Distribution<N, f64, Dev> for Wide<N, T> {
    type Tape = T;
    fn batch_size(&self) -> usize {
        self.0.batch_size()
    }
    fn device(&self) -> Dev {
        self.0.device()
    }
    fn log_prob(self, x: Events<N, f64, Dev, T>) -> Result<PerExample<f64, Dev, T>> {
        self.0.log_prob(x)
    }
    fn sample(&self) -> Events<N, f64, Dev> {
        self.0.sample()
    }
    fn mean(self) -> Events<N, f64, Dev, T> {
        self.0.mean()
    }
    fn fork(&self) -> Self {
        Wide(self.0.fork())
    }
    fn repeat(self, n: usize) -> Self {
        Wide(self.0.repeat(n))
    }
    fn into_tape(self) -> T {
        self.0.into_tape()
    }
}

/// When set, the registered formula is off by one nat per example.
static WRONG: AtomicBool = AtomicBool::new(false);

/// The user's closed form: the Normal‖Normal KL (Bishop 2006, ex. 1.30), or that plus
/// one nat when `WRONG` is set.
impl<N: Dim, T: Tape<f64, Dev>> KlDivergence<Wide<N, T>> for Normal<N, f64, Dev, T> {
    type Output = PerExample<f64, Dev, T>;
    fn kl_divergence(self, p: Wide<N, T>) -> Result<Self::Output> {
        let kl = self.kl_divergence(p.0)?;
        Ok(if WRONG.load(Ordering::SeqCst) {
            kl + 1.0
        } else {
            kl
        })
    }
}

/// The kit's view of `Wide`: θ = `[μ (N); ln σ (N)]`, built through the Normal family.
struct WideFamily;

impl<const N: usize> Family<N> for WideFamily {
    type Dist<T: Tape<f64, Dev>> = Wide<Const<N>, T>;
    fn name(&self) -> String {
        format!("Wide<{N}>")
    }
    fn num_params(&self) -> usize {
        <NormalFamily as Family<N>>::num_params(&NormalFamily)
    }
    fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
        <NormalFamily as Family<N>>::parameters(&NormalFamily)
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
        Ok(Wide(<NormalFamily as Family<N>>::build(
            &NormalFamily,
            theta,
        )?))
    }
}

/// The pair as the kit checks it: `kl` calls the very impl that is registered.
struct UserPair;

impl<const N: usize> KlPair<N> for UserPair {
    type Q = NormalFamily;
    type P = WideFamily;
    fn q(&self) -> &NormalFamily {
        &NormalFamily
    }
    fn p(&self) -> &WideFamily {
        &WideFamily
    }
    fn same_family(&self) -> bool {
        true // Wide is a Normal: KL(q ‖ q) = 0 must hold
    }
    fn kl<T: Tape<f64, Dev>>(
        &self,
        q: Normal<Const<N>, f64, Dev, T>,
        p: Wide<Const<N>, T>,
    ) -> Result<PerExample<f64, Dev, T>> {
        q.kl_divergence(p)
    }
}

type Ppca = LinearGaussian<Const<3>, Const<2>, f64, Dev>;

/// pPCA's likelihood, a fixed Normal guide and the user's `Wide` prior.
struct Model(Ppca);

impl<T: Tape<f64, Dev> + 'static> LatentVariableModel<f64, Dev, T> for Model {
    type X = Const<3>;
    type Z = Const<2>;
    type Posterior = Normal<Const<2>, f64, Dev, T>;
    type Prior = Wide<Const<2>, T>;
    type Likelihood = <Ppca as LatentVariableModel<f64, Dev, T>>::Likelihood;

    fn guide(&self, x: Events<Const<3>, f64, Dev, T>) -> Result<Self::Posterior> {
        let n = x.shape().0;
        let dev = x.device().clone();
        let loc = dev.tensor_from_vec([0.4, -0.3].repeat(n), (n, Const::<2>));
        let log_scale = dev.tensor_from_vec([-0.5, 0.2].repeat(n), (n, Const::<2>));
        Normal::new(loc.put_tape(T::default()), log_scale.put_tape(T::default()))
    }
    fn prior(&self, batch: usize, device: &Dev) -> Result<Self::Prior> {
        let loc = device.zeros_like(&(batch, Const::<2>));
        let log_scale = device.tensor_from_vec([0.0, 0.7].repeat(batch), (batch, Const::<2>));
        Ok(Wide(Normal::new(
            loc.put_tape(T::default()),
            log_scale.put_tape(T::default()),
        )?))
    }
    fn likelihood(&self, z: Events<Const<2>, f64, Dev, T>) -> Result<Self::Likelihood> {
        LatentVariableModel::<f64, Dev, T>::likelihood(&self.0, z)
    }
}

#[test]
fn a_registered_closed_form_is_what_elbo_uses_and_what_the_kit_checks() {
    let dev = Dev::seed_from_u64(3);
    let w = [1.0, 0.0, 0.5, 2.0, 0.0, -1.0];
    let ppca: Ppca = LinearGaussian::new(&dev, (Const, Const), &w, &[0.0; 3], 0.5).unwrap();
    let model = Model(ppca);
    // The data on a freshly seeded device each time: the guide draws from x's device,
    // so two estimates see the same draws and differ only by their KL terms.
    let x = || {
        let d = Dev::seed_from_u64(9);
        d.tensor_from_vec([0.3, -1.0, 2.0].repeat(4), (4, Const::<3>))
    };
    let analytic = Elbo::new(1).unwrap().with_kl(KlEstimator::Analytic);
    let loss = |model: &Model| {
        let x = x();
        let terms = analytic
            .estimate(model, x.traced(Gradients::leaky()))
            .unwrap();
        to_f64_vec(&terms.loss())[0]
    };

    // Not registered: no closed form, so the analytic ELBO is refused.
    type Q<T> = Normal<Const<2>, f64, Dev, T>;
    type P<T> = Wide<Const<2>, T>;
    type Owned = OwnedTape<f64, Dev>;
    assert!(!is_registered::<Q<NoneTape>, P<NoneTape>>());
    assert!(analytic.estimate(&model, x()).is_err());

    // Registered (for evaluation and for training): Elbo's KL term is the user's
    // formula, here the Normal‖Normal KL.
    register_kl::<Const<2>, f64, Dev, NoneTape, Q<NoneTape>, P<NoneTape>>();
    register_kl::<Const<2>, f64, Dev, Owned, Q<Owned>, P<Owned>>();
    // ½ Σ_j (σ_q²/σ_p² + μ_q²/σ_p² − 1 − ln(σ_q²/σ_p²)) with ln σ_q = (−0.5, 0.2),
    // ln σ_p = (0, 0.7), μ_q = (0.4, −0.3), μ_p = 0.
    let expected: f64 = [(0.4f64, -0.5f64, 0.0f64), (-0.3, 0.2, 0.7)]
        .iter()
        .map(|&(m, lq, lp)| {
            let r = (2.0 * (lq - lp)).exp();
            0.5 * (r + m * m / (2.0 * lp).exp() - 1.0 - r.ln())
        })
        .sum();
    let kl_terms = |model: &Model| to_f64_vec(&analytic.estimate(model, x()).unwrap().kl);
    for kl in kl_terms(&model) {
        assert!(
            (kl - expected).abs() < 1e-12,
            "registered KL {kl} vs {expected}"
        );
    }
    check_kl::<2, _>(&UserPair, &Config::default()).expect("the correct formula conforms");
    let right = loss(&model);

    // A wrong registered formula: the training loss moves by exactly one nat, and the
    // kit, which calls the same impl, fails.
    WRONG.store(true, Ordering::SeqCst);
    let wrong = loss(&model);
    assert!(
        (wrong - right - 1.0).abs() < 1e-9,
        "loss {right} -> {wrong}"
    );
    for kl in kl_terms(&model) {
        assert!(
            (kl - expected - 1.0).abs() < 1e-12,
            "wrong KL {kl} vs {expected} + 1"
        );
    }
    let failure = check_kl::<2, _>(&UserPair, &Config::default()).unwrap_err();
    assert!(failure.subject.contains("Wide"), "{failure}");
    WRONG.store(false, Ordering::SeqCst);
}
