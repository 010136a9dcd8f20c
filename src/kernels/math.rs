//! Elementwise mathematics for the fused kernels: the Bernoulli log-likelihood of a row
//! with `σ(ℓ)` for the backward pass, in `f64` with the standard library and in `f32`
//! with polynomial `exp` and `ln(1 + ·)` that the compiler vectorizes (no library call
//! inside the loop).

use dfdx::shapes::Unit;
use num_traits::Float;

/// The row kernels of the fused operations, per dtype.
pub(crate) trait RowMath: Unit + Float {
    /// `Σ_i x_i ℓ_i − softplus(ℓ_i)` over one row, with `softplus(ℓ) = max(ℓ, 0) +
    /// ln(1 + e^{−|ℓ|})`; when `sig` is given, writes `σ(ℓ_i)` into it, computed from
    /// the same `e^{−|ℓ|}` (`1/(1+e)` for `ℓ ≥ 0`, `e/(1+e)` otherwise).
    fn bernoulli_row(l: &[Self], x: &[Self], sig: Option<&mut [Self]>) -> Self;

    /// `(Σ_k x_k ℓ_k − (Σ_k x_k) lse, lse, Σ_k x_k)` of one row, with
    /// `lse = m + ln Σ_k e^{ℓ_k − m}` and `m = max_k ℓ_k` (so `Σ_k x_k log_softmax(ℓ)_k`
    /// and what its gradient needs); when `pi` is given, writes `softmax(ℓ)` into it.
    fn categorical_row(l: &[Self], x: &[Self], pi: Option<&mut [Self]>) -> (Self, Self, Self);
}

impl RowMath for f64 {
    #[inline(always)]
    fn categorical_row(l: &[f64], x: &[f64], pi: Option<&mut [f64]>) -> (f64, f64, f64) {
        let m = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (mut sum, mut dot, mut sx) = (0.0, 0.0, 0.0);
        for (&li, &xi) in l.iter().zip(x) {
            sum += (li - m).exp();
            dot += xi * li;
            sx += xi;
        }
        let lse = m + sum.ln();
        if let Some(pi) = pi {
            for (p, &li) in pi.iter_mut().zip(l) {
                *p = (li - lse).exp();
            }
        }
        (dot - sx * lse, lse, sx)
    }

    #[inline(always)]
    fn bernoulli_row(l: &[f64], x: &[f64], sig: Option<&mut [f64]>) -> f64 {
        let mut acc = 0.0;
        match sig {
            Some(sig) => {
                for ((&li, &xi), si) in l.iter().zip(x).zip(sig.iter_mut()) {
                    let e = (-li.abs()).exp();
                    acc += xi * li - li.max(0.0) - e.ln_1p();
                    let s = 1.0 / (1.0 + e);
                    *si = if li >= 0.0 { s } else { e * s };
                }
            }
            None => {
                for (&li, &xi) in l.iter().zip(x) {
                    acc += xi * li - li.max(0.0) - (-li.abs()).exp().ln_1p();
                }
            }
        }
        acc
    }
}

/// Lanes of the `f32` loops: one AVX-512 register (two AVX2 registers).
const LANES: usize = 16;

impl RowMath for f32 {
    #[inline(always)]
    fn categorical_row(l: &[f32], x: &[f32], pi: Option<&mut [f32]>) -> (f32, f32, f32) {
        let n = l.len().min(x.len());
        let full = n / LANES * LANES;
        // Lane-wise maxima, then the row's (the lanes vectorize; a single running
        // maximum would not).
        let mut mx = [f32::NEG_INFINITY; LANES];
        for start in (0..full).step_by(LANES) {
            let lc: &[f32; LANES] = l[start..start + LANES].try_into().unwrap_or(&[0.0; LANES]);
            for i in 0..LANES {
                mx[i] = mx[i].max(lc[i]);
            }
        }
        let m = l[full..n]
            .iter()
            .chain(&mx)
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        let (mut sum, mut dot, mut sx) = ([0.0f32; LANES], [0.0f32; LANES], [0.0f32; LANES]);
        let mut pi = pi;
        let mut scratch = [0.0f32; LANES];
        for start in (0..full).step_by(LANES) {
            let lc: &[f32; LANES] = l[start..start + LANES].try_into().unwrap_or(&[0.0; LANES]);
            let xc: &[f32; LANES] = x[start..start + LANES].try_into().unwrap_or(&[0.0; LANES]);
            let e_out: &mut [f32; LANES] = match pi.as_deref_mut() {
                Some(p) => match (&mut p[start..start + LANES]).try_into() {
                    Ok(p) => p,
                    Err(_) => &mut scratch,
                },
                None => &mut scratch,
            };
            for i in 0..LANES {
                let e = exp_nonpositive(lc[i] - m);
                e_out[i] = e;
                sum[i] += e;
                dot[i] += xc[i] * lc[i];
                sx[i] += xc[i];
            }
        }
        for (i, j) in (full..n).enumerate() {
            let e = exp_nonpositive(l[j] - m);
            if let Some(p) = pi.as_deref_mut() {
                p[j] = e;
            }
            sum[i] += e;
            dot[i] += x[j] * l[j];
            sx[i] += x[j];
        }
        let total: f32 = sum.iter().sum();
        let lse = m + total.ln();
        if let Some(p) = pi {
            let inv = 1.0 / total;
            for p in p[..n].iter_mut() {
                *p *= inv;
            }
        }
        let sx: f32 = sx.iter().sum();
        (dot.iter().sum::<f32>() - sx * lse, lse, sx)
    }

    #[inline(always)]
    fn bernoulli_row(l: &[f32], x: &[f32], sig: Option<&mut [f32]>) -> f32 {
        let mut acc = [0.0f32; LANES];
        let mut scratch = [0.0f32; LANES];
        let n = l.len().min(x.len());
        let full = n / LANES * LANES;
        let mut sig = sig;
        // Whole chunks of LANES with a fixed trip count (one vector instruction per
        // step), then the rest; element `start + i` always goes to lane `i`.
        for start in (0..full).step_by(LANES) {
            let lc: &[f32; LANES] = l[start..start + LANES].try_into().unwrap_or(&[0.0; LANES]);
            let xc: &[f32; LANES] = x[start..start + LANES].try_into().unwrap_or(&[0.0; LANES]);
            let s_out: &mut [f32; LANES] = match sig.as_deref_mut() {
                Some(s) => match (&mut s[start..start + LANES]).try_into() {
                    Ok(s) => s,
                    Err(_) => &mut scratch,
                },
                None => &mut scratch,
            };
            for i in 0..LANES {
                bernoulli_lane(lc[i], xc[i], &mut acc[i], &mut s_out[i]);
            }
        }
        for (i, j) in (full..n).enumerate() {
            let mut s = 0.0;
            bernoulli_lane(l[j], x[j], &mut acc[i], &mut s);
            if let Some(sig) = sig.as_deref_mut() {
                sig[j] = s;
            }
        }
        acc.iter().sum()
    }
}

/// One element of [`RowMath::bernoulli_row`] in `f32`: adds `x ℓ − softplus(ℓ)` to
/// `acc` and writes `σ(ℓ)` to `sig`.
#[inline(always)]
fn bernoulli_lane(li: f32, xi: f32, acc: &mut f32, sig: &mut f32) {
    let e = exp_nonpositive(-li.abs());
    *acc += xi * li - li.max(0.0) - ln_1p_unit(e);
    let s = 1.0 / (1.0 + e);
    *sig = if li >= 0.0 { s } else { e * s };
}

/// `e^x` for `x ≤ 0` in `f32`, branch-free: `x = n ln 2 + r` with `n = round(x / ln 2)`
/// and `|r| ≤ ½ ln 2` (Cody & Waite's two-part `ln 2`), `e^r` by its Taylor polynomial
/// to `r^7/7!` (truncation below `2e-8` relative), `2^n` by the exponent bits.
/// Inputs below −87.3 give `e^{−87.3} ≈ 1.2e-38` instead of a smaller or subnormal
/// value: absolute error below 1.3e-38. Within 2 ulp of the exact value elsewhere
/// (tested against `f64::exp`).
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5 · 2^23: adding it rounds to the nearest integer in the mantissa.
    const SHIFT: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 0.0);
    let t = x * LOG2E + SHIFT;
    let n = t - SHIFT;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // n ∈ [−126, 0]: the biased exponent n + 127 is a normal number's. n sits in the
    // low mantissa bits of t = 1.5 · 2²³ + n, whose low 9 bits are therefore n + 127
    // after adding 127: integer lane operations, where `n as i32` (a saturating
    // conversion) compiled to one scalar conversion per lane.
    let bits = t.to_bits().wrapping_add(127) << 23;
    p * f32::from_bits(bits)
}

/// `ln(1 + e)` for `e ∈ [0, 1]` in `f32`, without a library call:
/// `2 atanh(s) = 2 Σ_k s^{2k+1} / (2k+1)` with `s = e / (2 + e) ≤ ⅓`
/// (Abramowitz & Stegun 4.1.27), summed to `s^{15}`. The first omitted term is below
/// `2·(⅓)^{17}/17 < 1e-9` of the result; with f32 rounding the result is within
/// 2.4e-7 relative (two ulps; tested on 100,001 points), also as `e → 0` (no
/// cancellation).
#[inline(always)]
pub(crate) fn ln_1p_unit(e: f32) -> f32 {
    let s = e / (2.0 + e);
    let s2 = s * s;
    // Horner in s²: 1 + s²/3 + s⁴/5 + … + s¹⁴/15.
    let mut p = 1.0 / 15.0;
    for k in [13.0, 11.0, 9.0, 7.0, 5.0, 3.0, 1.0] {
        p = p * s2 + 1.0 / k;
    }
    2.0 * s * p
}

/// The elementwise functions of the gated activation ([`super::gated_activation`]),
/// per dtype: in `f64` from the standard library, in `f32` from [`exp_nonpositive`], so
/// that a loop over them vectorizes (no library call inside it).
pub(crate) trait GateMath: Unit + Float {
    /// `tanh(a)`.
    fn tanh_lane(a: Self) -> Self;
    /// `σ(b) = 1 / (1 + e^{−b})`, from `e^{−|b|}` (no overflow for either sign).
    fn sigmoid_lane(b: Self) -> Self;
}

impl GateMath for f64 {
    #[inline(always)]
    fn tanh_lane(a: f64) -> f64 {
        a.tanh()
    }
    #[inline(always)]
    fn sigmoid_lane(b: f64) -> f64 {
        let e = (-b.abs()).exp();
        let s = 1.0 / (1.0 + e);
        if b >= 0.0 {
            s
        } else {
            e * s
        }
    }
}

impl GateMath for f32 {
    /// `tanh|a| = −m / (2 + m)` with `m = e^{−2|a|} − 1`, the sign of `a` restored. For
    /// `2|a| ≤ ½ ln 2` (where `e^{−2|a|} − 1` would cancel) `m` is the Taylor series of
    /// `expm1` to the 8th power (truncation below 2e-10 relative); above it `m` is
    /// [`exp_nonpositive`]` − 1 ≤ −0.29`. Both are computed and one selected, so the
    /// loop stays branch-free. Within 3 ulp of the exact value (2.7 at worst against
    /// `f64::tanh` on 400,001 points from 10⁻¹³ to 20 in magnitude, tested).
    #[inline(always)]
    fn tanh_lane(a: f32) -> f32 {
        let y = -2.0 * a.abs();
        let mut p = 1.0 / 40320.0;
        for c in [
            1.0 / 5040.0,
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
        ] {
            p = p * y + c;
        }
        let small = y * p;
        let large = exp_nonpositive(y) - 1.0;
        let m = if y > -0.346_573_6 { small } else { large };
        (-m / (2.0 + m)).copysign(a)
    }
    #[inline(always)]
    fn sigmoid_lane(b: f32) -> f32 {
        let e = exp_nonpositive(-b.abs());
        let s = 1.0 / (1.0 + e);
        if b >= 0.0 {
            s
        } else {
            e * s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{exp_nonpositive, ln_1p_unit, GateMath, RowMath};

    #[test]
    fn ln_1p_unit_is_within_two_ulps_in_f32() {
        for i in 0..=100_000 {
            let e = i as f32 / 100_000.0;
            let want = (e as f64).ln_1p();
            let got = ln_1p_unit(e) as f64;
            assert!(
                (got - want).abs() <= 2.4e-7 * want.max(1e-30),
                "ln_1p({e}) = {got}, want {want}"
            );
        }
        assert_eq!(ln_1p_unit(0.0f32), 0.0);
        assert_eq!(ln_1p_unit(1e-30f32), 1e-30);
    }

    #[test]
    fn exp_nonpositive_is_within_two_ulps_in_f32() {
        for i in 0..=200_000 {
            let x = -(i as f32) * 87.0 / 200_000.0;
            let want = (x as f64).exp();
            let got = exp_nonpositive(x) as f64;
            assert!(
                (got - want).abs() <= 2.4e-7 * want,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(-1000.0) < 1.3e-38);
    }

    #[test]
    fn f32_row_matches_the_f64_row() {
        let l: Vec<f64> = (0..53).map(|i| (i as f64 - 26.0) * 1.7).collect();
        let x: Vec<f64> = (0..53).map(|i| ((i * 7) % 5) as f64 / 4.0).collect();
        let mut s64 = vec![0.0; 53];
        let want = f64::bernoulli_row(&l, &x, Some(&mut s64));
        let l32: Vec<f32> = l.iter().map(|&v| v as f32).collect();
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let mut s32 = vec![0.0f32; 53];
        let got = f32::bernoulli_row(&l32, &x32, Some(&mut s32)) as f64;
        assert!((got - want).abs() <= 1e-5 * want.abs(), "{got} vs {want}");
        assert_eq!(f32::bernoulli_row(&l32, &x32, None), got as f32);
        for (a, b) in s32.iter().zip(&s64) {
            assert!((*a as f64 - b).abs() <= 2e-7, "σ: {a} vs {b}");
        }
    }

    /// The largest distance in units of the last place of `want` (as an `f32`).
    fn ulps(got: f32, want: f64) -> f64 {
        let w = want as f32;
        let ulp = (f32::from_bits(w.abs().to_bits() + 1) - w.abs()) as f64;
        (got as f64 - want).abs() / ulp
    }

    #[test]
    fn f32_tanh_is_within_three_ulps() {
        let mut worst = (0.0, 0.0f32);
        for i in -200_000..=200_000 {
            // Dense near 0 (down to 1e-10), then out to ±20.
            let u = i as f64 / 200_000.0;
            let a = (u.signum() * (u.abs() * 23.0).exp_m1() * 2e-9) as f32;
            let e = ulps(f32::tanh_lane(a), (a as f64).tanh());
            if e > worst.0 {
                worst = (e, a);
            }
        }
        assert!(worst.0 <= 3.0, "{} ulp at a = {}", worst.0, worst.1);
        assert_eq!(f32::tanh_lane(0.0), 0.0);
        assert_eq!(f32::tanh_lane(-30.0), -1.0);
        assert_eq!(f32::tanh_lane(1e-30), 1e-30);
        assert!(f32::tanh_lane(f32::NAN).is_nan());
    }

    #[test]
    fn f32_sigmoid_is_within_four_ulps() {
        for i in -200_000..=200_000 {
            let b = i as f32 * 80.0 / 200_000.0;
            let want = 1.0 / (1.0 + (-(b as f64)).exp());
            let got = f32::sigmoid_lane(b);
            assert!(ulps(got, want) <= 4.0, "σ({b}) = {got}, want {want}");
        }
        assert_eq!(f32::sigmoid_lane(0.0), 0.5);
        assert_eq!(f64::sigmoid_lane(-800.0), 0.0);
        assert_eq!(f64::sigmoid_lane(800.0), 1.0);
    }
}
