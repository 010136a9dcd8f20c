//! `log_prob`, `sample`, `mean` and `entropy` of the families against statrs and
//! closed forms, in f64.
#![allow(clippy::needless_range_loop)] // parallel arrays are indexed together

use dfdx::prelude::*;
use latent::distributions::{Bernoulli, Distribution, Entropy, Normal, StandardNormal};
use latent::ops::to_f64_vec;
use proptest::prelude::*;
use statrs::distribution::{Continuous, Discrete};

/// The device the suite runs on: the CPU, or the GPU with `--features cuda`
/// (`scripts/cuda-check.sh`).
#[cfg(not(feature = "cuda"))]
type Dev = Cpu;
#[cfg(feature = "cuda")]
type Dev = dfdx::tensor::Cuda;

fn normal(dev: &Dev, loc: &[f64], log_scale: &[f64]) -> Normal<Const<3>, f64, Dev> {
    let b = loc.len() / 3;
    Normal::new(
        dev.tensor_from_vec(loc.to_vec(), (b, Const::<3>)),
        dev.tensor_from_vec(log_scale.to_vec(), (b, Const::<3>)),
    )
    .unwrap()
}

fn rel_close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1.0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn normal_log_prob_matches_statrs(
        loc in prop::collection::vec(-5.0f64..5.0, 6),
        log_scale in prop::collection::vec(-3.0f64..2.0, 6),
        x in prop::collection::vec(-10.0f64..10.0, 6),
    ) {
        let dev = Dev::default();
        let lp = to_f64_vec(&normal(&dev, &loc, &log_scale)
            .log_prob(dev.tensor_from_vec(x.clone(), (2, Const::<3>))).unwrap());
        for b in 0..2 {
            let expected: f64 = (0..3).map(|i| {
                let k = 3 * b + i;
                statrs::distribution::Normal::new(loc[k], log_scale[k].exp()).unwrap().ln_pdf(x[k])
            }).sum();
            prop_assert!(rel_close(lp[b], expected, 1e-9), "{} vs {}", lp[b], expected);
        }
    }

    #[test]
    fn standard_normal_log_prob_matches_statrs(x in prop::collection::vec(-10.0f64..10.0, 6)) {
        let dev = Dev::default();
        let p: StandardNormal<Const<3>, f64, Dev> = StandardNormal::new(2, Const, &dev);
        let lp = to_f64_vec(&p.log_prob(dev.tensor_from_vec(x.clone(), (2, Const::<3>))).unwrap());
        let sn = statrs::distribution::Normal::new(0.0, 1.0).unwrap();
        for b in 0..2 {
            let expected: f64 = (0..3).map(|i| sn.ln_pdf(x[3 * b + i])).sum();
            prop_assert!(rel_close(lp[b], expected, 1e-9));
        }
    }

    #[test]
    fn bernoulli_log_prob_matches_statrs(
        logits in prop::collection::vec(-30.0f64..30.0, 6),
        bits in prop::collection::vec(any::<bool>(), 6),
    ) {
        let dev = Dev::default();
        let x: Vec<f64> = bits.iter().map(|&b| b as u8 as f64).collect();
        let d: Bernoulli<Const<3>, f64, Dev> = Bernoulli::new(dev.tensor_from_vec(logits.clone(), (2, Const::<3>)));
        let lp = to_f64_vec(&d.log_prob(dev.tensor_from_vec(x, (2, Const::<3>))).unwrap());
        for b in 0..2 {
            let expected: f64 = (0..3).map(|i| {
                let k = 3 * b + i;
                let p = 1.0 / (1.0 + (-logits[k]).exp());
                // statrs works with p and 1 − p, which lose relative precision when p is
                // within ~1e-7 of 0 or 1; compare with the exact log-space form there.
                if logits[k].abs() < 15.0 {
                    statrs::distribution::Bernoulli::new(p).unwrap().ln_pmf(bits[k] as u64)
                } else if bits[k] {
                    -(-logits[k]).exp().ln_1p()
                } else {
                    -logits[k].exp().ln_1p()
                }
            }).sum();
            prop_assert!(rel_close(lp[b], expected, 1e-9), "{} vs {}", lp[b], expected);
        }
    }

    #[test]
    fn normal_entropy_matches_statrs(log_scale in prop::collection::vec(-3.0f64..2.0, 3)) {
        let dev = Dev::default();
        let h = to_f64_vec(&normal(&dev, &[0.5, -1.0, 2.0], &log_scale).entropy())[0];
        let expected: f64 = log_scale.iter().map(|ls| {
            use statrs::statistics::Distribution as _;
            statrs::distribution::Normal::new(0.0, ls.exp()).unwrap().entropy().unwrap()
        }).sum();
        prop_assert!(rel_close(h, expected, 1e-9), "{h} vs {expected}");
    }

    #[test]
    fn bernoulli_entropy_matches_statrs(logits in prop::collection::vec(-8.0f64..8.0, 3)) {
        let dev = Dev::default();
        let d: Bernoulli<Const<3>, f64, Dev> = Bernoulli::new(dev.tensor_from_vec(logits.clone(), (1, Const::<3>)));
        let h = to_f64_vec(&d.entropy())[0];
        let expected: f64 = logits.iter().map(|l| {
            use statrs::statistics::Distribution as _;
            statrs::distribution::Bernoulli::new(1.0 / (1.0 + (-l).exp())).unwrap().entropy().unwrap()
        }).sum();
        prop_assert!(rel_close(h, expected, 1e-9), "{h} vs {expected}");
    }
}

/// Sample mean and variance within 5 standard errors of the closed forms.
#[test]
fn normal_samples_have_the_right_moments() {
    let dev = Dev::seed_from_u64(7);
    let (mu, sigma) = (1.5, 0.7);
    let n = 20_000;
    let d = Normal::<Const<1>, f64, Dev>::from_host(&dev, Const, &vec![mu; n], &vec![sigma; n])
        .unwrap();
    let s = to_f64_vec(&d.sample());
    let mean = s.iter().sum::<f64>() / n as f64;
    let var = s.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    assert!(
        (mean - mu).abs() < 5.0 * sigma / (n as f64).sqrt(),
        "mean {mean}"
    );
    // Var of the sample variance of a Normal: 2σ⁴/(n−1).
    let se_var = (2.0 * sigma.powi(4) / (n - 1) as f64).sqrt();
    assert!((var - sigma * sigma).abs() < 5.0 * se_var, "var {var}");
}

#[test]
fn bernoulli_samples_have_the_right_mean() {
    let dev = Dev::seed_from_u64(8);
    let n = 20_000;
    let logit = 0.8f64;
    let p = 1.0 / (1.0 + (-logit).exp());
    let d: Bernoulli<Const<1>, f64, Dev> =
        Bernoulli::new(dev.tensor_from_vec(vec![logit; n], (n, Const::<1>)));
    let s = to_f64_vec(&d.sample());
    assert!(s.iter().all(|&v| v == 0.0 || v == 1.0));
    let mean = s.iter().sum::<f64>() / n as f64;
    assert!(
        (mean - p).abs() < 5.0 * (p * (1.0 - p) / n as f64).sqrt(),
        "mean {mean} vs {p}"
    );
    let m = to_f64_vec(&d.mean());
    assert!((m[0] - p).abs() < 1e-12);
}

#[test]
fn invalid_parameters_are_typed_errors() {
    let dev = Dev::default();
    for scale in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = Normal::<Const<1>, f64, Dev>::from_host(&dev, Const, &[0.0], &[scale]).err();
        assert!(
            matches!(err, Some(latent::Error::InvalidSetting { .. })),
            "scale {scale}: {err:?}"
        );
    }
    let err = Normal::<Const<1>, f64, Dev>::from_host(&dev, Const, &[f64::NAN], &[1.0]).err();
    assert!(matches!(err, Some(latent::Error::InvalidSetting { .. })));
    let err =
        Normal::<Const<2>, f64, Dev>::from_host(&dev, Const, &[0.0, 1.0, 2.0], &[1.0, 1.0, 1.0])
            .err();
    // Three values do not make rows of two: the error carries the numbers.
    assert!(matches!(
        err,
        Some(latent::Error::NotAMultiple {
            multiple_of: 2,
            found: 3,
            ..
        })
    ));
    // Batch sizes that do not match.
    let d = normal(&dev, &[0.0; 6], &[0.0; 6]);
    let err = d.log_prob(dev.zeros_like(&(3, Const::<3>))).err();
    assert!(
        matches!(err, Some(latent::Error::ShapeMismatch { .. })),
        "{err:?}"
    );
}
