//! dfdx's `TensorOptions` for tensors whose shape is only known at run time.
//!
//! dfdx 0.13 visits a module's tensors (saving, loading, optimizers, gradient
//! allocation) through `TensorCollection`, which takes a `TensorOptions` per tensor.
//! The struct is `#[non_exhaustive]` and its only constructors require a `ConstShape`,
//! although every visitor except `BuildModule` works on any shape. [`options`] makes
//! one for any shape, so layers with `usize` sizes (see [`super::Linear`]) are
//! ordinary dfdx modules.

use std::mem::MaybeUninit;

use dfdx::prelude::*;

/// The reset function of a tensor option.
pub type Reset<S, E, D> = fn(&mut Tensor<S, E, D>) -> Result<(), <D as HasErr>::Err>;

/// A `TensorOptions` that is updated by gradients, resets with `reset` and builds
/// with `shape` (only meaningful for compile-time shapes: `BuildModule` cannot know
/// a run-time size), for a tensor field of a module's `TensorCollection`, whatever its
/// shape (dfdx's own constructors need a `ConstShape`). Re-exported as
/// [`crate::nn::tensor_options`].
pub fn options<S: Shape, E: Dtype, D: Device<E>>(
    shape: S,
    reset: Reset<S, E, D>,
) -> TensorOptions<S, E, D> {
    let mut o = MaybeUninit::<TensorOptions<S, E, D>>::uninit();
    let p = o.as_mut_ptr();
    // SAFETY: dfdx is pinned to 0.13.0 (Cargo.toml), whose `TensorOptions` has exactly
    // these three public fields (`#[non_exhaustive]` forbids only the struct
    // expression); all three are written before `assume_init`. The test
    // `options_have_three_fields` checks the size against the three fields.
    unsafe {
        std::ptr::addr_of_mut!((*p).do_gradient_update).write(true);
        std::ptr::addr_of_mut!((*p).reset).write(reset);
        std::ptr::addr_of_mut!((*p).shape).write(shape);
        o.assume_init()
    }
}

/// [`options`] for a trainable tensor of any shape that resets to zeros.
pub fn zeros_options<S: Shape + Default, E: Dtype, D: Device<E>>() -> TensorOptions<S, E, D> {
    options(S::default(), |t| t.try_fill_with_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_have_three_fields() {
        type S = (usize, usize);
        assert_eq!(
            std::mem::size_of::<TensorOptions<S, f32, Cpu>>(),
            std::mem::size_of::<(bool, Reset<S, f32, Cpu>, S)>()
        );
        let o = options::<S, f32, Cpu>((3, 4), |t| t.try_fill_with_zeros());
        assert!(o.do_gradient_update);
        assert_eq!(o.shape, (3, 4));
    }
}
