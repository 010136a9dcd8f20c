//! Data parallelism inside one process: a batch split across replicas, one per core,
//! and their gradients summed in a fixed order before one optimizer update.
//!
//! Each replica runs the task's loss and backward pass on its share of the batch, on
//! its own thread and its own `Cpu` device (its own random stream for `ε`), reading
//! the one set of weights. The gradient of the whole batch's mean loss is
//! `Σ_r (n_r / n) ∇ loss_r`, with `loss_r` the mean over replica `r`'s `n_r` examples:
//! each replica scales its loss by `n_r / n` before its backward pass, and
//! [`sum_gradients`] adds replica `r ≥ 1`'s gradients into replica 0's in order
//! `r = 1, 2, …`, so the same seed and replica count give the same run, bit for bit.
//!
//! This reduction is the seam for training across processes: a sum of the reduced
//! gradients over processes (an MPI all-reduce) goes right after [`sum_gradients`],
//! before the optimizer update.

use dfdx::nn::tensor_collection::{
    RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorRef,
};
use dfdx::prelude::*;
use dfdx::shapes::Unit;

use crate::error::{Error, Result};
use crate::kernels::cpu::{is_cpu, same, same_mut};

/// Splits `indices` into at most `parts` contiguous, non-empty pieces whose sizes
/// differ by at most one (the first ones take the remainder).
pub(crate) fn split(indices: &[usize], parts: usize) -> Vec<&[usize]> {
    let parts = parts.clamp(1, indices.len().max(1));
    let (base, extra) = (indices.len() / parts, indices.len() % parts);
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for r in 0..parts {
        let len = base + usize::from(r < extra);
        out.push(&indices[start..start + len]);
        start += len;
    }
    out
}

/// How many replicas a run uses: `threads` (0: one per available core), and always 1
/// off the `Cpu` device (one CUDA device is already parallel).
pub(crate) fn replica_count<E: 'static, D: 'static>(threads: usize) -> usize {
    let on_cpu = is_cpu::<E, D, f32>() || is_cpu::<E, D, f64>();
    if !on_cpu {
        return 1;
    }
    match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// A `Cpu` device for replica `r ≥ 1`, seeded from the run's seed and `r`.
pub(crate) fn replica_device<E: 'static, D: 'static>(seed: u64, r: usize) -> D {
    // SplitMix64's increment keeps replica streams apart from each other and from seed.
    let s = seed ^ (r as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    same(Cpu::seed_from_u64(s))
}

/// Adds `other`'s gradients of `model`'s trainable tensors into `into`.
///
/// # Errors
/// [`Error::InvalidSetting`] off the `Cpu` device (replicas only run there).
pub(crate) fn sum_gradients<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>(
    model: &M,
    into: &mut Gradients<E, D>,
    other: &mut Gradients<E, D>,
) -> Result<()> {
    let mut op = SumOp { into, other };
    M::iter_tensors(&mut RecursiveWalker {
        m: model,
        f: &mut op,
    })?;
    Ok(())
}

struct SumOp<'a, E: Unit, D: Storage<E>> {
    into: &'a mut Gradients<E, D>,
    other: &'a mut Gradients<E, D>,
}

impl<E: Dtype, D: Device<E>> TensorVisitor<E, D> for SumOp<'_, E, D> {
    type Viewer = ViewTensorRef;
    type Err = Error;
    type E2 = E;
    type D2 = D;

    fn visit<S: Shape>(
        &mut self,
        opts: TensorOptions<S, E, D>,
        t: &Tensor<S, E, D>,
    ) -> std::result::Result<Option<Tensor<S, E, D>>, Error> {
        if !opts.do_gradient_update {
            return Ok(None);
        }
        if is_cpu::<E, D, f32>() {
            add_into::<S, E, D, f32>(self.into, self.other, t)
        } else if is_cpu::<E, D, f64>() {
            add_into::<S, E, D, f64>(self.into, self.other, t)
        } else {
            Err(Error::invalid(
                "threads",
                "data-parallel replicas run on the Cpu device only",
            ))
        }?;
        Ok(None)
    }
}

fn add_into<S: Shape, E: Dtype, D: Device<E>, F: Unit + std::ops::AddAssign>(
    into: &mut Gradients<E, D>,
    other: &mut Gradients<E, D>,
    t: &Tensor<S, E, D>,
) -> Result<()> {
    let into: &mut Gradients<F, Cpu> = same_mut(into);
    let other: &mut Gradients<F, Cpu> = same_mut(other);
    let t: Tensor<S, F, Cpu> = same(t.clone());
    let a: &mut Vec<F> = into.get_or_alloc_mut(&t).map_err(Error::device)?;
    let b: &mut Vec<F> = other.get_or_alloc_mut(&t).map_err(Error::device)?;
    for (x, &y) in a.iter_mut().zip(b.iter()) {
        *x += y;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn split_covers_the_batch_in_order() {
        let idx: Vec<usize> = (0..10).collect();
        let parts = split(&idx, 3);
        assert_eq!(parts, vec![&idx[0..4], &idx[4..7], &idx[7..10]]);
        assert_eq!(split(&idx[..2], 4).len(), 2);
        assert_eq!(split(&[], 2), vec![&[] as &[usize]]);
    }
}
