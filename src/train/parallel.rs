// With the `cuda` feature training runs one replica: the threaded path is compiled out.
#![cfg_attr(feature = "cuda", allow(dead_code, unused_imports))]

//! Data parallelism inside one process: a batch split across replicas, one per core,
//! and their gradients summed in a fixed order before one optimizer update.
//!
//! Each replica runs the task's loss and backward pass on its share of the batch, on
//! its own thread and its own `Cpu` device (its own random stream for `ε`), reading
//! the one set of weights. The gradient of the whole batch's mean loss is
//! `Σ_r (n_r / n) ∇ loss_r`, with `loss_r` the mean over replica `r`'s `n_r` examples:
//! each replica scales its loss by `n_r / n` before its backward pass, and
//! `drain_gradients` adds replica `r ≥ 1`'s gradients into replica 0's in order
//! `r = 1, 2, …`, so the same seed and replica count give the same run, bit for bit.
//!
//! [`DataParallel::gradients`] is the one place a batch becomes a gradient, for
//! [`crate::train::fit_task`] and for users' own loops. Across processes
//! ([`crate::distributed::world`] of more than one rank) the replicas of all ranks are
//! numbered rank by rank: rank `k` runs replicas `first_k .. first_k + R_k` of the
//! `Σ R` in the run, takes those parts of each global batch, and its in-process sum is
//! then summed over the ranks with one all-reduce before the optimizer update, so a run
//! of `N` ranks with `R` threads each computes what one process with `N · R` threads
//! would.

use dfdx::nn::tensor_collection::{
    RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorRef,
};
use dfdx::prelude::*;
use dfdx::shapes::Unit;

use rand::{RngCore, SeedableRng};

use super::task::{Batch, Progress, Task};
pub use super::threads::ThreadSafe;
use super::threads::{replica_count, replica_device, split};
use crate::data::Dataset;
use crate::distributed::{all_reduce_sum, world, Communicator};
use crate::error::{Error, Result};
use crate::kernels::cpu::{cpu_grad, is_cpu};
use crate::kernels::ops::{cst, to_f64_vec, Real};

/// The replicas of a data-parallel training step (see the module docs): their devices
/// and gradient buffers, made once per run.
pub struct DataParallel<E: Dtype, D: Storage<E>> {
    /// Devices of replicas `1..R` (replica 0 uses the caller's device).
    devices: Vec<D>,
    /// Gradient buffers of replicas `1..R`, zeroed between steps.
    spare: Vec<Gradients<E, D>>,
    /// The process group the gradients are summed over ([`world`] when made).
    world: std::sync::Arc<dyn Communicator>,
    /// The run-wide index of this process's replica 0.
    first: usize,
    /// Replicas over all processes.
    total: usize,
    /// The gradient flattened for the all-reduce across processes.
    flat: Vec<E>,
}

impl<E: Real, D: Device<E> + ThreadSafe + 'static> DataParallel<E, D> {
    /// Replicas for `model`: `threads` of them in this process (0: one per available
    /// core; always 1 off the `Cpu` device), in the process group [`world`] (its ranks
    /// exchange their replica counts here, a collective call). Replica `r ≥ 1` draws
    /// its `ε` from a `Cpu` device seeded from `seed` and its run-wide index
    /// `first_replica() + r`; replica 0 uses the device passed to [`Self::gradients`]
    /// (the trainer's is seeded the same way from `first_replica()`).
    ///
    /// # Errors
    /// The device's allocation errors; [`Error::InvalidSetting`] for several processes
    /// off the `Cpu` device (the all-reduce reads gradients in host memory).
    pub fn new<M: TensorCollection<E, D>>(model: &M, threads: usize, seed: u64) -> Result<Self> {
        let replicas = replica_count::<E, D>(threads);
        let world = world();
        let counts = world.all_gather_u64(&[replicas as u64])?;
        let rank = world.rank();
        let count = |v: &Vec<u64>| v.first().copied().unwrap_or(0) as usize;
        let first: usize = counts[..rank].iter().map(count).sum();
        let total: usize = counts.iter().map(count).sum();
        let on_cpu = is_cpu::<E, D, f32>() || is_cpu::<E, D, f64>();
        if world.size() > 1 && (!on_cpu || cfg!(feature = "cuda")) {
            return Err(Error::invalid(
                "processes",
                "training across processes runs on the Cpu device only",
            ));
        }
        Ok(Self {
            devices: (1..replicas)
                .map(|r| replica_device::<D>(seed, first + r))
                .collect(),
            spare: (1..replicas)
                .map(|_| model.try_alloc_grads().map_err(Error::device))
                .collect::<Result<_>>()?,
            world,
            first,
            total,
            flat: Vec::new(),
        })
    }

    /// Gives replicas `1..R` fresh devices seeded from `seed` and their run-wide index,
    /// as [`Self::new`] does: the trainer reseeds them at the start of every epoch.
    pub fn reseed(&mut self, seed: u64) {
        let replicas = self.devices.len() + 1;
        let first = self.first;
        self.devices = (1..replicas)
            .map(|r| replica_device::<D>(seed, first + r))
            .collect();
    }

    /// The number of replicas `R` in this process.
    pub fn replicas(&self) -> usize {
        self.devices.len() + 1
    }

    /// The number of replicas over all processes of the run (`R` in one process).
    pub fn total_replicas(&self) -> usize {
        self.total
    }

    /// The run-wide index of this process's replica 0 (0 in one process): seed the
    /// device passed to [`Self::gradients`] with it, as `replica_device` does.
    pub fn first_replica(&self) -> usize {
        self.first
    }

    /// The process group this step reduces over.
    pub fn world(&self) -> &dyn Communicator {
        &*self.world
    }

    /// The mean loss of `task` over the examples `indices` of `data` and its gradient,
    /// accumulated into `grads` (allocated by `model.alloc_grads()`, zeroed).
    ///
    /// With `R = 1` this is `task.loss` and `backward` on the caller's thread. With
    /// `R > 1` the indices are split into `R` contiguous parts (sizes differing by at
    /// most one); replica `r` runs a clone of `task` on part `r` on its own thread, its
    /// loss scaled by `n_r / n`; the gradients are summed in replica order and each
    /// replica task is handed to [`Task::absorb`] in order. Dynamic binarization draws
    /// one seed per replica from `binarize`, in replica order.
    ///
    /// Across processes ([`crate::distributed::world`] of several ranks) `indices` is
    /// the global batch, the same on every rank: it is split into the run's `Σ R` parts
    /// and this rank runs its own; the rank's sum is then summed over all ranks (see
    /// [`crate::distributed`]) and [`Task::exchange`] shares what the tasks recorded.
    /// Every rank gets the same loss and gradients.
    ///
    /// Returns the batch's mean loss (nats per example, as [`Task::loss`]) and the
    /// gradients. A non-finite loss is returned as it is; the caller decides.
    ///
    /// # Errors
    /// The task's errors (the first replica's, in order), allocation errors;
    /// [`Error::PeerFailed`] on every other rank when a rank's step fails.
    ///
    /// # Panics
    /// Re-raises a panic of a replica thread.
    #[allow(clippy::too_many_arguments)]
    pub fn gradients<M, K, R>(
        &mut self,
        model: &M,
        task: &mut K,
        data: &Dataset,
        indices: &[usize],
        binarize: Option<&mut R>,
        device: &D,
        grads: Gradients<E, D>,
        progress: Progress,
    ) -> Result<(f64, Gradients<E, D>)>
    where
        M: TensorCollection<E, D> + ThreadSafe,
        K: Task<E, D, M> + Clone + ThreadSafe,
        R: RngCore,
    {
        let local = self
            .unreduced(
                model, task, data, indices, binarize, device, grads, progress,
            )
            .and_then(|(value, mut grads, used)| {
                for g in &mut self.spare[..used] {
                    drain_gradients(model, &mut grads, g)?;
                }
                Ok((value, grads))
            });
        let (value, grads) = self.reduce_across(model, local)?;
        if self.world.size() > 1 {
            task.exchange(&*self.world)?;
        }
        Ok((value, grads))
    }

    /// Sums one process's loss and reduced gradient over the ranks of the run (the
    /// identity in one process). Every rank first says whether its step failed (one
    /// all-gather that also carries the losses), so a failure on one rank is an error on
    /// all of them instead of a wait: the failed rank returns its own error, the others
    /// [`Error::PeerFailed`]. The loss is summed in rank order; the gradient by one
    /// all-reduce of all trainable tensors flattened into one buffer.
    fn reduce_across<M: TensorCollection<E, D>>(
        &mut self,
        model: &M,
        local: Result<(f64, Gradients<E, D>)>,
    ) -> Result<(f64, Gradients<E, D>)> {
        if self.world.size() == 1 {
            return local;
        }
        let mine = match &local {
            Ok((v, _)) => [*v, 0.0],
            Err(_) => [0.0, 1.0],
        };
        let all = self.world.all_gather_f64(&mine)?;
        if let Some(rank) = all.iter().position(|p| p.get(1) != Some(&0.0)) {
            return match local {
                Err(e) => Err(e),
                Ok(_) => Err(Error::PeerFailed {
                    rank,
                    what: "a training step".into(),
                }),
            };
        }
        let (_, mut grads) = local?;
        let value = all.iter().map(|p| p[0]).sum();
        let mut flat = std::mem::take(&mut self.flat);
        flat.clear();
        walk_gradients(model, [&mut grads], |[g]| {
            flat.extend_from_slice(g);
        })?;
        all_reduce_sum(&*self.world, &mut flat)?;
        let mut at = 0;
        walk_gradients(model, [&mut grads], |[g]| {
            let n = g.len();
            g.copy_from_slice(&flat[at..at + n]);
            at += n;
        })?;
        self.flat = flat;
        Ok((value, grads))
    }

    /// The trainer's step: in one process [`Self::unreduced`] (the optimizer sums the
    /// replicas' gradients in its own pass), across processes [`Self::gradients`]
    /// (summed over the ranks, nothing left pending). Returns `(loss, gradients,
    /// pending replicas)`.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    pub(crate) fn step<M, K, R>(
        &mut self,
        model: &M,
        task: &mut K,
        data: &Dataset,
        indices: &[usize],
        binarize: Option<&mut R>,
        device: &D,
        grads: Gradients<E, D>,
        progress: Progress,
    ) -> Result<(f64, Gradients<E, D>, usize)>
    where
        M: TensorCollection<E, D> + ThreadSafe,
        K: Task<E, D, M> + Clone + ThreadSafe,
        R: RngCore,
    {
        if self.world.size() > 1 {
            let (value, grads) = self.gradients(
                model, task, data, indices, binarize, device, grads, progress,
            )?;
            Ok((value, grads, 0))
        } else {
            self.unreduced(
                model, task, data, indices, binarize, device, grads, progress,
            )
        }
    }

    /// [`Self::gradients`] in this process only, without the final sum (the trainer's
    /// fast path in one process; across processes use [`Self::gradients`], which also
    /// sums over the ranks): replica 0's gradient is returned and
    /// those of replicas `1..=used` are left in [`Self::pending`], for an optimizer
    /// that sums them in its own pass ([`crate::train::optim::Adam::update_sum`]), which must
    /// zero them. Returns `(loss, replica 0's gradients, used)`.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    pub(crate) fn unreduced<M, K, R>(
        &mut self,
        model: &M,
        task: &mut K,
        data: &Dataset,
        indices: &[usize],
        binarize: Option<&mut R>,
        device: &D,
        grads: Gradients<E, D>,
        progress: Progress,
    ) -> Result<(f64, Gradients<E, D>, usize)>
    where
        M: TensorCollection<E, D> + ThreadSafe,
        K: Task<E, D, M> + Clone + ThreadSafe,
        R: RngCore,
    {
        if self.total == 1 || cfg!(feature = "cuda") {
            let batch = Batch {
                data,
                indices,
                binarize: binarize.map(|r| r as &mut dyn RngCore),
                device,
            };
            let loss = task.loss(model, batch, grads, progress)?;
            let value = to_f64_vec(&loss)[0];
            return Ok((value, loss.backward(), 0));
        }
        #[cfg(feature = "cuda")]
        unreachable!("one replica with the cuda feature");
        #[cfg(not(feature = "cuda"))]
        {
            // The parts and binarization seeds of all replicas of the run, in order;
            // this process takes its own.
            let mut rng = binarize;
            let parts = split(indices, self.total);
            let seeds: Vec<Option<u64>> = parts
                .iter()
                .map(|_| rng.as_mut().map(|r| r.next_u64()))
                .collect();
            let end = (self.first + self.replicas()).min(parts.len());
            let start = self.first.min(end);
            if start == end {
                // A last batch smaller than the run's replicas: nothing for this process.
                return Ok((0.0, grads, 0));
            }
            parallel_step(
                &ReplicaStep {
                    model,
                    data,
                    progress,
                    total: indices.len(),
                },
                task,
                &parts[start..end],
                &seeds[start..end],
                device,
                &self.devices,
                &mut self.spare,
                grads,
            )
        }
    }

    /// The gradient buffers of replicas `1..R` (see [`Self::unreduced`]).
    pub(crate) fn pending(&mut self) -> &mut [Gradients<E, D>] {
        &mut self.spare
    }
}

/// What every replica of a data-parallel step shares.
#[cfg(not(feature = "cuda"))]
struct ReplicaStep<'a, M> {
    model: &'a M,
    data: &'a Dataset,
    progress: Progress,
    /// Examples in the whole batch.
    total: usize,
}

/// One data-parallel step (see [`super::parallel`]) of this process's replicas, `parts`
/// of the batch with the binarization `seeds` (one per part, drawn in replica order
/// from the run's stream): replica 0 runs on this thread with `task`, `device` and
/// `grads`; replica `r ≥ 1` on its own thread with a clone of `task`, `devices[r - 1]`
/// and `spare[r - 1]`. Returns the whole batch's mean loss,
/// replica 0's gradient and the number of other replicas used; their gradients are
/// left in `spare`, unreduced.
#[cfg(not(feature = "cuda"))]
#[allow(clippy::too_many_arguments)]
fn parallel_step<E, D, M, K>(
    shared: &ReplicaStep<'_, M>,
    task: &mut K,
    parts: &[&[usize]],
    seeds: &[Option<u64>],
    device: &D,
    devices: &[D],
    spare: &mut [Gradients<E, D>],
    grads: Gradients<E, D>,
) -> Result<(f64, Gradients<E, D>, usize)>
where
    E: Real,
    D: Device<E> + ThreadSafe + 'static,
    M: TensorCollection<E, D> + ThreadSafe,
    K: Task<E, D, M> + Clone + ThreadSafe,
{
    let mut tasks: Vec<K> = (1..parts.len()).map(|_| task.clone()).collect();
    let mut taken: Vec<Gradients<E, D>> = spare
        .iter_mut()
        .take(parts.len() - 1)
        .map(|g| std::mem::replace(g, Gradients::leaky()))
        .collect();
    type ReplicaJob<'j, E, D> = Box<dyn FnOnce() -> Result<(f64, Gradients<E, D>)> + Send + 'j>;
    let jobs: Vec<ReplicaJob<'_, E, D>> = (1..parts.len())
        .zip(tasks.iter_mut())
        .zip(taken.drain(..))
        .map(|((r, t), g)| {
            let (part, seed, dev) = (parts[r], seeds[r], &devices[r - 1]);
            Box::new(move || replica_loss(shared, t, part, seed, dev, g)) as ReplicaJob<'_, E, D>
        })
        .collect();
    let (first, rest) = super::workers::run_with(jobs, || {
        replica_loss(shared, task, parts[0], seeds[0], device, grads)
    });
    let (mut value, grads) = first?;
    let used = rest.len();
    for (r, (result, replica)) in rest.into_iter().zip(tasks).enumerate() {
        let (v, g) = result?;
        value += v;
        spare[r] = g;
        task.absorb(replica);
    }
    Ok((value, grads, used))
}

/// One replica's share: its loss (scaled by its share of the batch) and gradients.
/// Returns the scaled loss value.
#[cfg(not(feature = "cuda"))]
fn replica_loss<E, D, M, K>(
    shared: &ReplicaStep<'_, M>,
    task: &mut K,
    part: &[usize],
    seed: Option<u64>,
    device: &D,
    grads: Gradients<E, D>,
) -> Result<(f64, Gradients<E, D>)>
where
    E: Real,
    D: Device<E> + 'static,
    K: Task<E, D, M>,
{
    let mut rng = seed.map(rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64);
    let batch = Batch {
        data: shared.data,
        indices: part,
        binarize: rng.as_mut().map(|r| r as &mut dyn RngCore),
        device,
    };
    let weight = part.len() as f64 / shared.total as f64;
    let loss = task.loss(shared.model, batch, grads, shared.progress)? * cst::<E>(weight);
    let value = to_f64_vec(&loss)[0];
    let grads = loss.backward();
    // The step's marks were read in its forward pass; without this a persistent
    // worker would keep the last batches (and an IWAE step's k copies) alive.
    crate::kernels::cpu::clear_observed();
    Ok((value, grads))
}

/// Adds `other`'s gradients of `model`'s trainable tensors into `into` and zeroes
/// them in the same pass, ready for the replica's next step.
///
/// # Errors
/// [`Error::InvalidSetting`] off the `Cpu` device (replicas only run there).
fn drain_gradients<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>(
    model: &M,
    into: &mut Gradients<E, D>,
    other: &mut Gradients<E, D>,
) -> Result<()> {
    walk_gradients(model, [into, other], |[a, b]| {
        crate::kernels::simd::vectorized(
            #[inline(always)]
            || {
                for (x, y) in a.iter_mut().zip(b.iter_mut()) {
                    *x += *y;
                    *y = E::default();
                }
            },
        );
    })
}

/// Calls `f` on the `Cpu` gradient buffers, one from each of `sets`, of each of
/// `model`'s trainable tensors, in the model's visiting order.
///
/// # Errors
/// [`Error::InvalidSetting`] off the `Cpu` device.
fn walk_gradients<E: Dtype, D: Device<E>, M: TensorCollection<E, D>, const N: usize>(
    model: &M,
    sets: [&mut Gradients<E, D>; N],
    f: impl FnMut([&mut Vec<E>; N]),
) -> Result<()> {
    let mut op = WalkOp { sets, f };
    M::iter_tensors(&mut RecursiveWalker {
        m: model,
        f: &mut op,
    })?;
    Ok(())
}

struct WalkOp<'a, E: Unit, D: Storage<E>, F, const N: usize> {
    sets: [&'a mut Gradients<E, D>; N],
    f: F,
}

impl<E: Dtype, D: Device<E>, F: FnMut([&mut Vec<E>; N]), const N: usize> TensorVisitor<E, D>
    for WalkOp<'_, E, D, F, N>
{
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
        if !(is_cpu::<E, D, f32>() || is_cpu::<E, D, f64>()) {
            return Err(Error::invalid(
                "threads",
                "gradients are summed across replicas and processes on the Cpu device only",
            ));
        }
        let mut bufs = Vec::with_capacity(N);
        for set in self.sets.iter_mut() {
            let buf: *mut Vec<E> = cpu_grad(set, t)?;
            bufs.push(buf);
        }
        // SAFETY: each pointer is the gradient buffer of `t` in a distinct gradient set
        // (`sets` holds N unique borrows), so the N mutable borrows do not alias, and
        // they end with this call.
        let bufs: [&mut Vec<E>; N] = std::array::from_fn(|i| unsafe { &mut *bufs[i] });
        (self.f)(bufs);
        Ok(None)
    }
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
