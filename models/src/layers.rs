//! Layers for grids of vectors: reshapes between flat vectors and rows of code
//! vectors, and 2-D convolution and upsampling on stable Rust.
//!
//! dfdx 0.13 gates its convolution operations and `Conv2D` modules behind the
//! `nightly` feature (they need `generic_const_exprs`), and this project builds on
//! stable. The layers here keep a feature map **channels-last as rows**: a batch of
//! `H×W` maps with `C` channels is a `(batch·H·W, C)` tensor, row `b·H·W + i·W + j`
//! holding pixel `(i, j)` of image `b`. A convolution is then an im2col gather
//! ([`latent::kernels::gather_rows`], whose backward is the scatter-add) and one fused
//! affine map ([`latent::kernels::affine_rows`]), and a
//! `1×1` convolution is a plain `Linear` layer. The 7×7 code grid of the VQ-VAE is just
//! the rows of the last encoder map.

use dfdx::prelude::*;
use latent::kernels::{gather_rows, im2col_conv, shift_add_conv};
use latent::ops::cst;
use latent::{Events, Real};

/// `(batch, G·DM)` → `(batch·G, DM)`: a flat vector as `G` code vectors (row
/// `b·G + g`).
///
/// An `N` that is not a multiple of `DM` does not compile (a const assertion).
#[derive(Debug, Clone, Copy, Default)]
pub struct SplitRows<const DM: usize>;

/// `(batch·G, DM)` → `(batch, N)` with `N = G·DM`: the inverse of [`SplitRows`].
///
/// An `N` that is not a multiple of `DM` does not compile (a const assertion).
///
/// # Panics
/// In `forward` if the rows are not a multiple of `N / DM` (a network wired wrongly;
/// the sizes of data entering a model are checked before).
#[derive(Debug, Clone, Copy, Default)]
pub struct JoinRows<const N: usize>;

/// Nearest-neighbour upsampling by 2 of `H×W` maps held as rows: `(batch·H·W, C)` →
/// `(batch·2H·2W, C)`, as `nn.Upsample(scale_factor=2, mode="nearest")`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Upsample2<const H: usize, const W: usize>;

/// Depth-to-space by 2 (`nn.PixelShuffle(2)`, Shi et al. 2016, "sub-pixel convolution")
/// on `H×W` maps held as rows: `(batch·H·W, 4C)` → `(batch·2H·2W, C)`, channel
/// `(2·di + dj)·C + c` of pixel `(i, j)` becoming channel `c` of pixel `(2i + di, 2j + dj)`.
/// A convolution to `4C` channels followed by this layer is a learned 2× upsampling that
/// costs a quarter of a convolution at the higher resolution.
///
/// An input width other than `4C` does not compile (a const assertion).
///
/// # Panics
/// In `forward` if the rows are not a multiple of `H·W` (a network wired wrongly; the
/// sizes of data entering a model are checked before).
#[derive(Debug, Clone, Copy, Default)]
pub struct DepthToSpace<const C: usize, const H: usize, const W: usize>;

/// `Conv2d(I, O, kernel_size=K, stride=S, padding=P)` with bias on `H×W` maps held
/// as rows (see the module docs): `(batch·H·W, I)` → `(batch·H'·W', O)` with
/// `H' = (H + 2P − K)/S + 1` (likewise `W'`), zero padding.
///
/// Weights are stored `(K, K, I, O)` (TensorFlow's HWIO layout, so that the im2col
/// matrix multiplies without a transpose) and initialized as PyTorch's `nn.Conv2d`:
/// `U(−1/√(I·K²), 1/√(I·K²))` for weights and bias.
#[derive(Debug, Clone)]
pub struct Conv2d<
    const I: usize,
    const O: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const H: usize,
    const W: usize,
    E: Dtype,
    D: Storage<E>,
> {
    /// Filters, shape `(K, K, I, O)`.
    pub weight: Tensor<Rank4<K, K, I, O>, E, D>,
    /// Bias, shape `(O,)`.
    pub bias: Tensor<Rank1<O>, E, D>,
}

thread_local! {
    /// The im2col indexes built on this thread, by batch, map and kernel settings: a
    /// training run asks for the same few every step.
    static IM2COL: std::cell::RefCell<Vec<(Im2colKey, std::rc::Rc<[usize]>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// `(batch, (H, W), (K, S, P), pad)`.
type Im2colKey = (usize, (usize, usize), (usize, usize, usize), usize);

/// [`im2col_index_uncached`], remembered per thread (the 16 newest settings).
fn im2col_index(
    batch: usize,
    hw: (usize, usize),
    ksp: (usize, usize, usize),
    pad: usize,
) -> (std::rc::Rc<[usize]>, usize, usize) {
    let key = (batch, hw, ksp, pad);
    let (k, s, p) = ksp;
    let ho = (hw.0 + 2 * p - k) / s + 1;
    let wo = (hw.1 + 2 * p - k) / s + 1;
    IM2COL.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((_, idx)) = cache.iter().find(|(k, _)| *k == key) {
            return (idx.clone(), ho, wo);
        }
        let (idx, _, _) = im2col_index_uncached(batch, hw, ksp, pad);
        let idx: std::rc::Rc<[usize]> = idx.into();
        if cache.len() == 16 {
            cache.remove(0);
        }
        cache.push((key, idx.clone()));
        (idx, ho, wo)
    })
}

/// For each output pixel of each image, the input row of each kernel tap, or `pad`
/// (the index of an appended zero row) outside the image: `batch·H'·W'` rows of `K²`.
fn im2col_index_uncached(
    batch: usize,
    (h, w): (usize, usize),
    (k, s, p): (usize, usize, usize),
    pad: usize,
) -> (Vec<usize>, usize, usize) {
    let ho = (h + 2 * p - k) / s + 1;
    let wo = (w + 2 * p - k) / s + 1;
    let mut idx = Vec::with_capacity(batch * ho * wo * k * k);
    for b in 0..batch {
        for i in 0..ho {
            for j in 0..wo {
                for di in 0..k {
                    for dj in 0..k {
                        let (y, x) = (
                            (i * s + di) as isize - p as isize,
                            (j * s + dj) as isize - p as isize,
                        );
                        idx.push(if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
                            pad
                        } else {
                            b * h * w + y as usize * w + x as usize
                        });
                    }
                }
            }
        }
    }
    (idx, ho, wo)
}

/// The number of `h×w` images held in `rows` rows.
///
/// # Panics
/// If `rows` is not a multiple of `h·w` (a layer wired to the wrong map size).
fn images(layer: &str, rows: usize, h: usize, w: usize) -> usize {
    assert_eq!(
        rows % (h * w),
        0,
        "{layer}: {rows} rows are not a multiple of {h}×{w}"
    );
    rows / (h * w)
}

/// For every pixel `(i, j)` of the `2H×2W` output of each of `batch` images, in order,
/// `f(src, sub)`: `src` the row of input pixel `(i/2, j/2)`, `sub = 2·(i mod 2) + j mod 2`
/// its position within the 2×2 block.
fn doubled_index(
    batch: usize,
    h: usize,
    w: usize,
    f: impl Fn(usize, usize) -> usize,
) -> Vec<usize> {
    let mut idx = Vec::with_capacity(4 * batch * h * w);
    for b in 0..batch {
        for i in 0..2 * h {
            for j in 0..2 * w {
                idx.push(f(b * h * w + (i / 2) * w + j / 2, 2 * (i % 2) + j % 2));
            }
        }
    }
    idx
}

fn fill_uniform<S: Shape, E: Real, D: Device<E>>(
    t: &mut Tensor<S, E, D>,
    fan_in: usize,
) -> std::result::Result<(), D::Err> {
    let b = cst::<E>(1.0 / (fan_in as f64).sqrt());
    t.try_fill_with_distr(rand_distr::Uniform::new(-b, b))
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const H: usize,
        const W: usize,
        E: Real,
        D: Device<E>,
    > TensorCollection<E, D> for Conv2d<I, O, K, S, P, H, W, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = Conv2d<I, O, K, S, P, H, W, E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor(
                    "weight",
                    |s| &s.weight,
                    |s| &mut s.weight,
                    TensorOptions::reset_with(|t| fill_uniform(t, I * K * K)),
                ),
                Self::tensor(
                    "bias",
                    |s| &s.bias,
                    |s| &mut s.bias,
                    TensorOptions::reset_with(|t| fill_uniform(t, I * K * K)),
                ),
            ),
            |(weight, bias)| Conv2d { weight, bias },
        )
    }
}

impl<
        const I: usize,
        const O: usize,
        const K: usize,
        const S: usize,
        const P: usize,
        const H: usize,
        const W: usize,
        E: Real,
        D: Device<E>,
        T: Tape<E, D>,
    > Module<Events<Const<I>, E, D, T>> for Conv2d<I, O, K, S, P, H, W, E, D>
{
    type Output = Events<Const<O>, E, D, T>;
    type Error = D::Err;

    /// # Panics
    /// If the rows are not a multiple of `H·W`.
    fn try_forward(
        &self,
        x: Events<Const<I>, E, D, T>,
    ) -> std::result::Result<Self::Output, D::Err> {
        let n = x.shape().0;
        let batch = images("Conv2d", n, H, W);
        let (idx, ho, wo) = im2col_index(batch, (H, W), (K, S, P), n);
        let m = batch * ho * wo;
        // Fewer output than input channels at the same number of pixels (a decoder's
        // last layers): the shift-and-add order skips the m × K²·I im2col matrix and
        // gives its product K²·O columns instead of O; same values.
        if m == n && O < I {
            return shift_add_conv(x, &self.weight, &self.bias, &idx);
        }
        im2col_conv(x, &self.weight, &self.bias, &idx)
    }
}

impl<const H: usize, const W: usize, E: Real, D: Device<E>> TensorCollection<E, D>
    for Upsample2<H, W>
{
    type To<E2: Dtype, D2: Device<E2>> = Upsample2<H, W>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields((), |_| Upsample2)
    }
}

impl<const C: usize, const H: usize, const W: usize, E: Real, D: Device<E>, T: Tape<E, D>>
    Module<Events<Const<C>, E, D, T>> for Upsample2<H, W>
{
    type Output = Events<Const<C>, E, D, T>;
    type Error = D::Err;

    /// # Panics
    /// If the rows are not a multiple of `H·W`.
    fn try_forward(
        &self,
        x: Events<Const<C>, E, D, T>,
    ) -> std::result::Result<Self::Output, D::Err> {
        let n = x.shape().0;
        let batch = images("Upsample2", n, H, W);
        gather_rows(x, &doubled_index(batch, H, W, |src, _| src))
    }
}

impl<const C: usize, const H: usize, const W: usize, E: Real, D: Device<E>> TensorCollection<E, D>
    for DepthToSpace<C, H, W>
{
    type To<E2: Dtype, D2: Device<E2>> = DepthToSpace<C, H, W>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields((), |_| DepthToSpace)
    }
}

impl<
        const N: usize,
        const C: usize,
        const H: usize,
        const W: usize,
        E: Real,
        D: Device<E>,
        T: Tape<E, D>,
    > Module<Events<Const<N>, E, D, T>> for DepthToSpace<C, H, W>
{
    type Output = Events<Const<C>, E, D, T>;
    type Error = D::Err;

    fn try_forward(
        &self,
        x: Events<Const<N>, E, D, T>,
    ) -> std::result::Result<Self::Output, D::Err> {
        // Checked when the layer is compiled for its sizes, not at run time.
        const { assert!(N == 4 * C, "DepthToSpace: the input must have 4×C channels") };
        let n = x.shape().0;
        let batch = images("DepthToSpace", n, H, W);
        let idx = doubled_index(batch, H, W, |src, sub| 4 * src + sub);
        gather_rows(x.try_reshape_like(&(4 * n, Const::<C>))?, &idx)
    }
}

macro_rules! reshape_layer {
    ($name:ident, $p:ident) => {
        impl<const $p: usize, E: Real, D: Device<E>> TensorCollection<E, D> for $name<$p> {
            type To<E2: Dtype, D2: Device<E2>> = $name<$p>;
            fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
                visitor: &mut V,
            ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
                visitor.visit_fields((), |_| $name)
            }
        }
    };
}
reshape_layer!(SplitRows, DM);
reshape_layer!(JoinRows, N);

impl<const N: usize, const DM: usize, E: Real, D: Device<E>, T: Tape<E, D>>
    Module<Events<Const<N>, E, D, T>> for SplitRows<DM>
{
    type Output = Events<Const<DM>, E, D, T>;
    type Error = D::Err;
    fn try_forward(
        &self,
        x: Events<Const<N>, E, D, T>,
    ) -> std::result::Result<Self::Output, D::Err> {
        const {
            assert!(
                N.is_multiple_of(DM),
                "SplitRows: N must be a multiple of DM"
            )
        };
        let b = x.shape().0;
        x.try_reshape_like(&(b * (N / DM), Const::<DM>))
    }
}

impl<const N: usize, const DM: usize, E: Real, D: Device<E>, T: Tape<E, D>>
    Module<Events<Const<DM>, E, D, T>> for JoinRows<N>
{
    type Output = Events<Const<N>, E, D, T>;
    type Error = D::Err;
    fn try_forward(
        &self,
        x: Events<Const<DM>, E, D, T>,
    ) -> std::result::Result<Self::Output, D::Err> {
        const { assert!(N.is_multiple_of(DM), "JoinRows: N must be a multiple of DM") };
        let n = x.shape().0;
        x.try_reshape_like(&(n / (N / DM), Const::<N>))
    }
}
