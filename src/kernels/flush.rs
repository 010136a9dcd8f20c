//! The CPU's flush-to-zero and denormals-are-zero modes, on while `latent` trains and
//! evaluates.
//!
//! Arithmetic with a subnormal operand (a magnitude below `f32::MIN_POSITIVE`, 1.2e-38)
//! costs a microcode assist of about a hundred cycles on x86. Learning signals spread
//! over many alternatives make such values by the thousand: a VampPrior's component
//! responsibilities (`e^{−100}` for a component far from `z`) enter the gradient's
//! matrix products, and a VampPrior VAE with 500 pseudo-inputs trained at 256 images/s
//! instead of 3,746 on an Intel Xeon with AVX-512 (one epoch of Fashion-MNIST, the
//! same figures to the last digit). TensorFlow runs its CPU thread pools in these modes
//! for the same reason; the other place this crate met it, Adam's moments, flushes
//! them by hand ([`crate::train`]'s optimizer).

/// While alive, subnormal results are flushed to zero and subnormal operands read as
/// zero on this thread (x86-64: MXCSR's FTZ and DAZ bits; aarch64: FPCR's FZ bit;
/// elsewhere nothing changes). The previous mode returns when it is dropped.
///
/// [`crate::train::fit_task`] and the evaluations hold one, and `latent`'s worker
/// threads run in these modes, so a user needs it only around a training loop of their
/// own.
///
/// # Examples
/// ```
/// use latent::kernels::FlushSubnormals;
/// let tiny = std::hint::black_box(1e-39f32); // subnormal
/// {
///     let _flush = FlushSubnormals::new();
///     # #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
///     assert_eq!(std::hint::black_box(tiny * 1.0), 0.0);
/// }
/// assert_eq!(std::hint::black_box(tiny * 1.0), tiny);
/// ```
#[derive(Debug)]
pub struct FlushSubnormals {
    previous: Option<u64>,
}

impl FlushSubnormals {
    /// Turns the modes on for this thread until the value is dropped.
    pub fn new() -> Self {
        let previous = mode::get();
        if let Some(p) = previous {
            mode::set(mode::with_flush(p));
        }
        Self { previous }
    }
}

impl Default for FlushSubnormals {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FlushSubnormals {
    fn drop(&mut self) {
        if let Some(p) = self.previous {
            mode::set(p);
        }
    }
}

/// Turns the modes on for the rest of this thread's life (`latent`'s worker threads).
pub(crate) fn flush_subnormals_forever() {
    if let Some(p) = mode::get() {
        mode::set(mode::with_flush(p));
    }
}

#[cfg(target_arch = "x86_64")]
mod mode {
    /// MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6).
    const FTZ_DAZ: u64 = 0x8040;

    pub(super) fn get() -> Option<u64> {
        let mut csr: u32 = 0;
        // SAFETY: `stmxcsr` stores the 32-bit MXCSR register at the given address, a
        // live, aligned `u32`; it has no other effect.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
        }
        Some(u64::from(csr))
    }

    pub(super) fn with_flush(csr: u64) -> u64 {
        csr | FTZ_DAZ
    }

    pub(super) fn set(csr: u64) {
        let csr = csr as u32;
        // SAFETY: `ldmxcsr` loads MXCSR from a live, aligned `u32`; the value is one
        // read from MXCSR with only the FTZ and DAZ bits changed, both valid settings.
        unsafe {
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags, readonly));
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod mode {
    /// FPCR's flush-to-zero bit (FZ, bit 24).
    const FZ: u64 = 1 << 24;

    pub(super) fn get() -> Option<u64> {
        let fpcr: u64;
        // SAFETY: reading FPCR has no side effect.
        unsafe {
            std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack, preserves_flags));
        }
        Some(fpcr)
    }

    pub(super) fn with_flush(fpcr: u64) -> u64 {
        fpcr | FZ
    }

    pub(super) fn set(fpcr: u64) {
        // SAFETY: the value is one read from FPCR with only the FZ bit changed.
        unsafe {
            std::arch::asm!("msr fpcr, {}", in(reg) fpcr, options(nomem, nostack, preserves_flags));
        }
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod mode {
    pub(super) fn get() -> Option<u64> {
        None
    }
    pub(super) fn with_flush(v: u64) -> u64 {
        v
    }
    pub(super) fn set(_: u64) {}
}
