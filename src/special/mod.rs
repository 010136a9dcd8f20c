//! Differentiable special functions on tensors: [`lgamma`], [`digamma`], [`trigamma`],
//! [`log_beta`], [`softplus`] and [`log_sigmoid`], for the count, positive and
//! proportion families (Poisson, Gamma, Beta, negative binomial, …).
//!
//! dfdx 0.13 has no `lgamma` or `digamma`. Here each is an element-wise operation whose
//! values come from the `f64` kernels of [`scalar`] and whose gradient is the next
//! function of the family (`d ln Γ/dx = ψ`, `dψ/dx = ψ₁`).
//!
//! # How the gradient is recorded
//! With a tape, the result is built as `(x ⊙ f′(x₀) − x₀ f′(x₀)) + f(x₀)` from constant
//! tensors `f(x₀)`, `f′(x₀)` and `x₀ f′(x₀)` computed from `x`'s values `x₀`. The first
//! difference is exactly zero in IEEE arithmetic (the same product twice), so the
//! value is `f(x₀)` to the last bit, and dfdx's own `mul`/`sub`/`add` carry the gradient
//! `f′(x₀) · ∂L/∂y` back to `x` on every device. First derivatives only: a gradient of
//! a gradient through these functions is not available. Where `f′(x₀)` is not finite
//! (`ψ₁` beyond `f64`'s range, for `x < 1e-154`), that element's gradient is 0.
//!
//! # Devices
//! On the `Cpu` the values are read from the tensor's buffer in place. On CUDA they
//! are copied to the host, computed there, and the results copied back: correct, but a
//! host round trip per call (dfdx 0.13 has no kernels for these functions).

use dfdx::prelude::*;

use crate::kernels::ops::{cst, host_values, to_f64_vec, Real};

pub mod scalar;

/// Applies `f` element-wise with gradient `df` (see the module docs).
fn unary<S: Shape, E: Real, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
    f: fn(f64) -> f64,
    df: fn(f64) -> f64,
) -> Tensor<S, E, D, T> {
    let xs = to_f64_vec(&x);
    let value: Vec<f64> = xs.iter().map(|&v| f(v)).collect();
    let slope: Vec<f64> = if T::OWNS_TAPE {
        xs.iter().map(|&v| df(v)).collect()
    } else {
        Vec::new()
    };
    with_gradient(x, &value, slope)
}

/// The values `value` (one per element of `x`) carrying the gradient `slope · ∂L/∂y` back
/// to `x`: `(x ⊙ s − x₀ ⊙ s) + value` (see the module docs). Without a tape, `slope` is
/// not read (pass an empty `Vec`).
pub(crate) fn with_gradient<S: Shape, E: Real, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
    value: &[f64],
    slope: Vec<f64>,
) -> Tensor<S, E, D, T> {
    let dev = x.device().clone();
    let shape = *x.shape();
    let value = dev.tensor_from_vec(value.iter().map(|&v| cst::<E>(v)).collect(), shape);
    if !T::OWNS_TAPE {
        return value.put_tape(x.split_tape().1);
    }
    linear_term(x, slope) + value
}

/// `x ⊙ g − x₀ ⊙ g`, `x₀` the values of `x`: exactly zero (the same IEEE product twice),
/// carrying the gradient `g` to `x`. A non-finite entry of `g`, or one whose product
/// with `x₀` is not finite, gives 0 there.
pub(crate) fn linear_term<S: Shape, E: Real, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
    g: Vec<f64>,
) -> Tensor<S, E, D, T> {
    let dev = x.device().clone();
    let shape = *x.shape();
    let (mut slope, mut offset) = (Vec::with_capacity(g.len()), Vec::with_capacity(g.len()));
    for (v, g) in host_values(&x.retaped::<NoneTape>()).iter().zip(g) {
        let d = cst::<E>(g);
        let d = if d.is_finite() && (*v * d).is_finite() {
            d
        } else {
            E::zero()
        };
        slope.push(d);
        offset.push(*v * d);
    }
    let (slope, offset) = (
        dev.tensor_from_vec(slope, shape),
        dev.tensor_from_vec(offset, shape),
    );
    x * slope - offset
}

/// `ln |Γ(x)|` element-wise, with gradient `ψ(x)` ([`digamma`]).
///
/// Shapes: any; the result has `x`'s shape. Poles (0 and the negative integers) give
/// `+∞`, as `torch.lgamma`. Accuracy: [`scalar::lgamma`].
///
/// # Examples
/// ```
/// use dfdx::prelude::*;
/// use latent::special::lgamma;
///
/// let dev = Cpu::default();
/// let x = dev.tensor([1.0f64, 2.0, 5.0]);
/// let y = lgamma(x).as_vec();
/// assert_eq!(&y[..2], &[0.0, 0.0]);
/// assert!((y[2] - 24f64.ln()).abs() < 1e-14);
/// ```
pub fn lgamma<S: Shape, E: Real, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
) -> Tensor<S, E, D, T> {
    unary(x, scalar::lgamma, scalar::digamma)
}

/// The digamma function `ψ(x) = d ln Γ(x)/dx` element-wise, with gradient `ψ₁(x)`
/// ([`trigamma`]).
///
/// Shapes: any. `ψ(0) = −∞`, NaN at the negative integers, as `torch.digamma`.
/// Accuracy: [`scalar::digamma`].
///
/// # Examples
/// ```
/// use dfdx::prelude::*;
/// use latent::special::{digamma, scalar::EULER_GAMMA};
///
/// let dev = Cpu::default();
/// let y = digamma(dev.tensor([1.0f64])).as_vec();
/// assert!((y[0] + EULER_GAMMA).abs() < 1e-15);
/// ```
pub fn digamma<S: Shape, E: Real, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
) -> Tensor<S, E, D, T> {
    unary(x, scalar::digamma, scalar::trigamma)
}

/// The trigamma function `ψ₁(x) = d²ln Γ(x)/dx²` element-wise, without gradient (no
/// tape: its own derivative, the tetragamma function, is not implemented).
///
/// Shapes: any. `+∞` at 0 and the negative integers. Accuracy: [`scalar::trigamma`].
pub fn trigamma<S: Shape, E: Real, D: Device<E>>(x: Tensor<S, E, D>) -> Tensor<S, E, D> {
    unary(x, scalar::trigamma, |_| 0.0)
}

/// `ln B(a, b) = ln Γ(a) + ln Γ(b) − ln Γ(a + b)` element-wise, with gradients
/// `ψ(a) − ψ(a + b)` and `ψ(b) − ψ(a + b)`.
///
/// Shapes: `a` and `b` have the same shape, the result too.
///
/// # Examples
/// ```
/// use dfdx::prelude::*;
/// use latent::special::log_beta;
///
/// let dev = Cpu::default();
/// let y = log_beta(dev.tensor([2.0f64]), dev.tensor([3.0f64])).as_vec();
/// assert!((y[0] - (1.0f64 / 12.0).ln()).abs() < 1e-14); // B(2, 3) = 1/12
/// ```
pub fn log_beta<S: Shape, E: Real, D: Device<E>, T: Tape<E, D>>(
    a: Tensor<S, E, D, T>,
    b: Tensor<S, E, D, T>,
) -> Tensor<S, E, D, T> {
    let sum = a.with_empty_tape() + b.with_empty_tape();
    lgamma(a) + lgamma(b) - lgamma(sum)
}

/// `softplus(x) = ln(1 + eˣ)` element-wise, computed stably as
/// `max(x, 0) + ln(1 + e^{−|x|})` (dfdx's `bce_with_logits` against a zero target),
/// with gradient `σ(x)`.
///
/// Shapes: any.
///
/// # Examples
/// ```
/// use dfdx::prelude::*;
/// use latent::special::softplus;
///
/// let dev = Cpu::default();
/// let y = softplus(dev.tensor([0.0f64, 800.0, -800.0])).as_vec();
/// assert!((y[0] - 2f64.ln()).abs() < 1e-15);
/// assert_eq!(y[1], 800.0);
/// assert_eq!(y[2], 0.0);
/// ```
pub fn softplus<S: Shape, E: Real, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
) -> Tensor<S, E, D, T> {
    let zeros = x.device().zeros_like(x.shape());
    x.bce_with_logits(zeros.put_tape(T::default()))
}

/// `ln σ(x) = −softplus(−x)` element-wise, stable for large `|x|`, with gradient
/// `σ(−x)`.
///
/// Shapes: any.
pub fn log_sigmoid<S: Shape, E: Real, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
) -> Tensor<S, E, D, T> {
    -softplus(-x)
}
