//! The checks of one family ([`check_family`]) and the proptest runner they share.

use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};

use dfdx::prelude::*;
use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, TestError, TestRng, TestRunner};

use super::{theta_matrix, Config, Dev, Failure, Family, Support, Theta};
use crate::distributions::Distribution;
use crate::error::Error;
use crate::kernels::ops::to_f64_vec;

/// Runs `test` on `cases` values of `strategy` with a deterministic generator (the
/// same cases on every run), turning proptest's shrunk failure into a [`Failure`].
pub(super) fn run<S: Strategy>(
    subject: &str,
    property: &str,
    cfg: &Config,
    strategy: S,
    test: impl Fn(S::Value) -> std::result::Result<(), String>,
) -> std::result::Result<(), Failure>
where
    S::Value: Debug,
{
    let config = ProptestConfig {
        cases: cfg.cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    runner
        .run(&strategy, |v| test(v).map_err(TestCaseError::fail))
        .map_err(|e| Failure {
            subject: subject.to_string(),
            property: property.to_string(),
            reason: match e {
                TestError::Fail(why, value) => format!("{why} (case {value:?})"),
                TestError::Abort(why) => format!("aborted: {why}"),
            },
        })
}

/// `Err(message)` unless `|a − b| ≤ tol`.
pub(super) fn close(what: &str, a: f64, b: f64, tol: f64) -> std::result::Result<(), String> {
    if (a - b).abs() <= tol && a.is_finite() && b.is_finite() {
        Ok(())
    } else {
        Err(format!("{what}: {a} vs {b} (tolerance {tol:e})"))
    }
}

/// Mean and standard error of the mean.
pub(super) fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, (var / n).sqrt())
}

pub(super) fn err(e: Error) -> String {
    format!("unexpected error: {e}")
}

/// `n` copies of the row θ.
pub(super) fn repeated(dev: &Dev, theta: &[f64], n: usize) -> Theta {
    theta_matrix(dev, &vec![theta.to_vec(); n])
}

/// Central finite differences of `f` at `x` with step `h`.
pub(super) fn finite_differences(
    x: &[f64],
    h: f64,
    f: impl Fn(&[f64]) -> Result<f64, String>,
) -> Result<Vec<f64>, String> {
    (0..x.len())
        .map(|i| {
            let (mut up, mut dn) = (x.to_vec(), x.to_vec());
            up[i] += h;
            dn[i] -= h;
            Ok((f(&up)? - f(&dn)?) / (2.0 * h))
        })
        .collect()
}

/// Compares an autodiff gradient with central differences.
pub(super) fn gradients_agree(
    what: &str,
    auto: &[f64],
    fd: &[f64],
    tol: f64,
) -> std::result::Result<(), String> {
    for (i, (a, f)) in auto.iter().zip(fd).enumerate() {
        close(
            &format!("{what}, ∂/∂θ_{i} (autodiff vs central differences)"),
            *a,
            *f,
            tol * a.abs().max(1.0),
        )?;
    }
    Ok(())
}

const STEP: f64 = 1e-5;

/// A taped scalar.
type Scalar = Tensor<(), f64, Dev, OwnedTape<f64, Dev>>;

/// Runs every applicable check of [`super`] on `family`; the first failure is returned.
///
/// # Errors
/// A [`Failure`] naming the property, the (shrunk) parameters and the numbers.
///
/// # Examples
/// ```
/// use latent::conformance::families::NormalFamily;
/// use latent::conformance::{check_family, Config};
///
/// // The diagonal Normal in 2 dimensions passes every check, on 4 random parameter sets.
/// let quick = Config { cases: 4, samples: 5_000, ..Config::default() };
/// check_family::<2, _>(&NormalFamily, &quick).unwrap();
/// ```
pub fn check_family<const N: usize, F: Family<N>>(
    family: &F,
    cfg: &Config,
) -> std::result::Result<(), Failure> {
    let name = family.name();
    invalid_parameters_are_refused(family, &name)?;
    log_prob_matches_reference(family, cfg, &name)?;
    normalizes(family, cfg, &name)?;
    moments_match(family, cfg, &name)?;
    mode_is_most_probable(family, cfg, &name)?;
    entropy_matches(family, cfg, &name)?;
    log_prob_gradients_match(family, cfg, &name)?;
    rsample_gradients_match(family, cfg, &name)
}

/// Invalid parameters: a typed error, no panic.
fn invalid_parameters_are_refused<const N: usize, F: Family<N>>(
    family: &F,
    name: &str,
) -> std::result::Result<(), Failure> {
    for theta in family.invalid_parameters() {
        let dev = Dev::default();
        let built = catch_unwind(AssertUnwindSafe(|| {
            family
                .build(theta_matrix(&dev, std::slice::from_ref(&theta)))
                .err()
        }));
        match built {
            Ok(Some(Error::InvalidSetting { .. } | Error::ShapeMismatch { .. })) => {}
            Ok(other) => {
                return Err(Failure {
                    subject: name.to_string(),
                    property: "invalid parameters give a typed error".into(),
                    reason: format!("θ = {theta:?} gave {other:?}"),
                })
            }
            Err(_) => {
                return Err(Failure {
                    subject: name.to_string(),
                    property: "invalid parameters give a typed error".into(),
                    reason: format!("θ = {theta:?} panicked"),
                })
            }
        }
    }
    Ok(())
}

/// log_prob against the reference, at points drawn from the distribution.
fn log_prob_matches_reference<const N: usize, F: Family<N>>(
    family: &F,
    cfg: &Config,
    name: &str,
) -> std::result::Result<(), Failure> {
    run(
        name,
        "log_prob equals the reference log-density",
        cfg,
        (family.parameters(), any::<u64>()),
        |(theta, seed)| {
            let dev = Dev::seed_from_u64(seed);
            let d = family.build(repeated(&dev, &theta, 8)).map_err(err)?;
            let x = d.sample();
            let xs = to_f64_vec(&x);
            let lp = to_f64_vec(&d.log_prob(x).map_err(err)?);
            for (row, l) in lp.iter().enumerate() {
                if let Some(r) = family.reference_log_prob(&theta, &xs[row * N..(row + 1) * N]) {
                    close(
                        &format!("log p({:?})", &xs[row * N..(row + 1) * N]),
                        *l,
                        r,
                        cfg.rel * r.abs().max(1.0),
                    )?;
                }
            }
            Ok(())
        },
    )
}

/// Normalization.
fn normalizes<const N: usize, F: Family<N>>(
    family: &F,
    cfg: &Config,
    name: &str,
) -> std::result::Result<(), Failure> {
    run(
        name,
        "the density integrates (sums) to 1",
        cfg,
        (family.parameters(), any::<u64>()),
        |(theta, _)| {
            let dev = Dev::default();
            match family.support(&theta) {
                Support::Unchecked => Ok(()),
                Support::Interval(lo, hi) => {
                    if N != 1 {
                        return Err(format!("Support::Interval needs N = 1, not {N}"));
                    }
                    let n = cfg.quadrature_intervals + cfg.quadrature_intervals % 2;
                    let h = (hi - lo) / n as f64;
                    let xs: Vec<f64> = (0..=n).map(|i| lo + i as f64 * h).collect();
                    let d = family.build(repeated(&dev, &theta, n + 1)).map_err(err)?;
                    let lp = to_f64_vec(
                        &d.log_prob(dev.tensor_from_vec(xs, (n + 1, Const::<N>)))
                            .map_err(err)?,
                    );
                    let mut s = lp[0].exp() + lp[n].exp();
                    for (i, l) in lp.iter().enumerate().take(n).skip(1) {
                        s += if i % 2 == 1 { 4.0 } else { 2.0 } * l.exp();
                    }
                    close("∫ p(x) dx", s * h / 3.0, 1.0, 1e-6)
                }
                Support::Points(points) => {
                    let d = family
                        .build(repeated(&dev, &theta, points.len()))
                        .map_err(err)?;
                    let x = dev.tensor_from_vec(points.concat(), (points.len(), Const::<N>));
                    let total: f64 = to_f64_vec(&d.log_prob(x).map_err(err)?)
                        .iter()
                        .map(|l| l.exp())
                        .sum();
                    close("Σ p(x)", total, 1.0, cfg.rel)
                }
                Support::Counts => {
                    if N != 1 {
                        return Err(format!("Support::Counts needs N = 1, not {N}"));
                    }
                    let total = sum_over_counts(|ks| {
                        let d = family
                            .build(repeated(&dev, &theta, ks.len()))
                            .map_err(err)?;
                        let x = dev.tensor_from_vec(ks.to_vec(), (ks.len(), Const::<N>));
                        Ok(to_f64_vec(&d.log_prob(x).map_err(err)?))
                    })?;
                    close("Σ_k p(k)", total, 1.0, cfg.rel)
                }
                Support::Simplex => {
                    let intervals = if N == 2 {
                        cfg.quadrature_intervals
                    } else {
                        cfg.quadrature_intervals.min(400)
                    };
                    let points = simplex_grid(N, intervals)?;
                    let d = family
                        .build(repeated(&dev, &theta, points.len()))
                        .map_err(err)?;
                    let xs: Vec<f64> = points.iter().flat_map(|(x, _)| x.clone()).collect();
                    let lp = to_f64_vec(
                        &d.log_prob(dev.tensor_from_vec(xs, (points.len(), Const::<N>)))
                            .map_err(err)?,
                    );
                    let total: f64 = lp.iter().zip(&points).map(|(l, (_, w))| w * l.exp()).sum();
                    close("∫ p(x) dx over the simplex", total, 1.0, 1e-6)
                }
            }
        },
    )
}

/// Sample mean and variance.
fn moments_match<const N: usize, F: Family<N>>(
    family: &F,
    cfg: &Config,
    name: &str,
) -> std::result::Result<(), Failure> {
    run(
        name,
        "sample mean and variance match the closed forms",
        cfg,
        (family.parameters(), any::<u64>()),
        |(theta, seed)| {
            let dev = Dev::seed_from_u64(seed);
            let n = cfg.samples;
            let d = family.build(repeated(&dev, &theta, n)).map_err(err)?;
            let xs = to_f64_vec(&d.sample());
            let Some(mean) = family.mean(family.build(repeated(&dev, &theta, 1)).map_err(err)?)
            else {
                return Ok(());
            };
            let mean = to_f64_vec(&mean);
            let var = family
                .variance(family.build(repeated(&dev, &theta, 1)).map_err(err)?)
                .map(|v| to_f64_vec(&v));
            for j in 0..N {
                let col: Vec<f64> = xs.iter().skip(j).step_by(N).copied().collect();
                let (m, se) = mean_se(&col);
                close(
                    &format!("sample mean of x_{j}"),
                    m,
                    mean[j],
                    cfg.z * se + 1e-12,
                )?;
                if let Some(var) = &var {
                    let c2: Vec<f64> = col.iter().map(|x| (x - m).powi(2)).collect();
                    let (v, se_v) = mean_se(&c2);
                    let v = v * n as f64 / (n as f64 - 1.0);
                    close(
                        &format!("sample variance of x_{j}"),
                        v,
                        var[j],
                        cfg.z * se_v + 1e-12,
                    )?;
                }
            }
            Ok(())
        },
    )
}

/// The mode is at least as probable as every sample.
fn mode_is_most_probable<const N: usize, F: Family<N>>(
    family: &F,
    cfg: &Config,
    name: &str,
) -> std::result::Result<(), Failure> {
    run(
        name,
        "no sample is more probable than the mode",
        cfg,
        (family.parameters(), any::<u64>()),
        |(theta, seed)| {
            let dev = Dev::seed_from_u64(seed);
            let Some(mode) = family.mode(family.build(repeated(&dev, &theta, 1)).map_err(err)?)
            else {
                return Ok(());
            };
            let n = 1000;
            let d = family.build(repeated(&dev, &theta, n)).map_err(err)?;
            let xs = d.sample();
            let best = to_f64_vec(&d.log_prob(xs).map_err(err)?)
                .into_iter()
                .fold(f64::NEG_INFINITY, f64::max);
            let modes = dev.tensor_from_vec(to_f64_vec(&mode).repeat(n), (n, Const::<N>));
            let d = family.build(repeated(&dev, &theta, n)).map_err(err)?;
            let at_mode = to_f64_vec(&d.log_prob(modes).map_err(err)?)[0];
            if at_mode >= best - 1e-9 * best.abs().max(1.0) {
                Ok(())
            } else {
                Err(format!("log p(mode) = {at_mode} < log p(sample) = {best}"))
            }
        },
    )
}

/// Entropy = −E[log p] by Monte Carlo.
fn entropy_matches<const N: usize, F: Family<N>>(
    family: &F,
    cfg: &Config,
    name: &str,
) -> std::result::Result<(), Failure> {
    run(
        name,
        "entropy equals −E[log p(x)]",
        cfg,
        (family.parameters(), any::<u64>()),
        |(theta, seed)| {
            let dev = Dev::seed_from_u64(seed);
            let Some(h) = family.entropy(family.build(repeated(&dev, &theta, 1)).map_err(err)?)
            else {
                return Ok(());
            };
            let h = to_f64_vec(&h)[0];
            let d = family
                .build(repeated(&dev, &theta, cfg.samples))
                .map_err(err)?;
            let x = d.sample();
            let lp: Vec<f64> = to_f64_vec(&d.log_prob(x).map_err(err)?)
                .iter()
                .map(|l| -l)
                .collect();
            let (m, se) = mean_se(&lp);
            close("H vs −E[log p]", h, m, cfg.z * se + 1e-12)
        },
    )
}

/// ∂ log p(x) / ∂θ against central differences, x fixed.
fn log_prob_gradients_match<const N: usize, F: Family<N>>(
    family: &F,
    cfg: &Config,
    name: &str,
) -> std::result::Result<(), Failure> {
    run(
        name,
        "log_prob gradients match finite differences",
        cfg,
        (family.parameters(), any::<u64>()),
        |(theta, seed)| {
            if theta.is_empty() {
                return Ok(());
            }
            let dev = Dev::seed_from_u64(seed);
            let x: Vec<f64> = to_f64_vec(
                &family
                    .build(repeated(&dev, &theta, 1))
                    .map_err(err)?
                    .sample(),
            );
            let value = |t: &[f64]| -> Result<f64, String> {
                let d = family.build(repeated(&dev, t, 1)).map_err(err)?;
                let x = dev.tensor_from_vec(x.clone(), (1, Const::<N>));
                Ok(to_f64_vec(&d.log_prob(x).map_err(err)?)[0])
            };
            let t = repeated(&dev, &theta, 1);
            let d = family.build(t.leaky_trace()).map_err(err)?;
            let xt = dev
                .tensor_from_vec(x.clone(), (1, Const::<N>))
                .put_tape(OwnedTape::default());
            let g = d.log_prob(xt).map_err(err)?.sum::<(), _>().backward();
            let auto = g.get(&t).as_vec();
            let fd = finite_differences(&theta, STEP, value)?;
            gradients_agree(&format!("log p({x:?})"), &auto, &fd, cfg.grad_tol)
        },
    )
}

/// ∂ rsample / ∂θ against central differences, with the noise held fixed.
fn rsample_gradients_match<const N: usize, F: Family<N>>(
    family: &F,
    cfg: &Config,
    name: &str,
) -> std::result::Result<(), Failure> {
    run(
        name,
        "rsample gradients match finite differences",
        cfg,
        (family.parameters(), any::<u64>()),
        |(theta, seed)| {
            if theta.is_empty() {
                return Ok(());
            }
            let rows = 4;
            let weights: Vec<f64> = (0..rows * N).map(|i| 1.0 - 0.37 * i as f64).collect();
            let draw = |t: Theta<OwnedTape<f64, Dev>>| -> Result<Option<Scalar>, String> {
                let d = family.build(t).map_err(err)?;
                let Some(z) = family.rsample(d) else {
                    return Ok(None);
                };
                let w = z
                    .device()
                    .tensor_from_vec(weights.clone(), (rows, Const::<N>));
                Ok(Some((z * w).sum::<(), _>()))
            };
            // A fresh generator with the same seed for every evaluation: the same ε.
            let value = |t: &[f64]| -> Result<f64, String> {
                let dev = Dev::seed_from_u64(seed);
                let v = draw(repeated(&dev, t, rows).leaky_trace())?;
                Ok(v.map_or(0.0, |v| v.array()))
            };
            let dev = Dev::seed_from_u64(seed);
            let t = repeated(&dev, &theta, rows);
            let Some(total) = draw(t.leaky_trace())? else {
                return Ok(());
            };
            let auto = g_rows(&total.backward(), &t, rows);
            let fd = finite_differences(&theta, STEP, value)?;
            gradients_agree("Σ w·rsample", &auto, &fd, cfg.grad_tol)
        },
    )
}

/// The gradient with respect to one θ row repeated `rows` times: the sum over rows.
fn g_rows(g: &Gradients<f64, Dev>, t: &Theta, rows: usize) -> Vec<f64> {
    let all = g.get(t).as_vec();
    let width = all.len() / rows;
    (0..width)
        .map(|j| (0..rows).map(|r| all[r * width + j]).sum())
        .collect()
}

/// `Σ_{k ≥ 0} p(k)`, from `log_p` of blocks of 256 counts, until a block past half the
/// mass adds less than 1e-16 of it (at most 10⁶ counts).
fn sum_over_counts(log_p: impl Fn(&[f64]) -> Result<Vec<f64>, String>) -> Result<f64, String> {
    let mut total = 0.0;
    for block in 0..(1_000_000 / 256) {
        let ks: Vec<f64> = (0..256).map(|i| (block * 256 + i) as f64).collect();
        let part: f64 = log_p(&ks)?.iter().map(|l| l.exp()).sum();
        total += part;
        if total > 0.5 && part < 1e-16 * total {
            return Ok(total);
        }
    }
    Err(format!(
        "Σ_k p(k) had not converged after 10⁶ counts: {total}"
    ))
}

/// Quadrature points and weights on the simplex of `k` = 2 or 3 coordinates, away from
/// its boundary by 1e-12 (the families checked here vanish there): Simpson's rule in
/// `x₁` for `k = 2`; for `k = 3`, Simpson's rule in `(u, v)` on the unit square through
/// `x = (u, (1 − u) v, (1 − u)(1 − v))`, whose Jacobian is `1 − u`.
fn simplex_grid(k: usize, intervals: usize) -> Result<Vec<(Vec<f64>, f64)>, String> {
    let n = intervals.max(2) + intervals % 2;
    let (lo, hi) = (1e-12, 1.0 - 1e-12);
    let h = (hi - lo) / n as f64;
    let simpson = |i: usize| {
        (if i == 0 || i == n {
            1.0
        } else if i % 2 == 1 {
            4.0
        } else {
            2.0
        }) * h
            / 3.0
    };
    match k {
        2 => Ok((0..=n)
            .map(|i| {
                let x = lo + i as f64 * h;
                (vec![x, 1.0 - x], simpson(i))
            })
            .collect()),
        3 => Ok((0..=n)
            .flat_map(|i| {
                (0..=n).map(move |j| {
                    let (u, v) = (lo + i as f64 * h, lo + j as f64 * h);
                    let x = vec![u, (1.0 - u) * v, (1.0 - u) * (1.0 - v)];
                    (x, simpson(i) * simpson(j) * (1.0 - u))
                })
            })
            .collect()),
        _ => Err(format!("Support::Simplex needs N = 2 or 3, not {k}")),
    }
}
