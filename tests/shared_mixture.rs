//! `SharedMixtureOfDiagNormals` (the density by two matrix products) against
//! `MixtureOfDiagNormals::shared` (the parameters copied per example): the same
//! log-density and the same gradients for every parameter and the point; its draws
//! have the mixture's mean and variance.

use dfdx::prelude::*;
use latent::distributions::{MixtureOfDiagNormals, SharedMixtureOfDiagNormals};
use latent::ops::to_f64_vec;
use latent::Distribution;

#[cfg(not(feature = "cuda"))]
type Dev = Cpu;
#[cfg(feature = "cuda")]
type Dev = dfdx::tensor::Cuda;

const K: usize = 5;
const N: usize = 3;
const B: usize = 4;

#[allow(clippy::type_complexity)]
fn parameters(
    dev: &Dev,
) -> (
    Tensor<(usize,), f64, Dev>,
    Tensor<(usize, usize), f64, Dev>,
    Tensor<(usize, usize), f64, Dev>,
    Tensor<(usize, usize), f64, Dev>,
) {
    let f = |i: usize, a: f64, b: f64| ((i * 7919 + 13) % 101) as f64 / 100.0 * (b - a) + a;
    let logits = dev.tensor_from_vec((0..K).map(|i| f(i, -1.0, 1.0)).collect(), (K,));
    let loc = dev.tensor_from_vec((0..K * N).map(|i| f(i + 17, -2.0, 2.0)).collect(), (K, N));
    // Scales from e^{−2.3} to e^{0.7}: precisions up to 100.
    let ls = dev.tensor_from_vec((0..K * N).map(|i| f(i + 41, -2.3, 0.7)).collect(), (K, N));
    let x = dev.tensor_from_vec((0..B * N).map(|i| f(i + 77, -3.0, 3.0)).collect(), (B, N));
    (logits, loc, ls, x)
}

#[test]
fn density_and_gradients_equal_the_broadcast_mixture() {
    let dev = Dev::seed_from_u64(1);
    let (logits, loc, ls, x) = parameters(&dev);
    // Values, no tape.
    let ours = SharedMixtureOfDiagNormals::new(B, logits.clone(), loc.clone(), ls.clone())
        .unwrap()
        .log_prob(x.clone())
        .unwrap();
    let theirs = MixtureOfDiagNormals::shared(B, logits.clone(), loc.clone(), ls.clone())
        .unwrap()
        .log_prob(x.clone())
        .unwrap();
    for (a, b) in to_f64_vec(&ours).iter().zip(to_f64_vec(&theirs)) {
        assert!((a - b).abs() < 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
    }
    // Gradients of a weighted sum, through the parameters and the point.
    let weights = dev.tensor_from_vec(vec![1.0, -0.5, 2.0, 0.25], (B,));
    let grads = |shared: bool| {
        let xt = x.leaky_trace();
        let (l, m, s) = (
            logits.clone().put_tape(OwnedTape::default()),
            loc.clone().put_tape(OwnedTape::default()),
            ls.clone().put_tape(OwnedTape::default()),
        );
        let lp = if shared {
            SharedMixtureOfDiagNormals::new(B, l, m, s)
                .unwrap()
                .log_prob(xt)
                .unwrap()
        } else {
            MixtureOfDiagNormals::shared(B, l, m, s)
                .unwrap()
                .log_prob(xt)
                .unwrap()
        };
        (lp * weights.clone()).sum::<(), _>().backward()
    };
    let (g1, g2) = (grads(true), grads(false));
    for (name, a, b) in [
        ("x", g1.get(&x).as_vec(), g2.get(&x).as_vec()),
        ("logits", g1.get(&logits).as_vec(), g2.get(&logits).as_vec()),
        ("loc", g1.get(&loc).as_vec(), g2.get(&loc).as_vec()),
        ("log_scale", g1.get(&ls).as_vec(), g2.get(&ls).as_vec()),
    ] {
        assert!(a.iter().any(|v| v.abs() > 1e-6), "{name}: no gradient");
        for (i, (u, v)) in a.iter().zip(&b).enumerate() {
            assert!(
                (u - v).abs() < 1e-10 * (1.0 + v.abs()),
                "∂{name}[{i}]: {u} vs {v}"
            );
        }
    }
}

#[test]
fn draws_have_the_mixtures_mean_and_variance() {
    let dev = Dev::seed_from_u64(2);
    let (logits, loc, ls, _) = parameters(&dev);
    let draws = 40_000;
    let p =
        SharedMixtureOfDiagNormals::new(draws, logits.clone(), loc.clone(), ls.clone()).unwrap();
    let s = to_f64_vec(&p.sample());
    // The mixture's moments by hand.
    let (lg, mu, sd) = (to_f64_vec(&logits), to_f64_vec(&loc), to_f64_vec(&ls));
    let z: f64 = lg.iter().map(|v| v.exp()).sum();
    let w: Vec<f64> = lg.iter().map(|v| v.exp() / z).collect();
    for d in 0..N {
        let mean: f64 = (0..K).map(|k| w[k] * mu[k * N + d]).sum();
        let second: f64 = (0..K)
            .map(|k| w[k] * (mu[k * N + d].powi(2) + (2.0 * sd[k * N + d]).exp()))
            .sum();
        let var = second - mean * mean;
        let col: Vec<f64> = (0..draws).map(|i| s[i * N + d]).collect();
        let m = col.iter().sum::<f64>() / draws as f64;
        let v = col.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (draws - 1) as f64;
        assert!(
            (m - mean).abs() < 4.0 * (var / draws as f64).sqrt(),
            "mean {m} vs {mean}"
        );
        assert!((v - var).abs() < 0.05 * var, "variance {v} vs {var}");
    }
    // The mean method: Σ_k π_k μ_k for every example.
    let pm = to_f64_vec(
        &SharedMixtureOfDiagNormals::new(2, logits, loc, ls)
            .unwrap()
            .mean(),
    );
    for d in 0..N {
        let mean: f64 = (0..K).map(|k| w[k] * mu[k * N + d]).sum();
        assert!((pm[d] - mean).abs() < 1e-12 && (pm[N + d] - mean).abs() < 1e-12);
    }
}

#[test]
fn bad_shapes_are_refused() {
    let dev = Dev::seed_from_u64(3);
    let (logits, loc, ls, x) = parameters(&dev);
    let empty: Tensor<(usize,), f64, Dev> = dev.zeros_like(&(0,));
    let empty_loc: Tensor<(usize, usize), f64, Dev> = dev.zeros_like(&(0, N));
    assert!(SharedMixtureOfDiagNormals::new(B, empty, empty_loc.clone(), empty_loc).is_err());
    let wrong: Tensor<(usize,), f64, Dev> = dev.zeros_like(&(K + 1,));
    assert!(SharedMixtureOfDiagNormals::new(B, wrong, loc.clone(), ls.clone()).is_err());
    let p = SharedMixtureOfDiagNormals::new(B + 1, logits, loc, ls).unwrap();
    assert!(matches!(
        p.log_prob(x),
        Err(latent::Error::ShapeMismatch { .. })
    ));
}
