//! Runs a loop compiled for the widest SIMD level the processor has, chosen at run
//! time: the crate itself is compiled for baseline x86-64 (SSE2), so without this the
//! elementwise loops of the fused kernels and of Adam use 4-lane SSE.

/// Runs `f` with its inlined body compiled for AVX-512 (x86-64-v4) or AVX2+FMA
/// (x86-64-v3) when the processor has them, else as compiled. Everything `f` calls that
/// should be vectorized must be `#[inline(always)]` so it is compiled inside `f`.
/// Results are identical at every level: Rust never contracts `a * b + c` into an FMA.
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        let has_v3 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("bmi2");
        if has_v3
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            // SAFETY: the processor has the features the function is compiled for.
            return unsafe { v4(f) };
        }
        if has_v3 {
            // SAFETY: as above.
            return unsafe { v3(f) };
        }
    }
    f()
}

/// `f` compiled for x86-64-v4.
///
/// # Safety
/// The processor must have every feature enabled here (AVX-512 F, VL and DQ, AVX2, FMA,
/// BMI2): [`vectorized`] checks them at run time before calling it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma,bmi2")]
unsafe fn v4<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `f` compiled for x86-64-v3.
///
/// # Safety
/// The processor must have AVX2, FMA and BMI2: [`vectorized`] checks them at run time
/// before calling it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,bmi2")]
unsafe fn v3<R>(f: impl FnOnce() -> R) -> R {
    f()
}
