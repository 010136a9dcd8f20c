//! Threads for independent batches: the data-parallel replicas' thread count and
//! devices, and `map_batches`, which evaluation uses too. It knows nothing of tasks,
//! models or the trainer, so evaluation can use it without reaching into training.

use dfdx::prelude::*;

use crate::distributed::world;
use crate::error::Result;
use crate::kernels::cpu::{is_cpu, same};
use crate::kernels::ops::Real;

/// What data-parallel replicas need of the model, task and device: `Send + Sync`, so
/// replicas can run on threads. With the `cuda` feature it asks nothing (dfdx's `Cuda`
/// device is neither `Send` nor `Sync`) and training runs one replica.
#[cfg(not(feature = "cuda"))]
pub trait ThreadSafe: Send + Sync {}
#[cfg(not(feature = "cuda"))]
impl<T: Send + Sync> ThreadSafe for T {}
/// What data-parallel replicas need of the model, task and device: nothing with the
/// `cuda` feature (dfdx's `Cuda` device is neither `Send` nor `Sync`), where training
/// runs one replica; `Send + Sync` without it.
#[cfg(feature = "cuda")]
pub trait ThreadSafe {}
#[cfg(feature = "cuda")]
impl<T> ThreadSafe for T {}

/// `f(batch, device)` for every batch, on `threads` threads (0: one per core; 1 off
/// the `Cpu` or with the `cuda` feature): batch `j` runs on thread `j mod threads`,
/// thread 0 being the caller's with `device`, thread `t ≥ 1` with a `Cpu` device
/// seeded from a draw of `device`'s generator and `t`. Returns the results in batch
/// order.
///
/// # Errors
/// The first error in batch order.
///
/// # Panics
/// Re-raises a panic of a worker thread.
pub(crate) fn map_batches<E, D, B, T, F>(
    batches: &[B],
    threads: usize,
    device: &D,
    f: F,
) -> Result<Vec<T>>
where
    E: Real,
    D: Device<E> + ThreadSafe + 'static,
    B: ThreadSafe,
    T: ThreadSafe,
    F: Fn(&B, &D) -> Result<T> + ThreadSafe,
{
    let threads = replica_count::<E, D>(threads).min(batches.len().max(1));
    if threads <= 1 || cfg!(feature = "cuda") {
        return batches.iter().map(|b| f(b, device)).collect();
    }
    #[cfg(feature = "cuda")]
    unreachable!("one thread with the cuda feature");
    #[cfg(not(feature = "cuda"))]
    {
        let seed = device.random_u64();
        let devices: Vec<D> = (1..threads).map(|t| replica_device::<D>(seed, t)).collect();
        let run = |t: usize, dev: &D| -> Vec<(usize, Result<T>)> {
            (t..batches.len())
                .step_by(threads)
                .map(|j| (j, f(&batches[j], dev)))
                .collect()
        };
        type BatchJob<'j, T> = Box<dyn FnOnce() -> Vec<(usize, Result<T>)> + Send + 'j>;
        let run = &run;
        let jobs: Vec<BatchJob<'_, T>> = devices
            .iter()
            .enumerate()
            .map(|(i, dev)| Box::new(move || run(i + 1, dev)) as BatchJob<'_, T>)
            .collect();
        let (mut all, rest) = super::workers::run_with(jobs, || run(0, device));
        all.extend(rest.into_iter().flatten());
        all.sort_by_key(|(j, _)| *j);
        all.into_iter().map(|(_, r)| r).collect()
    }
}

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

/// How many replicas this process runs: `threads` (0: one per available core, shared
/// among the ranks of [`crate::distributed::world`] on this machine), and always 1 off
/// the `Cpu` device (one CUDA device is already parallel).
pub(crate) fn replica_count<E: 'static, D: 'static>(threads: usize) -> usize {
    let on_cpu = is_cpu::<E, D, f32>() || is_cpu::<E, D, f64>();
    if !on_cpu || cfg!(feature = "cuda") {
        return 1;
    }
    match threads {
        0 => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (cores / world().local_size().max(1)).max(1)
        }
        n => n,
    }
}

/// A `Cpu` device for replica `r ≥ 1`, seeded from the run's seed and `r`.
pub(crate) fn replica_device<D: 'static>(seed: u64, r: usize) -> D {
    // SplitMix64's increment keeps replica streams apart from each other and from seed.
    let s = seed ^ (r as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    same(Cpu::seed_from_u64(s))
}
