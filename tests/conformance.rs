//! The conformance kit on this crate's families and closed-form KLs, and on a family
//! and a KL pair a user writes: the Logistic distribution, and `KL(Laplace ‖ Normal)`.

use dfdx::prelude::*;
use latent::conformance::families::{
    BernoulliFamily, BuiltinKl, CategoricalFamily, ContinuousBernoulliFamily, LaplaceFamily,
    MixtureFamily, NormalFamily, RelaxedFamily, StandardNormalFamily,
};
use latent::conformance::{
    block, check_family, check_kl, check_kl_additivity, require_finite, Config, Dev, Family,
    KlPair, Support, Theta,
};
use latent::distributions::{Distribution, Laplace, Normal, Reparameterizable};
use latent::ops::{cst, repeat_rows, Events, PerExample};
use latent::Result;
use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;

fn cfg() -> Config {
    Config::default()
}

#[test]
fn normal_and_laplace_conform() {
    check_family::<1, _>(&NormalFamily, &cfg()).unwrap();
    check_family::<3, _>(&NormalFamily, &cfg()).unwrap();
    check_family::<1, _>(&LaplaceFamily, &cfg()).unwrap();
    check_family::<2, _>(&LaplaceFamily, &cfg()).unwrap();
    check_family::<2, _>(&StandardNormalFamily, &cfg()).unwrap();
}

#[test]
fn discrete_families_conform() {
    check_family::<1, _>(&BernoulliFamily, &cfg()).unwrap();
    check_family::<3, _>(&BernoulliFamily, &cfg()).unwrap();
    check_family::<4, _>(&CategoricalFamily, &cfg()).unwrap();
}

#[test]
fn continuous_bernoulli_conforms() {
    check_family::<1, _>(&ContinuousBernoulliFamily, &cfg()).unwrap();
    check_family::<2, _>(&ContinuousBernoulliFamily, &cfg()).unwrap();
}

#[test]
fn relaxed_and_mixture_conform() {
    for temperature in [0.5, 1.0, 2.0] {
        check_family::<3, _>(&RelaxedFamily { temperature }, &cfg()).unwrap();
    }
    check_family::<1, _>(&MixtureFamily::<3>, &cfg()).unwrap();
    check_family::<2, _>(&MixtureFamily::<2>, &cfg()).unwrap();
}

#[test]
fn builtin_closed_form_kls_conform() {
    let c = cfg();
    check_kl::<2, _>(
        &BuiltinKl {
            q: NormalFamily,
            p: NormalFamily,
        },
        &c,
    )
    .unwrap();
    check_kl::<2, _>(
        &BuiltinKl {
            q: NormalFamily,
            p: StandardNormalFamily,
        },
        &c,
    )
    .unwrap();
    check_kl::<2, _>(
        &BuiltinKl {
            q: LaplaceFamily,
            p: LaplaceFamily,
        },
        &c,
    )
    .unwrap();
    check_kl::<3, _>(
        &BuiltinKl {
            q: BernoulliFamily,
            p: BernoulliFamily,
        },
        &c,
    )
    .unwrap();
    check_kl::<4, _>(
        &BuiltinKl {
            q: CategoricalFamily,
            p: CategoricalFamily,
        },
        &c,
    )
    .unwrap();
    check_kl_additivity::<3, _>(
        &BuiltinKl {
            q: NormalFamily,
            p: NormalFamily,
        },
        &c,
    )
    .unwrap();
    check_kl_additivity::<3, _>(
        &BuiltinKl {
            q: NormalFamily,
            p: StandardNormalFamily,
        },
        &c,
    )
    .unwrap();
    check_kl_additivity::<3, _>(
        &BuiltinKl {
            q: LaplaceFamily,
            p: LaplaceFamily,
        },
        &c,
    )
    .unwrap();
    check_kl_additivity::<3, _>(
        &BuiltinKl {
            q: BernoulliFamily,
            p: BernoulliFamily,
        },
        &c,
    )
    .unwrap();
}

/// The kit catches a wrong family: a Normal whose log-density forgets `−log σ`.
#[test]
fn the_kit_rejects_a_broken_family() {
    struct Broken;
    impl Family<1> for Broken {
        type Dist<T: Tape<f64, Dev>> = Normal<Const<1>, f64, Dev, T>;
        fn name(&self) -> String {
            "BrokenNormal".into()
        }
        fn num_params(&self) -> usize {
            2
        }
        fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
            <NormalFamily as Family<1>>::parameters(&NormalFamily)
        }
        fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
            <NormalFamily as Family<1>>::build(&NormalFamily, theta)
        }
        fn reference_log_prob(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
            let s = theta[1].exp();
            Some(-0.5 * ((x[0] - theta[0]) / s).powi(2) - 0.5 * (2.0 * std::f64::consts::PI).ln())
        }
    }
    let failure = check_family::<1, _>(&Broken, &cfg()).unwrap_err();
    assert!(failure.property.contains("reference"), "{failure}");
}

// ---------------------------------------------------------------------------------
// A user's own family: Logistic(μ, s), written with the public traits only.
// ---------------------------------------------------------------------------------

/// `p(x) = e^{−u} / (s (1 + e^{−u})²)`, `u = (x − μ)/s`; mean μ, variance s²π²/3,
/// entropy `log s + 2`; pathwise sample `μ + s (log ε − log(1 − ε))`, `ε ~ U(0, 1)`.
struct Logistic<const N: usize, T> {
    loc: Events<Const<N>, f64, Dev, T>,
    log_scale: Events<Const<N>, f64, Dev, T>,
}

impl<const N: usize, T: Tape<f64, Dev>> Distribution<Const<N>, f64, Dev> for Logistic<N, T> {
    type Tape = T;
    fn batch_size(&self) -> usize {
        self.loc.shape().0
    }
    fn device(&self) -> Dev {
        self.loc.device().clone()
    }
    fn log_prob(self, x: Events<Const<N>, f64, Dev, T>) -> Result<PerExample<f64, Dev, T>> {
        // log p = −u − log s − 2 softplus(−u); softplus(v) = relu(v) + log1p(e^{−|v|}).
        let ls = self.log_scale.with_empty_tape();
        let u = (x - self.loc) * (-self.log_scale).exp();
        let v = -u.with_empty_tape();
        let softplus = v.with_empty_tape().relu() + ((-(v.abs())).exp() + 1.0).ln();
        Ok((-u - ls - softplus * 2.0).sum::<(usize,), Axis<1>>())
    }
    fn sample(&self) -> Events<Const<N>, f64, Dev> {
        Logistic {
            loc: self.loc.retaped::<NoneTape>(),
            log_scale: self.log_scale.retaped::<NoneTape>(),
        }
        .rsample()
    }
    fn mean(self) -> Events<Const<N>, f64, Dev, T> {
        self.loc
    }
    fn fork(&self) -> Self {
        Logistic {
            loc: self.loc.with_empty_tape(),
            log_scale: self.log_scale.with_empty_tape(),
        }
    }
    fn repeat(self, n: usize) -> Self {
        Logistic {
            loc: repeat_rows(self.loc, n),
            log_scale: repeat_rows(self.log_scale, n),
        }
    }

    fn into_tape(self) -> T {
        let (_, a) = self.loc.split_tape();
        let (_, b) = self.log_scale.split_tape();
        a.merge(b)
    }
}

impl<const N: usize, T: Tape<f64, Dev>> Reparameterizable<Const<N>, f64, Dev> for Logistic<N, T> {
    fn rsample(self) -> Events<Const<N>, f64, Dev, T> {
        let dev = self.loc.device().clone();
        let e: Events<Const<N>, f64, Dev> = dev.sample_uniform_like(self.loc.shape());
        let e = e.clamp(1e-12, 1.0 - 1e-12);
        let noise = e.clone().ln() - (-e + 1.0).ln();
        self.loc + self.log_scale.exp() * noise
    }
}

/// The kit's description of the Logistic family, θ = `[μ (N); log s (N)]`.
struct LogisticFamily;

impl<const N: usize> Family<N> for LogisticFamily {
    type Dist<T: Tape<f64, Dev>> = Logistic<N, T>;
    fn name(&self) -> String {
        format!("Logistic<{N}>")
    }
    fn num_params(&self) -> usize {
        2 * N
    }
    fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
        (
            prop::collection::vec(-3.0f64..3.0, N),
            prop::collection::vec(-1.0f64..1.0, N),
        )
            .prop_map(|(a, b)| [a, b].concat())
            .boxed()
    }
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Dist<T>> {
        require_finite(&theta)?;
        let log_scale = block::<N, T>(theta.with_empty_tape(), 1)?;
        Ok(Logistic {
            loc: block::<N, T>(theta, 0)?,
            log_scale,
        })
    }
    fn invalid_parameters(&self) -> Vec<Vec<f64>> {
        vec![[vec![f64::NAN; N], vec![0.0; N]].concat(), vec![0.0; 1]]
    }
    fn reference_log_prob(&self, theta: &[f64], x: &[f64]) -> Option<f64> {
        // Written the textbook way, differently from the tensor code.
        Some(
            (0..N)
                .map(|j| {
                    let s = theta[N + j].exp();
                    let e = (-(x[j] - theta[j]) / s).exp();
                    (e / (s * (1.0 + e).powi(2))).ln()
                })
                .sum(),
        )
    }
    fn support(&self, theta: &[f64]) -> Support {
        if N != 1 {
            return Support::Unchecked;
        }
        let s = theta[N].exp();
        Support::Interval(theta[0] - 60.0 * s, theta[0] + 60.0 * s)
    }
    fn variance(&self, d: Self::Dist<NoneTape>) -> Option<Events<Const<N>, f64, Dev>> {
        Some((d.log_scale * 2.0).exp() * (std::f64::consts::PI.powi(2) / 3.0))
    }
    fn entropy(&self, d: Self::Dist<NoneTape>) -> Option<PerExample<f64, Dev>> {
        Some((d.log_scale + 2.0).sum::<(usize,), Axis<1>>())
    }
    fn rsample<T: Tape<f64, Dev>>(
        &self,
        d: Self::Dist<T>,
    ) -> Option<Events<Const<N>, f64, Dev, T>> {
        Some(d.rsample())
    }
    fn affine(&self, theta: &[f64], a: f64, b: f64) -> Option<Vec<f64>> {
        // The Logistic is symmetric, so a < 0 is a location-scale map too.
        let loc = theta[..N].iter().map(|m| a * m + b);
        Some(
            loc.chain(theta[N..].iter().map(|l| l + a.abs().ln()))
                .collect(),
        )
    }
}

#[test]
fn a_user_defined_logistic_family_conforms() {
    check_family::<1, _>(&LogisticFamily, &cfg()).unwrap();
    check_family::<2, _>(&LogisticFamily, &cfg()).unwrap();
}

/// A user's own closed form: `KL(Laplace(μ₁, b) ‖ Normal(μ₂, σ))
/// = −log(2b) − 1 + ½ log(2πσ²) + (2b² + (μ₁ − μ₂)²) / (2σ²)` per dimension
/// (`E_q[(x − μ₂)²] = 2b² + (μ₁ − μ₂)²`).
struct LaplaceNormalKl;

impl<const N: usize> KlPair<N> for LaplaceNormalKl {
    type Q = LaplaceFamily;
    type P = NormalFamily;
    fn q(&self) -> &LaplaceFamily {
        &LaplaceFamily
    }
    fn p(&self) -> &NormalFamily {
        &NormalFamily
    }
    fn same_family(&self) -> bool {
        false
    }
    fn kl<T: Tape<f64, Dev>>(
        &self,
        q: Laplace<Const<N>, f64, Dev, T>,
        p: Normal<Const<N>, f64, Dev, T>,
    ) -> Result<PerExample<f64, Dev, T>> {
        let (lb, ls) = (q.log_scale.with_empty_tape(), p.log_scale.with_empty_tape());
        let second = (q.log_scale * 2.0).exp() * 2.0 + (q.loc - p.loc).square();
        let kl = -lb - (2f64.ln() + 1.0)
            + ls
            + cst::<f64>(0.5 * (2.0 * std::f64::consts::PI).ln())
            + second * (p.log_scale * -2.0).exp() * 0.5;
        Ok(kl.sum::<(usize,), Axis<1>>())
    }
}

#[test]
fn a_user_defined_kl_pair_conforms() {
    check_kl::<2, _>(&LaplaceNormalKl, &cfg()).unwrap();
    check_kl_additivity::<2, _>(&LaplaceNormalKl, &cfg()).unwrap();
}

/// The kit catches a wrong closed form: `KL(Laplace ‖ Normal)` with the `2b²` term
/// forgotten fails the Monte Carlo comparison.
#[test]
fn the_kit_rejects_a_wrong_kl() {
    struct Wrong;
    impl KlPair<1> for Wrong {
        type Q = LaplaceFamily;
        type P = NormalFamily;
        fn q(&self) -> &LaplaceFamily {
            &LaplaceFamily
        }
        fn p(&self) -> &NormalFamily {
            &NormalFamily
        }
        fn same_family(&self) -> bool {
            false
        }
        fn kl<T: Tape<f64, Dev>>(
            &self,
            q: Laplace<Const<1>, f64, Dev, T>,
            p: Normal<Const<1>, f64, Dev, T>,
        ) -> Result<PerExample<f64, Dev, T>> {
            let ls = p.log_scale.with_empty_tape();
            let kl = -q.log_scale - (2f64.ln() + 1.0)
                + ls
                + cst::<f64>(0.5 * (2.0 * std::f64::consts::PI).ln())
                + (q.loc - p.loc).square() * (p.log_scale * -2.0).exp() * 0.5;
            Ok(kl.sum::<(usize,), Axis<1>>())
        }
    }
    let failure = check_kl::<1, _>(&Wrong, &cfg()).unwrap_err();
    assert!(
        failure.property.contains("KL ≥ 0") || failure.property.contains("Monte Carlo"),
        "{failure}"
    );
}

/// An empty mixture and a non-positive temperature are typed errors.
#[test]
fn degenerate_settings_are_typed_errors() {
    use latent::distributions::{MixtureOfDiagNormals, RelaxedOneHotCategorical};
    let dev = Dev::default();
    let empty = MixtureOfDiagNormals::<Const<0>, Const<1>, f64, Dev>::new(
        dev.zeros_like(&(1, Const::<0>)),
        dev.zeros_like(&(1, Const::<0>, Const::<1>)),
        dev.zeros_like(&(1, Const::<0>, Const::<1>)),
    );
    assert!(matches!(empty, Err(latent::Error::InvalidSetting { .. })));
    for t in [0.0, -1.0, f64::NAN] {
        let r = RelaxedOneHotCategorical::<Const<3>, f64, Dev>::new(
            dev.zeros_like(&(1, Const::<3>)),
            t,
        );
        assert!(
            matches!(r, Err(latent::Error::InvalidSetting { .. })),
            "τ = {t}"
        );
    }
}

#[test]
fn planar_and_iaf_bijectors_conform() {
    use latent::conformance::check_bijector;
    use latent::conformance::flows::{IafFamily, PlanarFamily};
    check_bijector::<1, _>(&PlanarFamily, &cfg()).unwrap();
    check_bijector::<3, _>(&PlanarFamily, &cfg()).unwrap();
    check_bijector::<1, _>(&IafFamily::<1>::new(1, false).unwrap(), &cfg()).unwrap();
    check_bijector::<3, _>(&IafFamily::<3>::new(2, false).unwrap(), &cfg()).unwrap();
    check_bijector::<4, _>(&IafFamily::<4>::new(3, true).unwrap(), &cfg()).unwrap();
}

/// The kit's Jacobian check can fail: a bijector whose `log |det|` is off by a constant
/// (a planar step that forgets the `+1` of `1 + ûᵀψ` would be off by more) is caught.
#[test]
fn bijector_check_catches_a_wrong_log_det() {
    use latent::conformance::flows::PlanarFamily;
    use latent::conformance::{check_bijector, BijectorFamily};
    use latent::flows::{Bijector, Planar};

    struct Shifted;
    struct Off<T>(Planar<Const<2>, f64, Dev, T>);
    impl<T: Tape<f64, Dev>> Bijector<Const<2>, f64, Dev> for Off<T> {
        type Tape = T;
        fn batch_size(&self) -> usize {
            self.0.batch_size()
        }
        fn forward(
            self,
            z: Events<Const<2>, f64, Dev, T>,
        ) -> (Events<Const<2>, f64, Dev, T>, PerExample<f64, Dev, T>) {
            let (y, ld) = self.0.forward(z);
            (y, ld + 0.01)
        }
        fn fork(&self) -> Self {
            Off(self.0.fork())
        }
        fn repeat(self, n: usize) -> Self {
            Off(self.0.repeat(n))
        }
        fn into_tape(self) -> T {
            self.0.into_tape()
        }
    }
    impl BijectorFamily<2> for Shifted {
        type Bij<T: Tape<f64, Dev>> = Off<T>;
        fn name(&self) -> String {
            "planar with log|det| + 0.01".into()
        }
        fn parameters(&self) -> BoxedStrategy<Vec<f64>> {
            <PlanarFamily as BijectorFamily<2>>::parameters(&PlanarFamily)
        }
        fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Off<T>> {
            Ok(Off(<PlanarFamily as BijectorFamily<2>>::build(
                &PlanarFamily,
                theta,
            )?))
        }
        fn has_inverse(&self) -> bool {
            false
        }
    }
    let failure = check_bijector::<2, _>(&Shifted, &cfg()).unwrap_err();
    assert!(failure.property.contains("numerical Jacobian"), "{failure}");
}
