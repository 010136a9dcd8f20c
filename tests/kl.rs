//! KL identities: the closed forms against Monte Carlo, KL(p‖p) = 0, KL ≥ 0, in f64.

use dfdx::prelude::*;
use latent::distributions::{Bernoulli, Distribution, Normal, StandardNormal};
use latent::ops::to_f64_vec;
use latent::{monte_carlo_kl, KlDivergence};
use proptest::prelude::*;

/// The device the suite runs on: the CPU, or the GPU with `--features cuda`
/// (`scripts/cuda-check.sh`).
#[cfg(not(feature = "cuda"))]
type Dev = Cpu;
#[cfg(feature = "cuda")]
type Dev = dfdx::tensor::Cuda;

fn normal<const N: usize>(dev: &Dev, loc: &[f64], log_scale: &[f64]) -> Normal<Const<N>, f64, Dev> {
    let b = loc.len() / N;
    Normal::new(
        dev.tensor_from_vec(loc.to_vec(), (b, Const::<N>)),
        dev.tensor_from_vec(log_scale.to_vec(), (b, Const::<N>)),
    )
    .unwrap()
}

/// Mean and standard error of single-sample Monte Carlo KL estimates: `q` repeated `n`
/// times as a batch, one sample each.
fn mc_mean_se(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn normal_kl_closed_form_matches_monte_carlo(
        q_loc in prop::collection::vec(-2.0f64..2.0, 2),
        q_ls in prop::collection::vec(-1.0f64..1.0, 2),
        p_loc in prop::collection::vec(-2.0f64..2.0, 2),
        p_ls in prop::collection::vec(-1.0f64..1.0, 2),
        seed in 0u64..1000,
    ) {
        let dev = Dev::seed_from_u64(seed);
        let closed = to_f64_vec(&normal::<2>(&dev, &q_loc, &q_ls)
            .kl_divergence(normal::<2>(&dev, &p_loc, &p_ls)).unwrap())[0];
        let n = 4000;
        let q = normal::<2>(&dev, &q_loc, &q_ls).repeat(n);
        let p = normal::<2>(&dev, &p_loc, &p_ls).repeat(n);
        let est = to_f64_vec(&monte_carlo_kl(q, p, 1).unwrap());
        let (mean, se) = mc_mean_se(&est);
        prop_assert!((mean - closed).abs() < 5.0 * se + 1e-12, "closed {closed}, MC {mean} ± {se}");
    }

    #[test]
    fn standard_normal_fast_path_equals_general_form(
        loc in prop::collection::vec(-3.0f64..3.0, 3),
        ls in prop::collection::vec(-2.0f64..2.0, 3),
    ) {
        let dev = Dev::default();
        let fast = to_f64_vec(&normal::<3>(&dev, &loc, &ls)
            .kl_divergence(StandardNormal::new(1, Const, &dev)).unwrap())[0];
        let general = to_f64_vec(&normal::<3>(&dev, &loc, &ls)
            .kl_divergence(normal::<3>(&dev, &[0.0; 3], &[0.0; 3])).unwrap())[0];
        // Closed form by hand: Σ ½(σ² + μ² − 1) − log σ.
        let by_hand: f64 = (0..3).map(|i| 0.5 * ((2.0 * ls[i]).exp() + loc[i] * loc[i] - 1.0) - ls[i]).sum();
        prop_assert!((fast - by_hand).abs() < 1e-10 * by_hand.abs().max(1.0));
        prop_assert!((general - by_hand).abs() < 1e-10 * by_hand.abs().max(1.0));
    }

    #[test]
    fn normal_kl_of_itself_is_zero_and_kl_is_nonnegative(
        a_loc in prop::collection::vec(-5.0f64..5.0, 3),
        a_ls in prop::collection::vec(-3.0f64..3.0, 3),
        b_loc in prop::collection::vec(-5.0f64..5.0, 3),
        b_ls in prop::collection::vec(-3.0f64..3.0, 3),
    ) {
        let dev = Dev::default();
        let self_kl = to_f64_vec(&normal::<3>(&dev, &a_loc, &a_ls)
            .kl_divergence(normal::<3>(&dev, &a_loc, &a_ls)).unwrap())[0];
        prop_assert!(self_kl.abs() < 1e-12, "KL(p‖p) = {self_kl}");
        let kl = to_f64_vec(&normal::<3>(&dev, &a_loc, &a_ls)
            .kl_divergence(normal::<3>(&dev, &b_loc, &b_ls)).unwrap())[0];
        prop_assert!(kl >= -1e-12, "KL = {kl}");
    }

    #[test]
    fn bernoulli_kl_matches_definition(
        a in prop::collection::vec(-6.0f64..6.0, 2),
        b in prop::collection::vec(-6.0f64..6.0, 2),
    ) {
        let dev = Dev::default();
        let q: Bernoulli<Const<2>, f64, Dev> = Bernoulli::new(dev.tensor_from_vec(a.clone(), (1, Const::<2>)));
        let p: Bernoulli<Const<2>, f64, Dev> = Bernoulli::new(dev.tensor_from_vec(b.clone(), (1, Const::<2>)));
        let kl = to_f64_vec(&q.kl_divergence(p).unwrap())[0];
        let sig = |l: f64| 1.0 / (1.0 + (-l).exp());
        let by_def: f64 = (0..2).map(|i| {
            let (pa, pb) = (sig(a[i]), sig(b[i]));
            pa * (pa / pb).ln() + (1.0 - pa) * ((1.0 - pa) / (1.0 - pb)).ln()
        }).sum();
        prop_assert!((kl - by_def).abs() < 1e-9 * by_def.abs().max(1.0), "{kl} vs {by_def}");
        prop_assert!(kl >= -1e-12);
    }
}

#[test]
fn kl_with_different_batch_sizes_is_a_typed_error() {
    let dev = Dev::default();
    let err = normal::<1>(&dev, &[0.0, 1.0], &[0.0, 0.0])
        .kl_divergence(normal::<1>(&dev, &[0.0], &[0.0]))
        .err();
    assert!(
        matches!(err, Some(latent::Error::ShapeMismatch { .. })),
        "{err:?}"
    );
    let err = monte_carlo_kl(
        normal::<1>(&dev, &[0.0], &[0.0]),
        normal::<1>(&dev, &[0.0], &[0.0]),
        0,
    )
    .err();
    assert!(
        matches!(err, Some(latent::Error::InvalidSetting { .. })),
        "{err:?}"
    );
}
