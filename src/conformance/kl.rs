//! The checks of a closed-form KL pair ([`check_kl`], [`check_kl_additivity`]).

use dfdx::prelude::*;
use proptest::prelude::*;

use super::checks::{close, err, finite_differences, gradients_agree, mean_se, repeated, run};
use super::{Config, Dev, Failure, Family, KlPair, Support};
use crate::distributions::Distribution;
use crate::kernels::ops::to_f64_vec;

fn kl_value<const N: usize, K: KlPair<N>>(
    pair: &K,
    dev: &Dev,
    tq: &[f64],
    tp: &[f64],
) -> Result<f64, String> {
    let q = pair.q().build(repeated(dev, tq, 1)).map_err(err)?;
    let p = pair.p().build(repeated(dev, tp, 1)).map_err(err)?;
    Ok(to_f64_vec(&pair.kl(q, p).map_err(err)?)[0])
}

/// Checks a closed-form KL: `KL ≥ 0`; `KL(p ‖ p) = 0` for a pair within one family;
/// the closed form against the Monte Carlo estimate `E_q[log q − log p]` within
/// `z` standard errors; its gradients with respect to both parameter vectors against
/// central differences; invariance under one affine map applied to both (when both
/// families give [`Family::affine`]); Pinsker's inequality `TV ≤ √(KL/2)` (when both
/// have a finite [`Support::Points`]).
///
/// # Errors
/// A [`Failure`] naming the property, the (shrunk) parameters and the numbers.
///
/// # Examples
/// ```
/// use latent::conformance::families::{BuiltinKl, NormalFamily, StandardNormalFamily};
/// use latent::conformance::{check_kl, Config};
///
/// // KL(N(μ, σ²) ‖ N(0, I)): non-negative, zero for p = q, equal to its Monte Carlo
/// // estimate and its gradients to finite differences, on 4 random parameter sets.
/// let quick = Config { cases: 4, samples: 5_000, ..Config::default() };
/// let pair = BuiltinKl { q: NormalFamily, p: StandardNormalFamily };
/// check_kl::<2, _>(&pair, &quick).unwrap();
/// ```
pub fn check_kl<const N: usize, K: KlPair<N>>(
    pair: &K,
    cfg: &Config,
) -> std::result::Result<(), Failure> {
    let name = format!("KL({} ‖ {})", pair.q().name(), pair.p().name());
    let params = (pair.q().parameters(), pair.p().parameters(), any::<u64>());

    run(
        &name,
        "KL ≥ 0 and KL(p ‖ p) = 0",
        cfg,
        params.clone(),
        |(tq, tp, _)| {
            let dev = Dev::default();
            let kl = kl_value(pair, &dev, &tq, &tp)?;
            if kl < -1e-12 || !kl.is_finite() {
                return Err(format!("KL = {kl}"));
            }
            if pair.same_family() {
                close("KL(q ‖ q)", kl_value(pair, &dev, &tq, &tq)?, 0.0, 1e-10)?;
            }
            Ok(())
        },
    )?;

    run(
        &name,
        "closed form equals the Monte Carlo estimate",
        cfg,
        params.clone(),
        |(tq, tp, seed)| {
            let dev = Dev::seed_from_u64(seed);
            let closed = kl_value(pair, &dev, &tq, &tp)?;
            let n = cfg.samples;
            let q = pair.q().build(repeated(&dev, &tq, n)).map_err(err)?;
            let x = q.sample();
            let log_q = to_f64_vec(&q.log_prob(x.clone()).map_err(err)?);
            let p = pair.p().build(repeated(&dev, &tp, n)).map_err(err)?;
            let log_p = to_f64_vec(&p.log_prob(x).map_err(err)?);
            let diff: Vec<f64> = log_q.iter().zip(&log_p).map(|(a, b)| a - b).collect();
            let (m, se) = mean_se(&diff);
            close("closed form vs Monte Carlo", closed, m, cfg.z * se + 1e-12)
        },
    )?;

    run(
        &name,
        "gradients match finite differences",
        cfg,
        params.clone(),
        |(tq, tp, _)| {
            let dev = Dev::default();
            let nq = tq.len();
            let joint: Vec<f64> = tq.iter().chain(&tp).copied().collect();
            let fd =
                finite_differences(&joint, 1e-5, |v| kl_value(pair, &dev, &v[..nq], &v[nq..]))?;
            let q_theta = repeated(&dev, &tq, 1);
            let p_theta = repeated(&dev, &tp, 1);
            let q = pair.q().build(q_theta.leaky_trace()).map_err(err)?;
            let p = pair.p().build(p_theta.leaky_trace()).map_err(err)?;
            let g = pair.kl(q, p).map_err(err)?.sum::<(), _>().backward();
            // A family without parameters (a fixed prior) has no gradient entry.
            let grad = |t: &super::Theta| {
                if t.shape().1 == 0 {
                    Vec::new()
                } else {
                    g.get(t).as_vec()
                }
            };
            let auto: Vec<f64> = grad(&q_theta).into_iter().chain(grad(&p_theta)).collect();
            gradients_agree("KL", &auto, &fd, cfg.grad_tol)
        },
    )?;

    let affine = (
        params.clone(),
        prop_oneof![0.3f64..3.0, -3.0f64..-0.3],
        -3.0f64..3.0,
    );
    run(
        &name,
        "invariance under an affine map of both",
        cfg,
        affine,
        |((tq, tp, _), a, b)| {
            let (Some(aq), Some(ap)) = (pair.q().affine(&tq, a, b), pair.p().affine(&tp, a, b))
            else {
                return Ok(());
            };
            let dev = Dev::default();
            let kl = kl_value(pair, &dev, &tq, &tp)?;
            close(
                "KL(Aq ‖ Ap) vs KL(q ‖ p)",
                kl_value(pair, &dev, &aq, &ap)?,
                kl,
                cfg.rel * kl.abs().max(1.0),
            )
        },
    )?;

    run(
        &name,
        "Pinsker's inequality TV ≤ √(KL/2)",
        cfg,
        params,
        |(tq, tp, _)| {
            let (Support::Points(points), Support::Points(other)) =
                (pair.q().support(&tq), pair.p().support(&tp))
            else {
                return Ok(());
            };
            if points != other {
                return Ok(());
            }
            let dev = Dev::default();
            let x = || dev.tensor_from_vec(points.concat(), (points.len(), Const::<N>));
            let q = pair
                .q()
                .build(repeated(&dev, &tq, points.len()))
                .map_err(err)?;
            let p = pair
                .p()
                .build(repeated(&dev, &tp, points.len()))
                .map_err(err)?;
            let lq = to_f64_vec(&q.log_prob(x()).map_err(err)?);
            let lp = to_f64_vec(&p.log_prob(x()).map_err(err)?);
            let tv = 0.5
                * lq.iter()
                    .zip(&lp)
                    .map(|(a, b)| (a.exp() - b.exp()).abs())
                    .sum::<f64>();
            let kl = kl_value(pair, &dev, &tq, &tp)?;
            if tv <= (kl / 2.0).sqrt() + 1e-12 {
                Ok(())
            } else {
                Err(format!("TV {tv} > √(KL/2) = {}", (kl / 2.0).sqrt()))
            }
        },
    )
}

/// Checks additivity over independent dimensions: for factorized families
/// ([`Family::marginal`]), `KL(q ‖ p) = Σ_j KL(q_j ‖ p_j)` to `cfg.rel`, with the
/// 1-D closed form of the same pair.
///
/// # Errors
/// A [`Failure`] naming the (shrunk) parameters and the numbers; also if a family
/// gives no marginals.
pub fn check_kl_additivity<const N: usize, K>(
    pair: &K,
    cfg: &Config,
) -> std::result::Result<(), Failure>
where
    K: KlPair<N> + KlPair<1>,
{
    let q: &<K as KlPair<N>>::Q = KlPair::<N>::q(pair);
    let p: &<K as KlPair<N>>::P = KlPair::<N>::p(pair);
    let name = format!("KL({} ‖ {})", q.name(), p.name());
    run(
        &name,
        "additivity over independent dimensions",
        cfg,
        (q.parameters(), p.parameters()),
        |(tq, tp)| {
            let dev = Dev::default();
            let whole = kl_value::<N, K>(pair, &dev, &tq, &tp)?;
            let mut sum = 0.0;
            for j in 0..N {
                let (Some(mq), Some(mp)) = (q.marginal(&tq, j), p.marginal(&tp, j)) else {
                    return Err("the families give no marginals".into());
                };
                sum += kl_value::<1, K>(pair, &dev, &mq, &mp)?;
            }
            close("KL vs Σ_j KL_j", whole, sum, cfg.rel * whole.abs().max(1.0))
        },
    )
}
