//! `latent::special` against PyTorch (values written by `scripts/torch_families.py`,
//! committed in `tests/data/torch_families.json`; trigamma from mpmath there, as
//! torch's `polygamma(1, ·)` is good to ~1e-9 only) and statrs, and the gradients of the
//! tensor operations against central differences.

#[path = "support/torch_reference.rs"]
mod torch_reference;

use dfdx::prelude::*;
use latent::special::{self, scalar};
use torch_reference::{column, reference};

/// `|a − b| ≤ max(rel·|b|, abs)`.
fn assert_close(what: &str, x: f64, a: f64, b: f64, rel: f64, abs: f64) {
    assert!(
        (a - b).abs() <= (rel * b.abs()).max(abs),
        "{what}({x}): {a} against {b} (difference {:e})",
        (a - b).abs()
    );
}

#[test]
fn lgamma_digamma_match_pytorch_and_trigamma_mpmath_to_1e12_relative() {
    let r = reference();
    type F = fn(f64) -> f64;
    let cases: [(&str, F); 3] = [
        ("lgamma", scalar::lgamma),
        ("digamma", scalar::digamma),
        ("trigamma", scalar::trigamma),
    ];
    for (name, f) in cases {
        let xs = column(&r[name], "x");
        let ys = column(&r[name], "y");
        assert!(xs.len() > 60, "{name}: {} points", xs.len());
        for (&x, &y) in xs.iter().zip(&ys) {
            assert_close(name, x, f(x), y, 1e-12, 1e-14);
        }
    }
}

#[test]
fn lgamma_and_digamma_match_statrs() {
    // statrs 0.16 (Lanczos approximation for ln Γ, its own series for ψ) on (0.01, 170).
    for i in 0..2000 {
        let x = (-4.6 + 9.73 * i as f64 / 2000.0).exp();
        assert_close(
            "lgamma",
            x,
            scalar::lgamma(x),
            statrs::function::gamma::ln_gamma(x),
            1e-12,
            1e-14,
        );
        assert_close(
            "digamma",
            x,
            scalar::digamma(x),
            statrs::function::gamma::digamma(x),
            1e-12,
            1e-14,
        );
    }
}

#[test]
fn closed_forms_at_the_integers_and_half_integers() {
    let mut fact = 1.0f64;
    for n in 1..30 {
        // ln Γ(n) = ln (n−1)!, ψ(n) = −γ + H_{n−1}
        assert_close(
            "lgamma",
            n as f64,
            scalar::lgamma(n as f64),
            fact.ln(),
            1e-14,
            1e-15,
        );
        let h: f64 = (1..n).map(|k| 1.0 / k as f64).sum();
        assert_close(
            "digamma",
            n as f64,
            scalar::digamma(n as f64),
            h - scalar::EULER_GAMMA,
            1e-14,
            1e-15,
        );
        fact *= n as f64;
    }
    // Γ(½) = √π, ψ(½) = −γ − 2 ln 2, ψ₁(½) = π²/2
    let pi = std::f64::consts::PI;
    assert_close(
        "lgamma",
        0.5,
        scalar::lgamma(0.5),
        0.5 * pi.ln(),
        1e-15,
        0.0,
    );
    assert_close(
        "digamma",
        0.5,
        scalar::digamma(0.5),
        -scalar::EULER_GAMMA - 2.0 * 2f64.ln(),
        1e-15,
        0.0,
    );
    assert_close(
        "trigamma",
        0.5,
        scalar::trigamma(0.5),
        pi * pi / 2.0,
        1e-15,
        0.0,
    );
    assert_eq!(scalar::lgamma(0.0), f64::INFINITY);
    assert_eq!(scalar::lgamma(-3.0), f64::INFINITY);
    assert_eq!(scalar::digamma(0.0), f64::NEG_INFINITY);
    assert!(scalar::digamma(-2.0).is_nan());
}

#[test]
fn tensor_ops_give_the_scalar_values_and_central_difference_gradients() {
    let dev = Cpu::default();
    let xs = [0.03f64, 0.7, 1.0, 1.46, 2.0, 3.3, 17.0, 250.0];
    let x = dev.tensor_from_vec(xs.to_vec(), (xs.len(),));
    type Op = fn(
        Tensor<(usize,), f64, Cpu, OwnedTape<f64, Cpu>>,
    ) -> Tensor<(usize,), f64, Cpu, OwnedTape<f64, Cpu>>;
    type F = fn(f64) -> f64;
    let ops: [(&str, Op, F); 3] = [
        ("lgamma", special::lgamma, scalar::lgamma),
        ("digamma", special::digamma, scalar::digamma),
        ("softplus", special::softplus, |x: f64| x.exp().ln_1p()),
    ];
    for (name, op, f) in ops {
        let y = op(x.leaky_trace());
        let values = y.as_vec();
        let g = y.sum().backward();
        let grad = g.get(&x).as_vec();
        for (i, &v) in xs.iter().enumerate() {
            assert_close(name, v, values[i], f(v), 1e-15, 0.0);
            let h = 1e-6 * v.max(1e-2);
            let fd = (f(v + h) - f(v - h)) / (2.0 * h);
            assert_close(&format!("d{name}"), v, grad[i], fd, 1e-6, 1e-8);
        }
    }
    // ln B(a, b): gradients ψ(a) − ψ(a+b), ψ(b) − ψ(a+b)
    let a = dev.tensor([0.4f64, 3.0]);
    let b = dev.tensor([2.5f64, 0.2]);
    let y = special::log_beta(a.leaky_trace(), b.clone().put_tape(OwnedTape::default()));
    let yv = y.as_vec();
    let _ = yv;
    let g = special::log_beta(
        a.leaky_trace(),
        b.with_empty_tape().traced(Gradients::leaky()),
    )
    .sum()
    .backward();
    let ga = g.get(&a).as_vec();
    for (i, (&av, &bv)) in [0.4f64, 3.0].iter().zip(&[2.5f64, 0.2]).enumerate() {
        let expected = scalar::digamma(av) - scalar::digamma(av + bv);
        assert_close("d log_beta / da", av, ga[i], expected, 1e-12, 1e-14);
        assert_close(
            "log_beta",
            av,
            scalar::log_beta(av, bv),
            statrs::function::beta::ln_beta(av, bv),
            1e-12,
            1e-14,
        );
    }
}

#[test]
fn the_implicit_gamma_gradient_matches_finite_differences_of_the_cdf() {
    // ∂z/∂α = −(∂F(z; α)/∂α) / p(z; α), with F from statrs' regularized incomplete gamma
    // and ∂F/∂α by central differences: an estimate independent of the series.
    for &alpha in &[0.05f64, 0.3, 1.0, 2.5, 10.0, 80.0] {
        for &q in &[0.05f64, 0.3, 0.5, 0.8, 0.97] {
            let z = statrs::distribution::ContinuousCDF::inverse_cdf(
                &statrs::distribution::Gamma::new(alpha, 1.0).unwrap(),
                q,
            );
            let h = 1e-5 * alpha;
            let df = (statrs::function::gamma::gamma_lr(alpha + h, z)
                - statrs::function::gamma::gamma_lr(alpha - h, z))
                / (2.0 * h);
            let pdf = ((alpha - 1.0) * z.ln() - z - scalar::lgamma(alpha)).exp();
            let expected = -df / pdf;
            let got = scalar::standard_gamma_grad(alpha, z);
            assert_close("dz/dα", alpha, got, expected, 1e-5, 1e-9);
        }
    }
}
