//! The families added beyond Normal and Bernoulli, in f64: log_prob against statrs,
//! normalization by quadrature, sample moments, closed-form KL against Monte Carlo,
//! and the KL registry.

use dfdx::prelude::*;
use latent::distributions::{
    Categorical, ContinuousBernoulli, Distribution, Entropy, Laplace, MixtureOfDiagNormals, Normal,
    RelaxedOneHotCategorical, Reparameterizable,
};
use latent::ops::to_f64_vec;
use latent::{monte_carlo_kl, registered_kl, KlDivergence};
use proptest::prelude::*;
use statrs::distribution::{Continuous, Discrete};

/// The device the suite runs on: the CPU, or the GPU with `--features cuda`
/// (`scripts/cuda-check.sh`).
#[cfg(not(feature = "cuda"))]
type Dev = Cpu;
#[cfg(feature = "cuda")]
type Dev = dfdx::tensor::Cuda;

fn laplace(dev: &Dev, loc: &[f64], log_scale: &[f64]) -> Laplace<Const<1>, f64, Dev> {
    let n = loc.len();
    Laplace::new(
        dev.tensor_from_vec(loc.to_vec(), (n, Const::<1>)),
        dev.tensor_from_vec(log_scale.to_vec(), (n, Const::<1>)),
    )
    .unwrap()
}

fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

/// Composite Simpson's rule on `[a, b]` with `n` (even) intervals.
fn simpson(f: impl Fn(f64) -> f64, a: f64, b: f64, n: usize) -> f64 {
    let h = (b - a) / n as f64;
    let mut s = f(a) + f(b);
    for i in 1..n {
        s += if i % 2 == 1 { 4.0 } else { 2.0 } * f(a + i as f64 * h);
    }
    s * h / 3.0
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn laplace_log_prob_and_entropy_match_statrs(loc in -5.0f64..5.0, ls in -2.0f64..2.0, x in -10.0f64..10.0) {
        let dev = Dev::default();
        let lp = to_f64_vec(&laplace(&dev, &[loc], &[ls]).log_prob(dev.tensor_from_vec(vec![x], (1, Const::<1>))).unwrap())[0];
        let s = statrs::distribution::Laplace::new(loc, ls.exp()).unwrap();
        prop_assert!((lp - s.ln_pdf(x)).abs() < 1e-9 * lp.abs().max(1.0), "{lp} vs {}", s.ln_pdf(x));
        let h = to_f64_vec(&laplace(&dev, &[loc], &[ls]).entropy())[0];
        use statrs::statistics::Distribution as _;
        prop_assert!((h - s.entropy().unwrap()).abs() < 1e-9);
    }

    #[test]
    fn laplace_kl_closed_form_matches_monte_carlo(
        q in (-2.0f64..2.0, -1.0f64..1.0), p in (-2.0f64..2.0, -1.0f64..1.0), seed in 0u64..100,
    ) {
        let dev = Dev::seed_from_u64(seed);
        let closed = to_f64_vec(&laplace(&dev, &[q.0], &[q.1]).kl_divergence(laplace(&dev, &[p.0], &[p.1])).unwrap())[0];
        let n = 4000;
        let est = to_f64_vec(&monte_carlo_kl(laplace(&dev, &[q.0], &[q.1]).repeat(n), laplace(&dev, &[p.0], &[p.1]).repeat(n), 1).unwrap());
        let (m, se) = mean_se(&est);
        prop_assert!((m - closed).abs() < 5.0 * se + 1e-12, "closed {closed}, MC {m} ± {se}");
        prop_assert!(closed >= -1e-12);
        let self_kl = to_f64_vec(&laplace(&dev, &[q.0], &[q.1]).kl_divergence(laplace(&dev, &[q.0], &[q.1])).unwrap())[0];
        prop_assert!(self_kl.abs() < 1e-12);
    }

    #[test]
    fn categorical_log_prob_kl_and_pinsker(a in prop::collection::vec(-4.0f64..4.0, 4), b in prop::collection::vec(-4.0f64..4.0, 4), k in 0usize..4) {
        let dev = Dev::default();
        let cat = |l: &[f64]| -> Categorical<Const<4>, f64, Dev> { Categorical::new(dev.tensor_from_vec(l.to_vec(), (1, Const::<4>))) };
        let softmax = |l: &[f64]| { let m = l.iter().cloned().fold(f64::MIN, f64::max); let e: Vec<f64> = l.iter().map(|v| (v - m).exp()).collect(); let s: f64 = e.iter().sum(); e.into_iter().map(|v| v / s).collect::<Vec<f64>>() };
        let (pa, pb) = (softmax(&a), softmax(&b));
        let mut onehot = vec![0.0; 4];
        onehot[k] = 1.0;
        let lp = to_f64_vec(&cat(&a).log_prob(dev.tensor_from_vec(onehot, (1, Const::<4>))).unwrap())[0];
        let s = statrs::distribution::Categorical::new(&pa).unwrap();
        prop_assert!((lp - s.ln_pmf(k as u64)).abs() < 1e-9 * lp.abs().max(1.0));
        let kl = to_f64_vec(&cat(&a).kl_divergence(cat(&b)).unwrap())[0];
        let by_def: f64 = (0..4).map(|i| pa[i] * (pa[i] / pb[i]).ln()).sum();
        prop_assert!((kl - by_def).abs() < 1e-9 * by_def.abs().max(1.0));
        let tv: f64 = 0.5 * (0..4).map(|i| (pa[i] - pb[i]).abs()).sum::<f64>();
        prop_assert!(tv <= (kl / 2.0).sqrt() + 1e-12, "Pinsker: TV {tv}, KL {kl}");
        let h = to_f64_vec(&cat(&a).entropy())[0];
        prop_assert!((h + (0..4).map(|i| pa[i] * pa[i].ln()).sum::<f64>()).abs() < 1e-9);
    }
}

/// The continuous Bernoulli integrates to 1, including right at and near λ = ½ where
/// the Taylor branch is used, and its mean is `∫ x p(x) dx`.
#[test]
fn continuous_bernoulli_is_normalized_and_its_mean_is_right() {
    let dev = Dev::default();
    for logit in [0.0, 1e-7, -0.05, 0.0999, 0.1001, 0.7, -3.0, 12.0] {
        let density = |x: f64| {
            let d: ContinuousBernoulli<Const<1>, f64, Dev> =
                ContinuousBernoulli::new(dev.tensor_from_vec(vec![logit], (1, Const::<1>)));
            to_f64_vec(
                &d.log_prob(dev.tensor_from_vec(vec![x], (1, Const::<1>)))
                    .unwrap(),
            )[0]
            .exp()
        };
        let total = simpson(density, 0.0, 1.0, 2000);
        assert!((total - 1.0).abs() < 1e-8, "logit {logit}: ∫p = {total}");
        let mean_q = simpson(|x| x * density(x), 0.0, 1.0, 2000);
        let d: ContinuousBernoulli<Const<1>, f64, Dev> =
            ContinuousBernoulli::new(dev.tensor_from_vec(vec![logit], (1, Const::<1>)));
        let mean = to_f64_vec(&d.mean())[0];
        assert!(
            (mean - mean_q).abs() < 1e-7,
            "logit {logit}: mean {mean} vs {mean_q}"
        );
    }
}

#[test]
fn continuous_bernoulli_samples_have_the_right_mean_and_finite_gradients() {
    let dev = Dev::seed_from_u64(4);
    for logit in [0.0, 0.05, -2.0, 30.0] {
        let n = 20_000;
        let d: ContinuousBernoulli<Const<1>, f64, Dev> =
            ContinuousBernoulli::new(dev.tensor_from_vec(vec![logit; n], (n, Const::<1>)));
        let mean = to_f64_vec(&d.fork().mean())[0];
        let s = to_f64_vec(&d.sample());
        assert!(s.iter().all(|&v| (0.0..=1.0).contains(&v)));
        let (m, se) = mean_se(&s);
        assert!(
            (m - mean).abs() < 5.0 * se,
            "logit {logit}: sample mean {m} ± {se} vs {mean}"
        );
    }
    // Gradients of log_prob and rsample at λ = ½ exactly are finite.
    let l = dev.tensor_from_vec(vec![0.0, 0.03, 2.0], (3, Const::<1>));
    let d = ContinuousBernoulli::new(l.clone().traced(Gradients::leaky()));
    let x = dev
        .tensor_from_vec(vec![0.2, 0.9, 0.5], (3, Const::<1>))
        .put_tape(OwnedTape::default());
    let g = d.log_prob(x).unwrap().sum::<(), _>().backward();
    let gl = to_f64_vec(&g.get(&l));
    // d/dℓ log p = x − σ(ℓ) + d log C/dℓ; at ℓ = 0: x − ½ + 0.
    assert!((gl[0] - (0.2 - 0.5)).abs() < 1e-12, "{gl:?}");
    let d = ContinuousBernoulli::new(l.clone().traced(Gradients::leaky()));
    let g = d.rsample().sum::<(), _>().backward();
    assert!(to_f64_vec(&g.get(&l)).iter().all(|v| v.is_finite()));
}

/// A 1-D mixture integrates to 1; with one component it is that Normal.
#[test]
fn mixture_is_normalized_and_reduces_to_a_normal() {
    let dev = Dev::default();
    let mix = || -> MixtureOfDiagNormals<Const<3>, Const<1>, f64, Dev> {
        MixtureOfDiagNormals::new(
            dev.tensor_from_vec(vec![0.2, -1.0, 0.5], (1, Const::<3>)),
            dev.tensor_from_vec(vec![-2.0, 0.5, 3.0], (1, Const::<3>, Const::<1>)),
            dev.tensor_from_vec(vec![-0.5, 0.3, -1.0], (1, Const::<3>, Const::<1>)),
        )
        .unwrap()
    };
    let density = |x: f64| {
        to_f64_vec(
            &mix()
                .log_prob(dev.tensor_from_vec(vec![x], (1, Const::<1>)))
                .unwrap(),
        )[0]
        .exp()
    };
    let total = simpson(density, -15.0, 15.0, 6000);
    assert!((total - 1.0).abs() < 1e-8, "∫p = {total}");
    let mean_q = simpson(|x| x * density(x), -15.0, 15.0, 6000);
    assert!((to_f64_vec(&mix().mean())[0] - mean_q).abs() < 1e-8);

    let one: MixtureOfDiagNormals<Const<1>, Const<2>, f64, Dev> = MixtureOfDiagNormals::new(
        dev.tensor_from_vec(vec![0.7], (1, Const::<1>)),
        dev.tensor_from_vec(vec![0.1, -0.4], (1, Const::<1>, Const::<2>)),
        dev.tensor_from_vec(vec![0.2, -0.3], (1, Const::<1>, Const::<2>)),
    )
    .unwrap();
    let normal: Normal<Const<2>, f64, Dev> = Normal::new(
        dev.tensor_from_vec(vec![0.1, -0.4], (1, Const::<2>)),
        dev.tensor_from_vec(vec![0.2, -0.3], (1, Const::<2>)),
    )
    .unwrap();
    let x = || dev.tensor_from_vec(vec![0.8, 1.1], (1, Const::<2>));
    let a = to_f64_vec(&one.log_prob(x()).unwrap())[0];
    let b = to_f64_vec(&normal.log_prob(x()).unwrap())[0];
    assert!((a - b).abs() < 1e-12);
    // Samples: the mixture mean within 5 standard errors.
    let dev2 = Dev::seed_from_u64(2);
    let n = 20_000;
    let m: MixtureOfDiagNormals<Const<3>, Const<1>, f64, Dev> = MixtureOfDiagNormals::new(
        dev2.tensor_from_vec([0.2, -1.0, 0.5].repeat(n), (n, Const::<3>)),
        dev2.tensor_from_vec([-2.0, 0.5, 3.0].repeat(n), (n, Const::<3>, Const::<1>)),
        dev2.tensor_from_vec([-0.5, 0.3, -1.0].repeat(n), (n, Const::<3>, Const::<1>)),
    )
    .unwrap();
    let (sm, se) = mean_se(&to_f64_vec(&m.sample()));
    assert!((sm - mean_q).abs() < 5.0 * se, "{sm} ± {se} vs {mean_q}");
}

/// The Concrete density with K = 2 integrates to 1 over y₁ ∈ (0, 1); samples lie on
/// the simplex.
#[test]
fn relaxed_categorical_is_normalized_and_on_the_simplex() {
    let dev = Dev::seed_from_u64(6);
    for tau in [0.5, 1.0, 2.0] {
        let density = |y1: f64, y2: f64| {
            let d: RelaxedOneHotCategorical<Const<2>, f64, Dev> = RelaxedOneHotCategorical::new(
                dev.tensor_from_vec(vec![0.3, -0.4], (1, Const::<2>)),
                tau,
            )
            .unwrap();
            to_f64_vec(
                &d.log_prob(dev.tensor_from_vec(vec![y1, y2], (1, Const::<2>)))
                    .unwrap(),
            )[0]
            .exp()
        };
        // Substitute y₁ = σ(2t), y₂ = σ(−2t) (both accurate) to tame the endpoint
        // singularities; dy₁/dt = 2 y₁ y₂.
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let total = simpson(
            |t: f64| {
                let (a, b) = (sig(2.0 * t), sig(-2.0 * t));
                density(a, b) * 2.0 * a * b
            },
            -60.0,
            60.0,
            20000,
        );
        assert!((total - 1.0).abs() < 1e-6, "τ = {tau}: ∫p = {total}");
    }
    let d: RelaxedOneHotCategorical<Const<3>, f64, Dev> = RelaxedOneHotCategorical::new(
        dev.tensor_from_vec([0.3, -0.4, 1.0].repeat(5), (5, Const::<3>)),
        0.7,
    )
    .unwrap();
    for row in to_f64_vec(&d.rsample()).chunks(3) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12 && row.iter().all(|&v| v > 0.0));
    }
    let bad = RelaxedOneHotCategorical::<Const<3>, f64, Dev>::new(
        dev.tensor_from_vec(vec![0.0; 3], (1, Const::<3>)),
        0.0,
    );
    assert!(matches!(bad, Err(latent::Error::InvalidSetting { .. })));
}

#[test]
fn registry_finds_closed_forms_and_only_those() {
    let dev = Dev::default();
    let q = laplace(&dev, &[0.3], &[0.1]);
    let p = laplace(&dev, &[-0.2], &[0.4]);
    let via_registry = to_f64_vec(
        &registered_kl::<Const<1>, f64, Dev, NoneTape, _, _>(&q, &p)
            .unwrap()
            .unwrap(),
    )[0];
    assert_eq!(via_registry, to_f64_vec(&q.kl_divergence(p).unwrap())[0]);
    let n: Normal<Const<1>, f64, Dev> = Normal::from_host(&dev, Const, &[0.0], &[1.0]).unwrap();
    let mix: MixtureOfDiagNormals<Const<2>, Const<1>, f64, Dev> = MixtureOfDiagNormals::new(
        dev.zeros_like(&(1, Const::<2>)),
        dev.zeros_like(&(1, Const::<2>, Const::<1>)),
        dev.zeros_like(&(1, Const::<2>, Const::<1>)),
    )
    .unwrap();
    assert!(registered_kl::<Const<1>, f64, Dev, NoneTape, _, _>(&n, &mix).is_none());
    assert!(matches!(
        Categorical::<Const<2>, f64, Dev>::from_probs(&dev, Const, &[0.5, 0.6]),
        Err(latent::Error::InvalidSetting { .. })
    ));
    assert!(matches!(
        Laplace::<Const<1>, f64, Dev>::from_host(&dev, Const, &[0.0], &[-1.0]),
        Err(latent::Error::InvalidSetting { .. })
    ));
}
