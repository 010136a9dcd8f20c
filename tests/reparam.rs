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

#[test]
fn dirichlet_rsample_gradients_match_the_gradient_of_its_mean() {
    use latent::distributions::Dirichlet;
    let dev = Cpu::seed_from_u64(13);
    let alpha = [0.7f64, 2.0, 5.0];
    let a0: f64 = alpha.iter().sum();
    let la = dev.tensor_from_vec(
        alpha.iter().map(|a| a.ln()).collect::<Vec<_>>().repeat(M),
        (M, 3),
    );
    // The loss is x_0 summed over the draws: ∂E[x_0]/∂ln α_0 = α_0 (α0 − α_0)/α0².
    let x = Dirichlet::new(la.leaky_trace()).unwrap().rsample();
    let pick = dev.tensor_from_vec([1.0, 0.0, 0.0].repeat(M), (M, 3));
    let g = (x * pick).sum().backward();
    let d: Vec<f64> = g.get(&la).as_vec().iter().step_by(3).copied().collect();
    let expected = alpha[0] * (a0 - alpha[0]) / (a0 * a0);
    assert_within("Dirichlet ∂E[x_0]/∂ln α_0", &d, expected);
}

#[test]
fn student_t_rsample_gradients_match_the_gradient_of_its_variance() {
    use latent::distributions::StudentT;
    let dev = Cpu::seed_from_u64(17);
    let (nu, sigma) = (9.0f64, 1.5f64);
    let col = |v: f64| dev.tensor_from_vec(vec![v; M], (M, Const::<1>));
    let (ln_nu, loc, ln_s) = (col(nu.ln()), col(0.0), col(sigma.ln()));
    // E[x²] = σ² ν/(ν − 2) at μ = 0: ∂/∂ln ν = −2σ² ν/(ν − 2)².
    let t = || OwnedTape::<f64, Cpu>::default();
    let x = StudentT::new(
        ln_nu.leaky_trace(),
        loc.clone().put_tape(t()),
        ln_s.clone().put_tape(t()),
    )
    .unwrap()
    .rsample();
    let g = x.square().sum().backward();
    let expected = -2.0 * sigma * sigma * nu / ((nu - 2.0) * (nu - 2.0));
    assert_within("StudentT ∂E[x²]/∂ln ν", &g.get(&ln_nu).as_vec(), expected);
    // ∂E[x²]/∂ln σ = 2 E[x²].
    let x = StudentT::new(
        ln_nu.clone().put_tape(t()),
        loc.put_tape(t()),
        ln_s.leaky_trace(),
    )
    .unwrap()
    .rsample();
    let g = x.square().sum().backward();
    assert_within(
        "StudentT ∂E[x²]/∂ln σ",
        &g.get(&ln_s).as_vec(),
        2.0 * sigma * sigma * nu / (nu - 2.0),
    );
}
