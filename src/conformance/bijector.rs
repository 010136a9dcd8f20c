//! The checks of one bijector ([`check_bijector`]).

use dfdx::prelude::*;
use proptest::strategy::BoxedStrategy;

use super::checks::{close, err, finite_differences, gradients_agree, run};
use super::{theta_matrix, Config, Dev, Failure, Theta};
use crate::error::Result;
use crate::flows::Bijector;
use crate::kernels::ops::to_f64_vec;

/// A bijector as the kit sees it: how to build one row of it from a parameter vector
/// θ (the per-example parameters, e.g. what an encoder outputs; global weights live in
/// the implementing struct), and a strategy of valid θ.
pub trait BijectorFamily<const N: usize> {
    /// The bijector type, for every tape.
    type Bij<T: Tape<f64, Dev>>: Bijector<Const<N>, f64, Dev, Tape = T>;

    /// A name for failure messages.
    fn name(&self) -> String;

    /// A proptest strategy of valid parameter vectors (all of one length).
    fn parameters(&self) -> BoxedStrategy<Vec<f64>>;

    /// The bijector with parameters θ, shape `(batch, num_params)`; gradients must
    /// reach θ when it carries a tape (see [`super::block`]).
    ///
    /// # Errors
    /// Typed errors for invalid θ.
    fn build<T: Tape<f64, Dev>>(&self, theta: Theta<T>) -> Result<Self::Bij<T>>;

    /// Whether [`Bijector::inverse`] is implemented (then `f⁻¹ ∘ f = id` is checked).
    fn has_inverse(&self) -> bool;
}

/// `log |det A|` of a square matrix (row-major, `n × n`) by Gaussian elimination with
/// partial pivoting; `−∞` for a singular one.
pub fn log_abs_det(a: &[f64], n: usize) -> f64 {
    let mut m = a.to_vec();
    let mut log_det = 0.0;
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| m[i * n + c].abs().total_cmp(&m[j * n + c].abs()))
            .unwrap_or(c);
        if m[p * n + c] == 0.0 {
            return f64::NEG_INFINITY;
        }
        if p != c {
            for k in 0..n {
                m.swap(p * n + k, c * n + k);
            }
        }
        let pivot = m[c * n + c];
        log_det += pivot.abs().ln();
        for r in c + 1..n {
            let f = m[r * n + c] / pivot;
            for k in c..n {
                m[r * n + k] -= f * m[c * n + k];
            }
        }
    }
    log_det
}

const STEP: f64 = 1e-5;

/// Runs the bijector checks on `family` over random θ and points `z ∈ [−3, 3]^N`:
///
/// - `log |det ∂f/∂z|` of [`Bijector::forward`] equals `log |det J|` of the Jacobian
///   computed by central differences (step `1e-5`), to `cfg.grad_tol` relative;
/// - where the inverse exists: `f⁻¹(f(z)) = z` to `1e-8` relative, and the inverse's
///   `log |det|` equals the forward one's to `cfg.rel`-scaled `1e-8`;
/// - the gradients of `Σ_j a_j f(z)_j + log |det|` (fixed random `a`) with respect to
///   θ and to `z` agree with central differences (this is what catches a lost branch
///   of a tape).
///
/// # Errors
/// The first [`Failure`], naming the property, the (shrunk) case and the numbers.
pub fn check_bijector<const N: usize, F: BijectorFamily<N>>(
    family: &F,
    cfg: &Config,
) -> std::result::Result<(), Failure> {
    let name = family.name();
    let point = proptest::collection::vec(-3.0..3.0f64, N);
    let cases = (family.parameters(), point.clone(), point);

    let forward = |theta: &[f64], z: &[f64]| -> std::result::Result<(Vec<f64>, f64), String> {
        let dev = Dev::default();
        let f = family
            .build(theta_matrix(&dev, &[theta.to_vec()]))
            .map_err(err)?;
        let (y, ld) = f.forward(dev.tensor_from_vec(z.to_vec(), (1, Const::<N>)));
        Ok((to_f64_vec(&y), to_f64_vec(&ld)[0]))
    };

    run(
        &name,
        "log |det J| equals the numerical Jacobian's",
        cfg,
        cases.clone(),
        |(theta, z, _)| {
            let (_, ld) = forward(&theta, &z)?;
            let mut jac = vec![0.0; N * N];
            for i in 0..N {
                let (mut up, mut dn) = (z.clone(), z.clone());
                up[i] += STEP;
                dn[i] -= STEP;
                let (yu, _) = forward(&theta, &up)?;
                let (yd, _) = forward(&theta, &dn)?;
                for j in 0..N {
                    jac[j * N + i] = (yu[j] - yd[j]) / (2.0 * STEP);
                }
            }
            let numeric = log_abs_det(&jac, N);
            close("log |det J|", ld, numeric, cfg.grad_tol * ld.abs().max(1.0))
        },
    )?;

    if family.has_inverse() {
        run(
            &name,
            "the inverse undoes the forward map",
            cfg,
            cases.clone(),
            |(theta, z, _)| {
                let dev = Dev::default();
                let (y, ld) = forward(&theta, &z)?;
                let f = family
                    .build(theta_matrix(&dev, std::slice::from_ref(&theta)))
                    .map_err(err)?;
                let (back, ld_inv) = f
                    .inverse(dev.tensor_from_vec(y, (1, Const::<N>)))
                    .map_err(err)?;
                for (j, (a, b)) in to_f64_vec(&back).iter().zip(&z).enumerate() {
                    close(&format!("f⁻¹(f(z))_{j}"), *a, *b, 1e-8 * b.abs().max(1.0))?;
                }
                close(
                    "log |det| of the inverse",
                    to_f64_vec(&ld_inv)[0],
                    ld,
                    1e-8 * ld.abs().max(1.0),
                )
            },
        )?;
    }

    run(
        &name,
        "gradients of f(z) and log |det| agree with central differences",
        cfg,
        cases,
        |(theta, z, a)| {
            let objective = |theta: &[f64], z: &[f64]| -> std::result::Result<f64, String> {
                let (y, ld) = forward(theta, z)?;
                Ok(y.iter().zip(&a).map(|(y, a)| y * a).sum::<f64>() + ld)
            };
            let dev = Dev::default();
            let th: Theta = theta_matrix(&dev, std::slice::from_ref(&theta));
            let zt: Tensor<(usize, Const<N>), f64, Dev> =
                dev.tensor_from_vec(z.clone(), (1, Const::<N>));
            let at: Tensor<(usize, Const<N>), f64, Dev> =
                dev.tensor_from_vec(a.clone(), (1, Const::<N>));
            let f = family.build(th.leaky_trace()).map_err(err)?;
            let (y, ld) = f.forward(zt.clone().put_tape(OwnedTape::default()));
            let s = (y * at).sum::<(usize,), Axis<1>>() + ld;
            let grads = s.sum::<(), _>().backward();
            let g_theta = grads.get(&th).as_vec();
            let g_z = grads.get(&zt).as_vec();
            let fd_theta = finite_differences(&theta, STEP, |t| objective(t, &z))?;
            let fd_z = finite_differences(&z, STEP, |zz| objective(&theta, zz))?;
            gradients_agree("θ", &g_theta, &fd_theta, cfg.grad_tol)?;
            gradients_agree("z", &g_z, &fd_z, cfg.grad_tol)
        },
    )
}
