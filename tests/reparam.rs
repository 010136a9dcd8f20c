//! Pathwise gradients of the implicitly reparameterized families against the closed-form
//! gradient of their mean: `E[∂z/∂θ] = ∂E[z]/∂θ` within Monte Carlo error (an estimate
//! independent of the implicit-gradient series; `tests/special.rs` checks the series
//! against finite differences of the CDF).

use dfdx::prelude::*;
use latent::distributions::{Beta, Gamma, Reparameterizable};

const M: usize = 40_000;

/// Mean and standard error of per-draw gradients.
fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

fn assert_within(what: &str, draws: &[f64], expected: f64) {
    let (m, se) = mean_se(draws);
    assert!(
        (m - expected).abs() <= 5.0 * se + 1e-12,
        "{what}: pathwise mean {m} ± {se} against {expected}"
    );
}

#[test]
fn gamma_rsample_gradients_match_the_gradient_of_its_mean() {
    let dev = Cpu::seed_from_u64(7);
    for &(alpha, beta) in &[(0.2f64, 1.0f64), (1.0, 2.0), (4.5, 0.5), (60.0, 3.0)] {
        let la = dev.tensor_from_vec(vec![alpha.ln(); M], (M, Const::<1>));
        let lb = dev.tensor_from_vec(vec![beta.ln(); M], (M, Const::<1>));
        let g = Gamma::new(la.leaky_trace(), lb.clone().put_tape(OwnedTape::default()))
            .unwrap()
            .rsample()
            .sum()
            .backward();
        // E[z] = α/β: ∂/∂ln α = α/β per draw.
        let d: Vec<f64> = g.get(&la).as_vec();
        assert_within(&format!("Gamma({alpha}, {beta}) ∂/∂ln α"), &d, alpha / beta);
        // ∂/∂ln β of z = g/β is −z exactly; its mean is −α/β.
        let g = Gamma::new(la.clone().put_tape(OwnedTape::default()), lb.leaky_trace())
            .unwrap()
            .rsample()
            .sum()
            .backward();
        assert_within(
            &format!("Gamma({alpha}, {beta}) ∂/∂ln β"),
            &g.get(&lb).as_vec(),
            -alpha / beta,
        );
    }
}

#[test]
fn beta_rsample_gradients_match_the_gradient_of_its_mean() {
    let dev = Cpu::seed_from_u64(11);
    for &(a, b) in &[(0.5f64, 0.5f64), (2.0, 5.0), (30.0, 3.0)] {
        let la = dev.tensor_from_vec(vec![a.ln(); M], (M, Const::<1>));
        let lb = dev.tensor_from_vec(vec![b.ln(); M], (M, Const::<1>));
        let g = Beta::new(la.leaky_trace(), lb.clone().put_tape(OwnedTape::default()))
            .unwrap()
            .rsample()
            .sum()
            .backward();
        // E[x] = a/(a+b): ∂/∂ln a = a·b/(a+b)².
        let expected = a * b / (a + b).powi(2);
        assert_within(
            &format!("Beta({a}, {b}) ∂/∂ln a"),
            &g.get(&la).as_vec(),
            expected,
        );
    }
}
