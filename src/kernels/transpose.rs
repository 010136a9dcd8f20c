//! Transposing a column-major product back into row-major rows: `dst = srcᵀ + bias`
//! (a layer's output) or `dst += srcᵀ` (an input gradient), in 16 × 16 blocks
//! transposed in AVX-512 registers where the processor has them, else 8 × 8 blocks in
//! AVX registers.

use std::any::TypeId;

use dfdx::shapes::Unit;

/// What [`transpose_into`] does with the transposed values.
#[derive(Clone, Copy)]
pub(crate) enum Store<'a, F> {
    /// `dst[r, c] = src[c, r] + bias[c]`; `dst` need not be initialized.
    Bias(&'a [F]),
    /// `dst[r, c] += src[c, r]`.
    Add,
}

/// Writes the transpose of the `rows × cols` column-major `src` (`src[c · rows + r]`
/// is element `(r, c)`) into the row-major `dst` (`dst[r · cols + c]`), as `how` says.
///
/// # Safety
/// `src` holds `rows · cols` values; `dst` points to `rows · cols` writable elements
/// (initialized for [`Store::Add`]) that do not overlap `src`; a bias holds `cols`.
pub(crate) unsafe fn transpose_into<F: Unit + num_traits::Float>(
    src: &[F],
    rows: usize,
    cols: usize,
    how: Store<'_, F>,
    dst: *mut F,
) {
    debug_assert!(src.len() >= rows * cols);
    let (mut r0, mut c0) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if TypeId::of::<F>() == TypeId::of::<f32>() {
        type Block = unsafe fn(*const f32, usize, *mut f32, usize, Option<*const f32>);
        let blocks: Option<(usize, Block)> = if std::arch::is_x86_feature_detected!("avx512f") {
            Some((16, block16))
        } else if std::arch::is_x86_feature_detected!("avx") {
            Some((8, block8))
        } else {
            None
        };
        if let Some((side, block)) = blocks {
            let (rb, cb) = (rows / side * side, cols / side * side);
            let src32 = src.as_ptr().cast::<f32>();
            let dst32 = dst.cast::<f32>();
            let bias = match how {
                Store::Bias(b) => Some(b.as_ptr().cast::<f32>()),
                Store::Add => None,
            };
            for r in (0..rb).step_by(side) {
                for c in (0..cb).step_by(side) {
                    // SAFETY: the processor has the block's features (checked above);
                    // the block lies inside `src` and `dst`.
                    block(
                        src32.add(c * rows + r),
                        rows,
                        dst32.add(r * cols + c),
                        cols,
                        bias.map(|b| b.add(c)),
                    );
                }
            }
            // The rest (a ragged right edge and bottom edge) element by element.
            scalar(src, rows, cols, how, dst, (0, rb), (cb, cols));
            (r0, c0) = (rb, 0);
        }
    }
    scalar(src, rows, cols, how, dst, (r0, rows), (c0, cols));
}

/// [`transpose_into`] for rows `r_lo..r_hi` and columns `c_lo..c_hi`, one element at a
/// time.
///
/// # Safety
/// As [`transpose_into`], for the rows and columns given.
unsafe fn scalar<F: Unit + num_traits::Float>(
    src: &[F],
    rows: usize,
    cols: usize,
    how: Store<'_, F>,
    dst: *mut F,
    (r_lo, r_hi): (usize, usize),
    (c_lo, c_hi): (usize, usize),
) {
    for r in r_lo..r_hi {
        let row = dst.add(r * cols);
        for c in c_lo..c_hi {
            let v = src[c * rows + r];
            match how {
                Store::Bias(b) => row.add(c).write(v + b[c]),
                Store::Add => *row.add(c) = *row.add(c) + v,
            }
        }
    }
}

/// One 16 × 16 block: reads 16 columns of 16 consecutive rows (`src + c · lds`),
/// writes 16 rows of 16 consecutive columns (`dst + r · ldd`), adding the bias (16
/// values) or the destination's own values.
///
/// # Safety
/// The processor must have AVX-512F; `src + c · lds + 0..16` must be readable and
/// `dst + r · ldd + 0..16` writable (and initialized without a bias) for `r, c < 16`,
/// without overlap, and a bias must hold 16 values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block16(
    src: *const f32,
    lds: usize,
    dst: *mut f32,
    ldd: usize,
    bias: Option<*const f32>,
) {
    use std::arch::x86_64::*;
    let mut v = [_mm512_setzero_ps(); 16];
    for (c, v) in v.iter_mut().enumerate() {
        *v = _mm512_loadu_ps(src.add(c * lds));
    }
    let mut t = [_mm512_setzero_ps(); 16];
    // 2 × 2 blocks of single elements, then of pairs, of 4 × 4 and of 8 × 8 blocks.
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
    for i in 0..4 {
        let (a, b) = (_mm512_castps_pd(t[4 * i]), _mm512_castps_pd(t[4 * i + 2]));
        let (c, d) = (
            _mm512_castps_pd(t[4 * i + 1]),
            _mm512_castps_pd(t[4 * i + 3]),
        );
        v[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        v[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        v[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        v[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    for i in 0..2 {
        for q in 0..4 {
            t[8 * i + q] = _mm512_shuffle_f32x4::<0x88>(v[8 * i + q], v[8 * i + 4 + q]);
            t[8 * i + 4 + q] = _mm512_shuffle_f32x4::<0xdd>(v[8 * i + q], v[8 * i + 4 + q]);
        }
    }
    for q in 0..8 {
        v[q] = _mm512_shuffle_f32x4::<0x88>(t[q], t[8 + q]);
        v[8 + q] = _mm512_shuffle_f32x4::<0xdd>(t[q], t[8 + q]);
    }
    for (r, v) in v.iter().enumerate() {
        let at = dst.add(r * ldd);
        let add = match bias {
            Some(b) => _mm512_loadu_ps(b),
            None => _mm512_loadu_ps(at),
        };
        _mm512_storeu_ps(at, _mm512_add_ps(*v, add));
    }
}

/// One 8 × 8 block in AVX registers (the processors without AVX-512): as [`block16`].
///
/// # Safety
/// As [`block16`] with 8 for 16, on a processor with AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn block8(src: *const f32, lds: usize, dst: *mut f32, ldd: usize, bias: Option<*const f32>) {
    use std::arch::x86_64::*;
    let mut v = [_mm256_setzero_ps(); 8];
    for (c, v) in v.iter_mut().enumerate() {
        *v = _mm256_loadu_ps(src.add(c * lds));
    }
    // Pairs of single elements, then of pairs, then the two 128-bit halves.
    let mut t = [_mm256_setzero_ps(); 8];
    for i in 0..4 {
        t[2 * i] = _mm256_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
    for i in 0..2 {
        let (a, b, c, d) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
        v[4 * i] = _mm256_shuffle_ps::<0x44>(a, c);
        v[4 * i + 1] = _mm256_shuffle_ps::<0xee>(a, c);
        v[4 * i + 2] = _mm256_shuffle_ps::<0x44>(b, d);
        v[4 * i + 3] = _mm256_shuffle_ps::<0xee>(b, d);
    }
    for q in 0..4 {
        t[q] = _mm256_permute2f128_ps::<0x20>(v[q], v[4 + q]);
        t[4 + q] = _mm256_permute2f128_ps::<0x31>(v[q], v[4 + q]);
    }
    for (r, v) in t.iter().enumerate() {
        let at = dst.add(r * ldd);
        let add = match bias {
            Some(b) => _mm256_loadu_ps(b),
            None => _mm256_loadu_ps(at),
        };
        _mm256_storeu_ps(at, _mm256_add_ps(*v, add));
    }
}

#[cfg(test)]
mod tests {
    use super::{transpose_into, Store};

    /// Every shape around the 16 × 16 and 8 × 8 blocks, both modes, against the index formula.
    #[test]
    fn transposes_every_element_once() {
        for (rows, cols) in [
            (64, 400),
            (16, 16),
            (17, 33),
            (5, 3),
            (48, 784),
            (31, 16),
            (8, 8),
            (9, 23),
            (15, 7),
        ] {
            let src: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5).collect();
            let bias: Vec<f32> = (0..cols).map(|c| 1e5 * c as f32).collect();
            let mut out = vec![f32::NAN; rows * cols];
            // SAFETY: `src` and `out` hold rows · cols values, `bias` cols; no overlap.
            unsafe { transpose_into(&src, rows, cols, Store::Bias(&bias), out.as_mut_ptr()) };
            let mut acc = vec![1.0f32; rows * cols];
            // SAFETY: as above, `acc` initialized.
            unsafe { transpose_into(&src, rows, cols, Store::Add, acc.as_mut_ptr()) };
            for r in 0..rows {
                for c in 0..cols {
                    let want = src[c * rows + r];
                    assert_eq!(
                        out[r * cols + c],
                        want + bias[c],
                        "({r}, {c}) of {rows}×{cols}"
                    );
                    assert_eq!(acc[r * cols + c], want + 1.0, "({r}, {c}) of {rows}×{cols}");
                }
            }
            let src64: Vec<f64> = src.iter().map(|&v| v as f64).collect();
            let mut out64 = vec![0.0f64; rows * cols];
            // SAFETY: as above, in f64.
            unsafe { transpose_into(&src64, rows, cols, Store::Add, out64.as_mut_ptr()) };
            assert!(out64.iter().zip(&acc).all(|(a, b)| *a + 1.0 == *b as f64));
        }
    }
}
