//! Scalar special functions in `f64`: `ln Γ`, digamma, trigamma, and the derivative of
//! a standard Gamma draw with respect to its concentration.
//!
//! Accuracy (checked against statrs and PyTorch in `tests/special.rs`): within 1e-12
//! relative, or 1e-14 absolute where the value is near zero (`ln Γ` at 1 and 2, the
//! digamma near its positive root 1.4616…), for arguments from 1e-300 to 1e300.

use std::f64::consts::PI;
use std::sync::OnceLock;

/// The Euler–Mascheroni constant γ.
pub const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// `ln √(2π)`.
const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// Where the asymptotic (Stirling) series take over.
const ASYMPTOTIC: f64 = 15.0;

/// Terms of the Taylor series of `ln Γ` about 1 and 2.
const TAYLOR_TERMS: usize = 40;

/// `ζ(k) − 1` for `k = 0..TAYLOR_TERMS` (entries 0 and 1 unused), by direct summation to
/// `n = 64` and the Euler–Maclaurin tail `Σ_{n>M} n^{-k} = M^{1−k}/(k−1) − M^{−k}/2 +
/// k M^{−k−1}/12 − k(k+1)(k+2) M^{−k−3}/720 + …` (Abramowitz & Stegun 23.1.30).
fn zeta_minus_one() -> &'static [f64; TAYLOR_TERMS] {
    static TABLE: OnceLock<[f64; TAYLOR_TERMS]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut z = [0.0; TAYLOR_TERMS];
        let m = 64.0f64;
        for (k, zk) in z.iter_mut().enumerate().skip(2) {
            let kf = k as f64;
            // The tail beyond m first (smallest), then the sum from n = m down to 2.
            let mut s = m.powf(1.0 - kf) / (kf - 1.0) - 0.5 * m.powf(-kf)
                + kf / 12.0 * m.powf(-kf - 1.0)
                - kf * (kf + 1.0) * (kf + 2.0) / 720.0 * m.powf(-kf - 3.0)
                + kf * (kf + 1.0) * (kf + 2.0) * (kf + 3.0) * (kf + 4.0) / 30240.0
                    * m.powf(-kf - 5.0);
            for n in (2..=64).rev() {
                s += (n as f64).powf(-kf);
            }
            *zk = s;
        }
        z
    })
}

/// `Σ_{k≥2} (ζ(k) − 1) (−z)^k / k`, the part of the Taylor series of `ln Γ` about 1 and 2
/// beyond its linear and logarithmic terms (A&S 6.1.33), for `|z| ≤ ¼`.
fn zeta_series(z: f64) -> f64 {
    let mut s = 0.0;
    let mut p = -z; // (−z)^k, from k = 1
    for (k, c) in zeta_minus_one().iter().enumerate().skip(2) {
        p *= -z;
        s += c * p / k as f64;
    }
    s
}

/// `ln Γ(1 + z)` for `|z| ≤ ¼`: `−γz + Σ_{k≥2} (−1)^k ζ(k) z^k / k` (A&S 6.1.33), with
/// `ζ(k) = 1 + (ζ(k) − 1)`: the ones sum to `z − ln(1 + z)`.
fn lgamma1p_taylor(z: f64) -> f64 {
    (1.0 - EULER_GAMMA) * z - z.ln_1p() + zeta_series(z)
}

/// `ln Γ(2 + z) = ln Γ(1 + z) + ln(1 + z)` for `|z| ≤ ¼`:
/// `(1 − γ) z + Σ_{k≥2} (−1)^k (ζ(k) − 1) z^k / k`.
fn lgamma2p_taylor(z: f64) -> f64 {
    (1.0 - EULER_GAMMA) * z + zeta_series(z)
}

/// Stirling's series for `x ≥ 15`: `(x − ½) ln x − x + ln √(2π) + Σ B_{2k} / (2k(2k−1)
/// x^{2k−1})` (A&S 6.1.40), truncated where the next term is below 1e-17.
fn lgamma_stirling(x: f64) -> f64 {
    let r = 1.0 / x;
    let r2 = r * r;
    let series = r
        * (1.0 / 12.0
            + r2 * (-1.0 / 360.0
                + r2 * (1.0 / 1260.0
                    + r2 * (-1.0 / 1680.0
                        + r2 * (1.0 / 1188.0 + r2 * (-691.0 / 360_360.0 + r2 / 156.0))))));
    (x - 0.5) * x.ln() - x + LN_SQRT_2PI + series
}

/// `sin(πx)`, exact at the integers and accurate for large `|x|` (the argument is
/// reduced modulo 2 before multiplying by π).
pub fn sin_pi(x: f64) -> f64 {
    let r = x % 2.0; // exact
    let r = if r > 1.0 {
        r - 2.0
    } else if r < -1.0 {
        r + 2.0
    } else {
        r
    };
    // r in [−1, 1]: fold to [−½, ½] by sin(π(1 − r)) = sin(πr).
    if r > 0.5 {
        (PI * (1.0 - r)).sin()
    } else if r < -0.5 {
        (PI * (-1.0 - r)).sin()
    } else {
        (PI * r).sin()
    }
}

/// `ln |Γ(x)|`, the log-gamma function (PyTorch's `torch.lgamma`, C's `lgamma`).
///
/// # Formula
/// - `x ≥ 15`: Stirling's series (Abramowitz & Stegun 6.1.40);
/// - `|x − 1| ≤ ¼` or `|x − 2| ≤ ¼`: the Taylor series about 1 or 2 in `ζ(k)` (A&S
///   6.1.33), so the zeros at 1 and 2 keep their relative accuracy;
/// - `0 < x < ½`: `ln Γ(x + 1) − ln x`; elsewhere below 15, the recurrence
///   `ln Γ(x) = ln Γ(x + n) − ln(x (x+1) ⋯ (x+n−1))` up to the asymptotic range;
/// - `x < 0`: the reflection `ln |Γ(x)| = ln π − ln |sin πx| − ln Γ(1 − x)`.
///
/// Returns `+∞` at `0` and the negative integers (poles), `+∞` for `+∞`, NaN for NaN.
///
/// # Examples
/// ```
/// use latent::special::scalar::lgamma;
/// assert!((lgamma(5.0) - 24f64.ln()).abs() < 1e-14);
/// assert!((lgamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-15);
/// assert_eq!(lgamma(1.0), 0.0);
/// ```
pub fn lgamma(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x.is_infinite() {
        return f64::INFINITY;
    }
    if x <= 0.0 {
        if x == x.floor() {
            return f64::INFINITY;
        }
        let s = sin_pi(x).abs();
        return PI.ln() - s.ln() - lgamma(1.0 - x);
    }
    if x >= ASYMPTOTIC {
        return lgamma_stirling(x);
    }
    if (x - 1.0).abs() <= 0.25 {
        return lgamma1p_taylor(x - 1.0);
    }
    if (x - 2.0).abs() <= 0.25 {
        return lgamma2p_taylor(x - 2.0);
    }
    if x < 0.5 {
        return lgamma(x + 1.0) - x.ln();
    }
    let mut y = x;
    let mut prod = 1.0;
    while y < ASYMPTOTIC {
        prod *= y;
        y += 1.0;
    }
    lgamma_stirling(y) - prod.ln()
}

/// The digamma function `ψ(x) = d ln Γ(x) / dx` (PyTorch's `torch.digamma`).
///
/// # Formula
/// The recurrence `ψ(x) = ψ(x + 1) − 1/x` up to `x ≥ 15`, then the asymptotic series
/// `ψ(x) = ln x − 1/(2x) − Σ B_{2k} / (2k x^{2k})` (A&S 6.3.18); for `x < 0` the
/// reflection `ψ(x) = ψ(1 − x) − π / tan(πx)` (A&S 6.3.7).
///
/// Returns `−∞` at 0 (as PyTorch), NaN at the negative integers, `+∞` for `+∞`.
///
/// # Examples
/// ```
/// use latent::special::scalar::{digamma, EULER_GAMMA};
/// assert!((digamma(1.0) + EULER_GAMMA).abs() < 1e-15);
/// assert!((digamma(2.0) - (1.0 - EULER_GAMMA)).abs() < 1e-15);
/// ```
pub fn digamma(x: f64) -> f64 {
    if x.is_nan() || x == f64::NEG_INFINITY {
        return f64::NAN;
    }
    if x == f64::INFINITY {
        return f64::INFINITY;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x < 0.0 {
        if x == x.floor() {
            return f64::NAN;
        }
        // π / tan(πx) = π cos(πx) / sin(πx), with cos(πx) = sin(π(x + ½)).
        return digamma(1.0 - x) - PI * sin_pi(x + 0.5) / sin_pi(x);
    }
    let mut acc = 0.0;
    let mut y = x;
    while y < ASYMPTOTIC {
        acc -= 1.0 / y;
        y += 1.0;
    }
    let r2 = 1.0 / (y * y);
    let series = r2
        * (1.0 / 12.0
            - r2 * (1.0 / 120.0
                - r2 * (1.0 / 252.0
                    - r2 * (1.0 / 240.0 - r2 * (1.0 / 132.0 - r2 * (691.0 / 32_760.0))))));
    acc + y.ln() - 0.5 / y - series
}

/// The trigamma function `ψ₁(x) = d²ln Γ(x) / dx²`, the derivative of [`digamma`]
/// (PyTorch's `torch.polygamma(1, x)`).
///
/// # Formula
/// The recurrence `ψ₁(x) = ψ₁(x + 1) + 1/x²` up to `x ≥ 15`, then `ψ₁(x) = 1/x + 1/(2x²)
/// + Σ B_{2k} / x^{2k+1}` (A&S 6.4.12); for `x < 0` the reflection
/// `ψ₁(x) = π² / sin²(πx) − ψ₁(1 − x)` (A&S 6.4.7).
///
/// Returns `+∞` at 0 and the negative integers.
///
/// # Examples
/// ```
/// use latent::special::scalar::trigamma;
/// let pi2_6 = std::f64::consts::PI.powi(2) / 6.0;
/// assert!((trigamma(1.0) - pi2_6).abs() < 1e-14);
/// ```
pub fn trigamma(x: f64) -> f64 {
    if x.is_nan() || x == f64::NEG_INFINITY {
        return f64::NAN;
    }
    if x == f64::INFINITY {
        return 0.0;
    }
    if x <= 0.0 {
        if x == x.floor() {
            return f64::INFINITY;
        }
        let s = sin_pi(x);
        return PI * PI / (s * s) - trigamma(1.0 - x);
    }
    let mut acc = 0.0;
    let mut y = x;
    while y < ASYMPTOTIC {
        acc += 1.0 / (y * y);
        y += 1.0;
    }
    let r = 1.0 / y;
    let r2 = r * r;
    let series = r
        + 0.5 * r2
        + r * r2
            * (1.0 / 6.0
                - r2 * (1.0 / 30.0
                    - r2 * (1.0 / 42.0
                        - r2 * (1.0 / 30.0 - r2 * (5.0 / 66.0 - r2 * (691.0 / 2730.0))))));
    acc + series
}

/// `ln B(a, b) = ln Γ(a) + ln Γ(b) − ln Γ(a + b)`, the log of the Beta function.
///
/// # Examples
/// ```
/// use latent::special::scalar::log_beta;
/// assert!((log_beta(2.0, 3.0) - (1.0f64 / 12.0).ln()).abs() < 1e-14);
/// ```
pub fn log_beta(a: f64, b: f64) -> f64 {
    lgamma(a) + lgamma(b) - lgamma(a + b)
}

/// `∂z/∂α` of a standard Gamma draw `z ~ Gamma(α, 1)` with its uniform noise held fixed:
/// the implicit reparameterization gradient `−(∂P(α, z)/∂α) / p(z; α)` of Figurnov,
/// Mohamed & Mnih 2018 (eq. 6), where `P` is the regularized lower incomplete gamma
/// function (the CDF) and `p` the density.
///
/// # Formula
/// From the series `P(α, z) = e^{−z} Σ_{n≥0} z^{α+n} / Γ(α+n+1)` (A&S 6.5.29),
/// differentiated term by term: `∂P/∂α = Σ_n t_n (ln z − ψ(α+n+1))`, `t_n` the series'
/// terms; divided by `p(z; α) = z^{α−1} e^{−z} / Γ(α)` the ratios are `t_n / p = z^{n+1}
/// / (α (α+1) ⋯ (α+n))`, summed until they fall below 1e-17 of the sum past their
/// peak. Where that would take over 10⁶ terms (`z` above about 10⁶) the derivative of
/// the Wilson–Hilferty approximation `z ≈ α (1 − 1/(9α) + ε/(3√α))³` is used instead.
///
/// Returns 0 for `z = 0` (a draw that underflowed) and NaN for invalid arguments.
///
/// # Examples
/// ```
/// use latent::special::scalar::standard_gamma_grad;
/// // Gamma(1, 1) is Exponential(1): z = −ln(1 − u) does not depend on α, but P does:
/// // ∂z/∂α at α = 1 is (by the formula) −∂P/∂α / e^{−z}; checked against finite
/// // differences of the quantile in `tests/special.rs`.
/// assert!(standard_gamma_grad(1.0, 1.0).is_finite());
/// ```
pub fn standard_gamma_grad(alpha: f64, z: f64) -> f64 {
    if !(alpha > 0.0 && alpha.is_finite() && z >= 0.0 && z.is_finite()) {
        return f64::NAN;
    }
    if z == 0.0 {
        return 0.0;
    }
    let ln_z = z.ln();
    let mut psi = digamma(alpha + 1.0);
    let mut ratio = z / alpha;
    let mut sum = ratio * (ln_z - psi);
    let mut n = 0.0;
    let mut converged = false;
    for _ in 0..1_000_000 {
        n += 1.0;
        psi += 1.0 / (alpha + n);
        ratio *= z / (alpha + n);
        let term = ratio * (ln_z - psi);
        sum += term;
        if !ratio.is_finite() {
            break;
        }
        if alpha + n > z && term.abs() <= 1e-17 * sum.abs().max(1e-300) {
            converged = true;
            break;
        }
    }
    if converged {
        return -sum;
    }
    // Wilson–Hilferty: ε = 3√α ((z/α)^{1/3} − 1 + 1/(9α)), z(α) with ε held fixed.
    let c = (z / alpha).cbrt();
    let eps = 3.0 * alpha.sqrt() * (c - 1.0 + 1.0 / (9.0 * alpha));
    let base = 1.0 - 1.0 / (9.0 * alpha) + eps / (3.0 * alpha.sqrt());
    let dbase = 1.0 / (9.0 * alpha * alpha) - eps / (6.0 * alpha * alpha.sqrt());
    base.powi(3) + 3.0 * alpha * base * base * dbase
}
