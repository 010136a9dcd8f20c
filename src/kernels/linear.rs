//! Affine maps of rows, `y = x Wᵀ + b` ([`linear`], PyTorch's layout) and
//! `y = x W + b` ([`affine_rows`], a convolution's im2col layout), each one operation
//! with its own backward pass.

use dfdx::prelude::*;
use dfdx::shapes::Unit;

use super::cpu::{contiguous, is_cpu, same, slice};
use super::fused::{finish, Input};
use super::gemm::{gemm, Mat};
use super::transpose::{transpose_into, Store};
use crate::kernels::ops::Real;

/// A `(batch, N)` tensor.
type Rows<B, N, E, D, T> = Tensor<(B, N), E, D, T>;

/// `y = x Wᵀ + b`: `x` of shape `(batch, I)`, `weight` `(O, I)` (PyTorch's and dfdx's
/// layout), `bias` `(O,)`, `y` `(batch, O)`. Gradients reach `x` (through `x`'s tape),
/// `weight` and `bias`; PyTorch's `torch.nn.functional.linear`.
///
/// On the `Cpu` device with `f32` or `f64` and contiguous operands this is one fused
/// operation: the bias is written first and the product accumulated onto it by a
/// single-threaded `gemm` 0.19 call at the machine's SIMD level
/// ([`super::simd_level`]); the backward pass is two more products
/// (`∂W += ∂yᵀ x`, `∂x += ∂y W`) and a column sum (`∂b += Σ_rows ∂y`), accumulating
/// into the gradients (so a tensor used twice sums its contributions); `∂x` is skipped
/// when `x` is observed data ([`crate::kernels::ops::observed`]). Elsewhere it is dfdx's
/// `x.matmul(Wᵀ) + broadcast(b)`, with the same values and gradients.
///
/// # Errors
/// The device's allocation errors.
pub fn linear<B, I: Dim, O: Dim, E, D, T>(
    x: Tensor<(B, I), E, D, T>,
    weight: &Tensor<(O, I), E, D>,
    bias: &Tensor<(O,), E, D>,
) -> Result<Rows<B, O, E, D, T>, D::Err>
where
    B: Dim,
    E: Real,
    D: Device<E>,
    T: Tape<E, D>,
{
    let (o, i) = *weight.shape();
    assert!(
        x.shape().1.size() == i.size() && bias.shape().0.size() == o.size(),
        "linear: input of width {} for a weight of shape ({}, {}) and a bias of {}",
        x.shape().1.size(),
        o.size(),
        i.size(),
        bias.shape().0.size()
    );
    let (x, tape) = x.split_tape();
    let shape = (x.shape().0, bias.shape().0);
    let tape = match fused(&x, weight, bias, Layout::OutIn, shape, tape)? {
        Ok(y) => return Ok(y),
        Err(tape) => tape,
    };
    let y = x
        .put_tape(tape)
        .try_matmul(weight.retaped::<T>().try_permute::<_, Axes2<1, 0>>()?)?;
    y.try_add(bias.retaped::<T>().try_broadcast_like(&shape)?)
}

/// `y = x W + b` for `x` of shape `(batch, K)`, a weight `W` of any shape whose
/// `K · O` elements are the row-major `K × O` matrix (e.g. a convolution's
/// `(kh, kw, in, out)` kernel, whose im2col rows `x` hold `kh·kw·in` values), and
/// `bias` `(O,)`; `y` is `(batch, O)`. Gradients reach `x`, `weight` and `bias`.
///
/// The same fused operation as [`linear`] with the other weight layout
/// (`∂W += xᵀ ∂y`, `∂x += ∂y Wᵀ`); elsewhere dfdx's
/// `x.matmul(W.reshape(K, O)) + broadcast(b)`.
///
/// # Panics
/// If `weight` does not have `K · O` elements.
///
/// # Errors
/// The device's allocation errors.
pub fn affine_rows<S, O: Dim, E, D, T>(
    x: Tensor<(usize, usize), E, D, T>,
    weight: &Tensor<S, E, D>,
    bias: &Tensor<(O,), E, D>,
) -> Result<Rows<usize, O, E, D, T>, D::Err>
where
    S: Shape,
    E: Real,
    D: Device<E>,
    T: Tape<E, D>,
{
    let k = x.shape().1;
    let o = bias.shape().0;
    assert_eq!(
        weight.shape().num_elements(),
        k * o.size(),
        "affine_rows: the weight must hold {k} × {} values",
        o.size()
    );
    let (x, tape) = x.split_tape();
    let shape = (x.shape().0, o);
    let tape = match fused(&x, weight, bias, Layout::InOut, shape, tape)? {
        Ok(y) => return Ok(y),
        Err(tape) => tape,
    };
    let w = weight.retaped::<T>().try_reshape_like(&(k, o))?;
    let y = x.put_tape(tape).try_matmul(w)?;
    y.try_add(bias.retaped::<T>().try_broadcast_like(&shape)?)
}

/// The inner dimension from which a product `y = x Wᵀ` (`(out, in)` weight) is
/// computed into a column-major buffer and transposed, instead of straight into the
/// row-major output. `gemm` computes a row-major product as its transpose with the
/// weight as the packed left operand, re-packed element by element on every call;
/// with a column-major destination the weight is read in place (the broadcast
/// operand) and only the activations are packed. Measured single-threaded on the
/// reference VAE's shapes (64 rows, AVX-512): 784 → 400 forward 294 → 214 + 14 µs
/// for the transpose, 400 → 784 forward 299 → 210 + 25 µs, its `∂x` 273 → 232 + 14 µs;
/// below ~256 the transpose costs more than the product saves (20 → 400: 8 → 6 + 12).
const COLUMN_MAJOR_MIN_INNER: usize = 256;

/// Whether the product over `inner` with this weight layout goes column-major.
fn column_major_pays(layout: Layout, inner: usize) -> bool {
    matches!(layout, Layout::OutIn) && inner >= COLUMN_MAJOR_MIN_INNER
}

/// Whether the input gradient `∂x = ∂y W` over `inner` output columns goes
/// column-major: as [`column_major_pays`], on AVX-512 machines only. With `gemm`'s AVX2
/// kernels the row-major product is the faster one (Zen 2, single-threaded, the
/// decoder's 64 × 784 × 400 `∂x`: 434–452 µs row-major against 476–480 + 3.5 µs for the
/// column-major product and its transpose), while the forward products still gain
/// there (784 → 400: 510–521 µs row-major against 415 + 3.6).
fn column_major_pays_for_dx(layout: Layout, inner: usize) -> bool {
    column_major_pays(layout, inner) && super::gemm::simd_level() == super::SimdLevel::Avx512
}

thread_local! {
    /// The column-major products' buffer, kept per thread (f64 words, so aligned for
    /// both dtypes).
    static SCRATCH: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The most f64 words of scratch a thread keeps between calls (64 MiB): a larger
/// product (an importance-sampled evaluation's thousands of rows) gets its buffer for
/// the call only.
const SCRATCH_KEPT: usize = 1 << 23;

/// Runs `f` on a scratch slice of `n` elements of `F` (`f32` or `f64`; contents
/// unspecified but initialized), this thread's, reused between calls up to
/// [`SCRATCH_KEPT`].
pub(crate) fn with_scratch<F: Unit, R>(n: usize, f: impl FnOnce(&mut [F]) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut buf = cell.borrow_mut();
        let words = (n * std::mem::size_of::<F>()).div_ceil(8);
        if buf.len() < words {
            buf.resize(words, 0.0);
        }
        debug_assert!(std::mem::align_of::<F>() <= 8);
        // SAFETY: the buffer holds at least n · size_of::<F>() initialized bytes,
        // aligned for f64 and so for F (f32 or f64: every bit pattern is a value),
        // and is borrowed mutably for the call only.
        let s = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<F>(), n) };
        let r = f(s);
        if buf.len() > SCRATCH_KEPT {
            *buf = Vec::new();
        }
        r
    })
}

/// `acc += Σ_r rows[r]`: the bias gradient `∂b += Σ_rows ∂y` of the rows of `rows`
/// (row-major, each as long as `acc`), added row after row at the machine's SIMD level.
pub(crate) fn add_row_sums<F: Unit + num_traits::Float>(acc: &mut [F], rows: &[F]) {
    let width = acc.len().max(1);
    super::simd::vectorized(
        #[inline(always)]
        || {
            for row in rows.chunks_exact(width) {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a = *a + v;
                }
            }
        },
    );
}

/// How the weight's elements are laid out.
#[derive(Clone, Copy)]
enum Layout {
    /// `(out, in)` row-major: `y = x Wᵀ`.
    OutIn,
    /// `(in, out)` row-major: `y = x W`.
    InOut,
}

/// The fused `Cpu` path for `f32` and `f64` when every operand is contiguous: the
/// result on `tape`; otherwise the tape back, for dfdx's operations.
#[allow(clippy::type_complexity)]
fn fused<Sx, Sw, O: Dim, E, D, T>(
    x: &Tensor<Sx, E, D>,
    weight: &Tensor<Sw, E, D>,
    bias: &Tensor<(O,), E, D>,
    layout: Layout,
    shape: (Sx::First, O),
    tape: T,
) -> Result<Result<Tensor<(Sx::First, O), E, D, T>, T>, D::Err>
where
    Sx: Shape + RowsShape,
    Sw: Shape,
    E: Real,
    D: Device<E>,
    T: Tape<E, D>,
{
    if applies::<_, _, O, E, D, f32>(x, weight, bias) {
        return fast::<_, _, O, E, D, T, f32>(x, weight, bias, layout, shape, tape).map(Ok);
    }
    if applies::<_, _, O, E, D, f64>(x, weight, bias) {
        return fast::<_, _, O, E, D, T, f64>(x, weight, bias, layout, shape, tape).map(Ok);
    }
    Ok(Err(tape))
}

/// The output shape `(rows of x, O)`.
type OutShape<Sx, O> = (<Sx as RowsShape>::First, O);

/// A two-dimensional `(rows, cols)` shape.
trait RowsShape: Shape {
    type First: Dim;
    fn rows(&self) -> usize;
    fn cols(&self) -> usize;
}

impl<B: Dim, C: Dim> RowsShape for (B, C) {
    type First = B;
    fn rows(&self) -> usize {
        self.0.size()
    }
    fn cols(&self) -> usize {
        self.1.size()
    }
}

fn applies<Sx: Shape, Sw: Shape, O: Dim, E: Real, D: Device<E>, F: Unit>(
    x: &Tensor<Sx, E, D>,
    weight: &Tensor<Sw, E, D>,
    bias: &Tensor<(O,), E, D>,
) -> bool {
    is_cpu::<E, D, F>()
        && slice::<_, _, _, _, F>(x).is_some()
        && slice::<_, _, _, _, F>(weight).is_some()
        && slice::<_, _, _, _, F>(bias).is_some()
}

/// The `Cpu`/`F` path, for operands that [`applies`] accepted.
#[allow(clippy::type_complexity)]
fn fast<Sx, Sw, O: Dim, E, D, T, F>(
    x: &Tensor<Sx, E, D>,
    weight: &Tensor<Sw, E, D>,
    bias: &Tensor<(O,), E, D>,
    layout: Layout,
    shape: (Sx::First, O),
    tape: T,
) -> Result<Tensor<OutShape<Sx, O>, E, D, T>, D::Err>
where
    Sx: Shape + RowsShape,
    Sw: Shape,
    E: Real,
    D: Device<E>,
    T: Tape<E, D>,
    F: Unit + num_traits::Float,
{
    let x: Tensor<Sx, F, Cpu> = same(x.clone());
    let w: Tensor<Sw, F, Cpu> = same(weight.clone());
    let b: Tensor<(O,), F, Cpu> = same(bias.clone());
    let (batch, k) = (x.shape().rows(), x.shape().cols());
    let o = b.shape().0.size();
    let w_fwd = match layout {
        Layout::OutIn => Mat::cols(contiguous(&w).as_ptr(), k),
        Layout::InOut => Mat::rows(contiguous(&w).as_ptr(), o),
    };
    let mut out: Vec<F> = Vec::with_capacity(batch * o);
    {
        let (xs, bs) = (contiguous(&x), contiguous(&b));
        if column_major_pays(layout, k) {
            // y = x Wᵀ computed column-major, then transposed with the bias added.
            with_scratch::<F, _>(batch * o, |yc| {
                // SAFETY: x is batch × k row-major, w_fwd views the k × O factor of
                // the weight, yc is batch × O column-major and does not alias them.
                unsafe {
                    gemm(
                        (batch, k, o),
                        Mat::cols(yc.as_mut_ptr(), batch),
                        false,
                        Mat::rows(xs.as_ptr(), k),
                        w_fwd,
                    );
                }
                // SAFETY: yc holds batch · O values, out has room for as many and
                // every one is written (`Store::Bias`) before the length is set.
                unsafe {
                    transpose_into(yc, batch, o, Store::Bias(bs), out.as_mut_ptr());
                    out.set_len(batch * o);
                }
            });
        } else {
            for _ in 0..batch {
                out.extend_from_slice(bs);
            }
            // SAFETY: x is batch × k row-major, w_fwd views the k × O factor of the
            // weight, out is batch × O and does not alias them.
            unsafe {
                gemm(
                    (batch, k, o),
                    Mat::rows(out.as_mut_ptr(), o),
                    true,
                    Mat::rows(xs.as_ptr(), k),
                    w_fwd,
                );
            }
        }
    }
    let dev = x.device().clone();
    // No ∂x for observed data, whose gradient nothing wants (`crate::kernels::ops::observed`).
    let inputs = [Input::of(&w), Input::of(&b), Input::unless_observed(&x)];
    let done = finish(&dev, out, shape, inputs, tape, move |gy, [gw, gb, gx]| {
        let (Some(gw), Some(gb)) = (gw, gb) else {
            return;
        };
        let (xs, ws) = (contiguous(&x).as_ptr(), contiguous(&w).as_ptr());
        let (gw, gy_ptr) = (gw.as_mut_ptr(), gy.as_ptr());
        // SAFETY: each gradient buffer has its tensor's length and belongs to a distinct
        // tensor; the forward tensors are kept alive by this closure.
        unsafe {
            match layout {
                // ∂W (O × k) += ∂yᵀ (O × batch) · x (batch × k)
                Layout::OutIn => gemm(
                    (o, batch, k),
                    Mat::rows(gw, k),
                    true,
                    Mat::cols(gy_ptr, o),
                    Mat::rows(xs, k),
                ),
                // ∂W (k × o) += xᵀ (k × batch) · ∂y (batch × o)
                Layout::InOut => gemm(
                    (k, batch, o),
                    Mat::rows(gw, o),
                    true,
                    Mat::cols(xs, k),
                    Mat::rows(gy_ptr, o),
                ),
            }
            // ∂x (batch × k) += ∂y (batch × o) · (O × k factor).
            if let Some(gx) = gx {
                let gx = gx.as_mut_ptr();
                let w_t = match layout {
                    Layout::OutIn => Mat::rows(ws, k),
                    Layout::InOut => Mat::cols(ws, o),
                };
                if column_major_pays_for_dx(layout, o) {
                    // ∂y W computed column-major, then added transposed into ∂x.
                    with_scratch::<F, _>(batch * k, |dc| {
                        gemm(
                            (batch, o, k),
                            Mat::cols(dc.as_mut_ptr(), batch),
                            false,
                            Mat::rows(gy_ptr, o),
                            w_t,
                        );
                        transpose_into(dc, batch, k, Store::Add, gx);
                    });
                } else {
                    gemm(
                        (batch, o, k),
                        Mat::rows(gx, k),
                        true,
                        Mat::rows(gy_ptr, o),
                        w_t,
                    );
                }
            }
        }
        // ∂b += Σ_rows ∂y
        add_row_sums(gb, gy);
    });
    done.map_err(same::<CpuError, D::Err>)
}
