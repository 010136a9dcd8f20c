//! The tape scaffolding every fused CPU operation shares, in the spirit of candle's
//! `CustomOp` and dfdx's `try_unary_op`: a kernel computes its forward values and
//! supplies its backward pass as a closure over plain slices; [`finish`] makes the
//! result tensor, and on a tape records the backward step, which finds the gradient
//! buffers of the result and of each input and hands them to the closure.

use dfdx::prelude::*;
use dfdx::tensor::CpuError;

use super::cpu::{contiguous, grad_ptr, is_observed, same, same_mut};

/// Finds one input's gradient buffer in the backward pass (allocated, zeroed, if absent).
type GradOf<F> = Box<dyn Fn(&mut Gradients<F, Cpu>) -> Result<*mut F, CpuError>>;

/// An input of a fused operation, as its backward pass sees it: where its gradient
/// lives, how long it is, and whether any gradient of it is wanted.
pub(crate) struct Input<F: Unit> {
    grad: GradOf<F>,
    len: usize,
    wanted: bool,
    /// Whether the buffer is allocated when no gradient is wanted.
    allocate: bool,
}

impl<F: Unit> Input<F> {
    /// An input whose gradient the backward pass accumulates into.
    pub(crate) fn of<S: Shape>(t: &Tensor<S, F, Cpu>) -> Self {
        let t = t.clone();
        Self {
            len: t.shape().num_elements(),
            grad: Box::new(move |g| grad_ptr(g, &t)),
            wanted: true,
            allocate: true,
        }
    }

    /// As [`Input::of`], except for observed data (`crate::kernels::ops::observed`),
    /// whose gradient nothing reads: its buffer is still allocated, so it reads as zero,
    /// and the backward pass gets `None` for it. The tensor must be contiguous.
    pub(crate) fn unless_observed<S: Shape>(t: &Tensor<S, F, Cpu>) -> Self {
        Self {
            wanted: !is_observed(contiguous(t)),
            ..Self::of(t)
        }
    }

    /// As [`Input::unless_observed`], except that observed data gets no gradient buffer
    /// at all (for operations whose inputs nothing upstream on the tape produced).
    pub(crate) fn untouched_if_observed<S: Shape>(t: &Tensor<S, F, Cpu>) -> Self {
        let wanted = !is_observed(contiguous(t));
        Self {
            wanted,
            allocate: wanted,
            ..Self::of(t)
        }
    }
}

/// Makes `out` (the operation's values, `shape.num_elements()` of them) the result
/// tensor on `dev` and, when `T` owns a tape, records the backward step: it calls
/// `backward(gy, grads)` with the result's gradient `gy` and one gradient buffer per
/// input, in the order of `inputs` (each its input's length; `None` where no gradient
/// is wanted), to which the closure adds its contributions.
///
/// The inputs must be distinct tensors (their gradient buffers are borrowed mutably at
/// once), as they are in every fused operation of this crate.
///
/// # Errors
/// A `CpuError` if `out` does not have the shape's length or cannot be moved to a
/// tensor; in the backward pass, allocation errors.
pub(crate) fn finish<S, F, E, D, T, const K: usize>(
    dev: &Cpu,
    out: Vec<F>,
    shape: S,
    inputs: [Input<F>; K],
    mut tape: T,
    backward: impl FnOnce(&[F], [Option<&mut [F]>; K]) + 'static,
) -> Result<Tensor<S, E, D, T>, CpuError>
where
    S: Shape,
    F: Unit,
    E: Dtype,
    D: Storage<E>,
    T: Tape<E, D>,
{
    let y = dev.try_tensor_from_vec(out, shape)?;
    if T::OWNS_TAPE {
        let y_ghost = y.ghost();
        let n_y = shape.num_elements();
        tape.add_backward_op(move |grads: &mut Gradients<E, D>| {
            let g: &mut Gradients<F, Cpu> = same_mut(grads);
            let mut found = [(std::ptr::null_mut::<F>(), 0usize, false); K];
            for (slot, input) in found.iter_mut().zip(&inputs) {
                if input.allocate {
                    *slot = (
                        (input.grad)(g).map_err(same::<CpuError, D::Err>)?,
                        input.len,
                        input.wanted,
                    );
                }
            }
            debug_assert!(
                (0..K).all(|i| (0..i)
                    .all(|j| found[i].0 != found[j].0 || found[i].0.is_null() || found[i].1 == 0)),
                "a fused operation's inputs must be distinct tensors"
            );
            let gy: *const F = g
                .get_or_alloc_mut(&y_ghost)
                .map_err(same::<CpuError, D::Err>)?
                .as_ptr();
            // SAFETY: each pointer addresses the gradient buffer of a distinct tensor
            // (the inputs, and the result made here), allocated with that tensor's
            // length; the buffers stay in place while `g` is not touched again, and
            // nothing else reads or writes them until the closure returns.
            let (gy, buffers) = unsafe {
                (
                    std::slice::from_raw_parts(gy, n_y),
                    found
                        .map(|(p, n, wanted)| wanted.then(|| std::slice::from_raw_parts_mut(p, n))),
                )
            };
            backward(gy, buffers);
            Ok(())
        });
    }
    let y: Tensor<S, E, D> = same(y);
    Ok(y.put_tape(tape))
}
