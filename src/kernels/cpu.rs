//! Zero-copy access to the elements of dfdx tensors on the `Cpu` device, for the fast
//! paths of the fused operations. Everything here is decided at run time by type
//! identity, so the public operations stay generic over the device and dtype.

use std::any::{Any, TypeId};

use dfdx::prelude::*;
use dfdx::shapes::Unit;

/// Moves `a` into type `B` when `A` and `B` are the same type; `None` otherwise.
pub(crate) fn cast<A: 'static, B: 'static>(a: A) -> Option<B> {
    let mut slot = Some(a);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<B>>()
        .and_then(Option::take)
}

/// True when the tensors of dtype `E` on device `D` are `F` tensors on the `Cpu`.
pub(crate) fn is_cpu<E: 'static, D: 'static, F: 'static>() -> bool {
    TypeId::of::<E>() == TypeId::of::<F>() && TypeId::of::<D>() == TypeId::of::<Cpu>()
}

/// The elements of `t` in row-major order, borrowed, when `t` is a `Cpu` tensor of
/// dtype `F` whose strides are the contiguous ones of its shape (no broadcast or
/// permuted view); `None` otherwise.
pub(crate) fn slice<S, E, D, T, F>(t: &Tensor<S, E, D, T>) -> Option<&[F]>
where
    S: Shape,
    E: 'static,
    D: Storage<E>,
    T: 'static,
    F: Unit,
{
    let t = (t as &dyn Any).downcast_ref::<Tensor<S, F, Cpu, T>>()?;
    let n = t.shape().num_elements();
    if n == 0 {
        return Some(&[]);
    }
    let dims = t.shape().concrete();
    let zero = S::Concrete::default();
    let base: *const F = &t[zero];
    // Row-major strides are the only ones that put index e_ax at offset Π dims[ax+1..]
    // for every axis of extent > 1.
    let mut stride = 1usize;
    for ax in (0..S::NUM_DIMS).rev() {
        if dims[ax] > 1 {
            let mut idx = zero;
            idx[ax] = 1;
            let at: *const F = &t[idx];
            // SAFETY: both point into the same allocation (the tensor's buffer).
            if unsafe { at.offset_from(base) } != stride as isize {
                return None;
            }
        }
        stride *= dims[ax];
    }
    // SAFETY: a contiguous dfdx tensor owns a buffer of exactly `n` elements starting
    // at index 0, which `t` keeps alive for the borrow.
    Some(unsafe { std::slice::from_raw_parts(base, n) })
}

/// The gradient buffer of `t` in `grads` (allocated, zeroed, if absent), as a raw
/// pointer to its `len` elements.
///
/// The pointer stays valid until the next insertion into `grads`: allocate every
/// buffer an operation needs first, then take the pointers.
pub(crate) fn grad_ptr<S: Shape, F: Unit>(
    grads: &mut Gradients<F, Cpu>,
    t: &Tensor<S, F, Cpu>,
) -> Result<*mut F, CpuError> {
    let v: &mut Vec<F> = grads.get_or_alloc_mut(t)?;
    Ok(v.as_mut_ptr())
}

/// Moves `a` into type `B`, which the caller has checked is the same type as `A`
/// (with [`is_cpu`]).
///
/// # Panics
/// If the types differ: a bug in the caller, never a consequence of user input.
pub(crate) fn same<A: 'static, B: 'static>(a: A) -> B {
    match cast(a) {
        Some(b) => b,
        None => unreachable!("type identity was checked before the cast"),
    }
}

/// [`same`] for a mutable borrow.
///
/// # Panics
/// If the types differ: a bug in the caller, never a consequence of user input.
pub(crate) fn same_mut<A: 'static, B: 'static>(a: &mut A) -> &mut B {
    match (a as &mut dyn Any).downcast_mut::<B>() {
        Some(b) => b,
        None => unreachable!("type identity was checked before the cast"),
    }
}

/// The elements of a `Cpu` tensor that the caller built or checked contiguous.
///
/// # Panics
/// If it is not contiguous: a bug in the caller, never a consequence of user input.
pub(crate) fn contiguous<S: Shape, F: Unit>(t: &Tensor<S, F, Cpu>) -> &[F] {
    match slice::<_, _, _, _, F>(t) {
        Some(s) => s,
        None => unreachable!("checked contiguous before the operation"),
    }
}
