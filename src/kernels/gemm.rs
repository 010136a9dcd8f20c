//! Single-threaded matrix products through `gemm` 0.19, with its kernels chosen at run
//! time, and the SIMD level they dispatch to.

/// The widest x86 SIMD level the matrix-product kernels use on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SimdLevel {
    /// AVX-512F (x86-64-v4): 16 f32 lanes per instruction.
    Avx512,
    /// AVX2 with FMA (x86-64-v3): 8 f32 lanes.
    Avx2Fma,
    /// Neither: SSE2 or a non-x86 processor (gemm's portable kernels).
    Baseline,
}

impl std::fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SimdLevel::Avx512 => "AVX-512 (x86-64-v4)",
            SimdLevel::Avx2Fma => "AVX2+FMA (x86-64-v3)",
            SimdLevel::Baseline => "baseline (no AVX2)",
        })
    }
}

/// The SIMD level `gemm` dispatches to here, detected at run time (`cpuid`): the same
/// test `gemm`'s `x86-v4` and `x86-v3` kernels use to decide.
pub fn simd_level() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return SimdLevel::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return SimdLevel::Avx2Fma;
        }
    }
    SimdLevel::Baseline
}

/// A strided matrix view: base pointer and (row, column) strides in elements.
#[derive(Clone, Copy)]
pub(crate) struct Mat<P> {
    pub ptr: P,
    pub rs: isize,
    pub cs: isize,
}

impl<P> Mat<P> {
    /// Row-major with `cols` columns.
    pub fn rows(ptr: P, cols: usize) -> Self {
        Self {
            ptr,
            rs: cols as isize,
            cs: 1,
        }
    }
    /// The transpose of a row-major matrix with `cols` columns (a column-major view).
    pub fn cols(ptr: P, cols: usize) -> Self {
        Self {
            ptr,
            rs: 1,
            cs: cols as isize,
        }
    }
}

/// `C ← A·B` (`accumulate = false`) or `C ← C + A·B`, with `A` of `m × k`, `B` of
/// `k × n` and `C` of `m × n`, single-threaded.
///
/// # Safety
/// The views must address valid, initialized memory for their shapes, and `c` must not
/// overlap `a` or `b`.
pub(crate) unsafe fn gemm<T: 'static + Copy + num_traits::One + num_traits::Zero>(
    (m, k, n): (usize, usize, usize),
    c: Mat<*mut T>,
    accumulate: bool,
    a: Mat<*const T>,
    b: Mat<*const T>,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    *c.ptr.offset(i as isize * c.rs + j as isize * c.cs) = T::zero();
                }
            }
        }
        return;
    }
    ::gemm::gemm(
        m,
        n,
        k,
        c.ptr,
        c.cs,
        c.rs,
        accumulate,
        a.ptr,
        a.cs,
        a.rs,
        b.ptr,
        b.cs,
        b.rs,
        if accumulate { T::one() } else { T::zero() },
        T::one(),
        false,
        false,
        false,
        ::gemm::Parallelism::None,
    );
}

/// The textbook triple loop `C = A·B` on row-major slices (`A`: `m × k`, `B`: `k × n`),
/// summed in `f64`: the reference the SIMD products are tested against.
///
/// # Panics
/// If a slice's length does not match its shape.
pub fn matmul_naive(a: &[f64], b: &[f64], (m, k, n): (usize, usize, usize)) -> Vec<f64> {
    assert_eq!(a.len(), m * k, "A must be m × k");
    assert_eq!(b.len(), k * n, "B must be k × n");
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    c
}
