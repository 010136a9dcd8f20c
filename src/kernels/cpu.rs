//! Zero-copy access to the elements of dfdx tensors on the `Cpu` device, for the fast
//! paths of the fused operations. Everything here is decided at run time by type
//! identity, so the public operations stay generic over the device and dtype.

use std::any::{Any, TypeId};

use dfdx::prelude::*;
use dfdx::shapes::Unit;

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

/// True when `a` and `b` are `Cpu` tensors of dtype `F` with the same shape, both
/// contiguous: the operands a fused elementwise-and-row operation reads in place.
pub(crate) fn contiguous_pair<S: Shape, E: Dtype, D: Storage<E>, F: Unit>(
    a: &Tensor<S, E, D>,
    b: &Tensor<S, E, D>,
) -> bool {
    is_cpu::<E, D, F>()
        && a.shape() == b.shape()
        && slice::<_, _, _, _, F>(a).is_some()
        && slice::<_, _, _, _, F>(b).is_some()
}

/// The gradient buffer of `t` in `grads` (allocated, zeroed, if absent), as a raw
/// pointer to its elements, so that an operation can hold several tensors' buffers at
/// once (dfdx's borrowing accessors for that are crate-private).
///
/// The pointer addresses the buffer's heap storage, which later insertions into
/// `grads` do not move; it is valid until that gradient is dropped or replaced.
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
    let mut slot = Some(a);
    match same_mut::<Option<A>, Option<B>>(&mut slot).take() {
        Some(b) => b,
        None => unreachable!("the slot was just filled"),
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

/// How many observed-data marks a thread keeps (the newest ones).
const MARKS: usize = 4;

/// A mark: address and length of an observed buffer, and the tensor that owns it.
type Mark = (usize, usize, Box<dyn Any>);

thread_local! {
    /// Buffers of tensors marked as observed data on this thread: the address and
    /// length of each, with a clone of the tensor that keeps the buffer alive (and, as
    /// a second owner, stops dfdx from writing into it in place), so no other tensor
    /// can have that address while the mark exists.
    static OBSERVED: std::cell::RefCell<Vec<Mark>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Marks the buffer of `t`, a tape-less `Cpu` tensor, as observed data on this thread
/// (see [`crate::kernels::ops::observed`]); does nothing off the `Cpu` or for non-contiguous
/// tensors.
pub(crate) fn mark_observed<S: Shape, E: Dtype, D: Storage<E>>(t: &Tensor<S, E, D>) {
    let key = if let Some(s) = slice::<_, _, _, _, f32>(t) {
        (s.as_ptr() as usize, s.len())
    } else if let Some(s) = slice::<_, _, _, _, f64>(t) {
        (s.as_ptr() as usize, s.len())
    } else {
        return;
    };
    if key.1 == 0 {
        return;
    }
    OBSERVED.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() == MARKS {
            m.remove(0);
        }
        m.push((key.0, key.1, Box::new(t.clone())));
    });
}

/// Drops this thread's observed-data marks, releasing the buffers they keep alive (a
/// training step's batch and its repeated copies). Only an optimization is lost for a
/// buffer marked earlier: the fused operations read the marks in their forward passes,
/// and an unmarked input only gets a gradient nothing reads. Its one caller, the
/// persistent CPU replica, is not built with the `cuda` feature.
#[cfg(not(feature = "cuda"))]
pub(crate) fn clear_observed() {
    OBSERVED.with(|m| m.borrow_mut().clear());
}

/// True when `s` is exactly the buffer of a tensor marked with [`mark_observed`] on
/// this thread (or a view sharing it), so no gradient with respect to it is wanted.
pub(crate) fn is_observed<F>(s: &[F]) -> bool {
    let key = (s.as_ptr() as usize, s.len());
    OBSERVED.with(|m| m.borrow().iter().any(|(p, n, _)| (*p, *n) == key))
}

/// The gradient buffer of `t`, a `Cpu` tensor of dtype `f32` or `f64` (which the
/// caller has checked with [`is_cpu`]), allocated (zero) if absent.
///
/// # Errors
/// Allocation errors.
pub(crate) fn cpu_grad<'g, S: Shape, E: Dtype, D: Device<E>>(
    grads: &'g mut Gradients<E, D>,
    t: &Tensor<S, E, D>,
) -> crate::Result<&'g mut Vec<E>> {
    if is_cpu::<E, D, f32>() {
        let g: &mut Gradients<f32, Cpu> = same_mut(grads);
        let t: &Tensor<S, f32, Cpu> = same_ref(t);
        let v: &mut Vec<f32> = g.get_or_alloc_mut(t).map_err(crate::Error::device)?;
        Ok(same_mut(v))
    } else {
        let g: &mut Gradients<f64, Cpu> = same_mut(grads);
        let t: &Tensor<S, f64, Cpu> = same_ref(t);
        let v: &mut Vec<f64> = g.get_or_alloc_mut(t).map_err(crate::Error::device)?;
        Ok(same_mut(v))
    }
}

/// [`same`] for a shared borrow.
///
/// # Panics
/// If the types differ: a bug in the caller, never a consequence of user input.
pub(crate) fn same_ref<A: 'static, B: 'static>(a: &A) -> &B {
    match (a as &dyn Any).downcast_ref::<B>() {
        Some(b) => b,
        None => unreachable!("type identity was checked before the cast"),
    }
}
