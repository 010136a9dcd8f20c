//! Training across processes: the collective operations a data-parallel run needs
//! (an all-reduce of the gradient, an all-gather, a broadcast), behind one
//! [`Communicator`] trait, and the process group every trainer and evaluation in this
//! crate uses, [`world`].
//!
//! Without anything installed the world is one process ([`Single`]) and every
//! collective is the identity. With the `mpi` feature, `Mpi::init` starts MPI and
//! installs `MPI_COMM_WORLD` as the world (as `hvd.init()` does in Horovod, or
//! `torch.distributed.init_process_group` for PyTorch's default group); from then on
//! [`crate::train::fit_task`] splits each global batch across the ranks, sums their
//! gradients with an all-reduce before one identical optimizer update on every rank,
//! shards the evaluation, and checks after each epoch that every rank holds the same
//! parameters ([`parameter_checksum`]). `docs/distributed.md` says how to launch it.
//!
//! The reduction composes with the threads inside a process
//! ([`crate::train::DataParallel`]): a run of `N` ranks with `R` threads each has
//! `N · R` replicas, numbered rank by rank, and splits each batch, draws its random
//! streams and sums its gradients exactly as one process with `N · R` threads would.

#[cfg(feature = "mpi")]
mod mpi;

#[cfg(feature = "mpi")]
pub use self::mpi::Mpi;

use std::sync::{Arc, RwLock};

use dfdx::nn::tensor_collection::{
    RecursiveWalker, TensorCollection, TensorOptions, TensorVisitor, ViewTensorRef,
};
use dfdx::prelude::*;

use crate::error::{Error, Result};

/// The collective operations of a group of processes (ranks `0..size`), each called by
/// every rank in the same order, as MPI requires. Implementations must give every rank
/// the same result of a reduction (MPI's sum of two operands is commutative, and Open
/// MPI's ring and recursive-doubling all-reduces combine the same operands on every
/// rank); [`crate::train::fit_task`] checks it each epoch with [`parameter_checksum`].
pub trait Communicator: Send + Sync {
    /// This process's rank, `0..size`.
    fn rank(&self) -> usize;

    /// The number of processes.
    fn size(&self) -> usize;

    /// The number of ranks on this machine (sharing its cores), this one included. The
    /// default is 1.
    fn local_size(&self) -> usize {
        1
    }

    /// Replaces `values` on every rank by their element-wise sum over all ranks.
    ///
    /// # Errors
    /// The transport's errors (MPI's default handler aborts the job instead).
    fn all_reduce_sum_f32(&self, values: &mut [f32]) -> Result<()>;

    /// [`Communicator::all_reduce_sum_f32`] for `f64`.
    ///
    /// # Errors
    /// As [`Communicator::all_reduce_sum_f32`].
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()>;

    /// Every rank's `local` (lengths may differ), in rank order.
    ///
    /// # Errors
    /// As [`Communicator::all_reduce_sum_f32`].
    fn all_gather_f64(&self, local: &[f64]) -> Result<Vec<Vec<f64>>>;

    /// [`Communicator::all_gather_f64`] for `u64`.
    ///
    /// # Errors
    /// As [`Communicator::all_reduce_sum_f32`].
    fn all_gather_u64(&self, local: &[u64]) -> Result<Vec<Vec<u64>>>;

    /// Replaces `bytes` on every rank by rank 0's (lengths may differ).
    ///
    /// # Errors
    /// As [`Communicator::all_reduce_sum_f32`].
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<()>;

    /// Ends every process of the group with exit status `code` (`MPI_Abort`), for an
    /// error on one rank that the others, waiting in a collective, cannot see.
    fn abort(&self, code: i32) -> !;

    /// What the group is, for logs (e.g. `MPI, 2 ranks (Open MPI v4.1.4)`).
    fn describe(&self) -> String;
}

/// One process alone: rank 0 of 1, every collective the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct Single;

impl Communicator for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum_f32(&self, _: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_reduce_sum_f64(&self, _: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn all_gather_f64(&self, local: &[f64]) -> Result<Vec<Vec<f64>>> {
        Ok(vec![local.to_vec()])
    }
    fn all_gather_u64(&self, local: &[u64]) -> Result<Vec<Vec<u64>>> {
        Ok(vec![local.to_vec()])
    }
    fn broadcast_bytes(&self, _: &mut Vec<u8>) -> Result<()> {
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
    fn describe(&self) -> String {
        "one process".into()
    }
}

static WORLD: RwLock<Option<Arc<dyn Communicator>>> = RwLock::new(None);

/// The process group of this run: the one [`install`]ed (e.g. by `Mpi::init`, feature `mpi`), else
/// [`Single`].
pub fn world() -> Arc<dyn Communicator> {
    match WORLD.read() {
        Ok(w) => w.clone().unwrap_or_else(|| Arc::new(Single)),
        Err(poisoned) => poisoned
            .into_inner()
            .clone()
            .unwrap_or_else(|| Arc::new(Single)),
    }
}

/// Makes `comm` the process group [`world`] returns, replacing any earlier one;
/// `None` goes back to [`Single`]. Install before training starts: a trainer keeps the
/// group it started with.
pub fn install(comm: Option<Arc<dyn Communicator>>) {
    match WORLD.write() {
        Ok(mut w) => *w = comm,
        Err(poisoned) => *poisoned.into_inner() = comm,
    }
}

/// Whether this process is rank 0 of [`world`], the one that writes a run's files and
/// prints its progress.
pub fn is_leader() -> bool {
    world().rank() == 0
}

/// The contiguous share of `0..n` that `rank` of `size` processes takes: sizes differ by
/// at most one, the first ranks taking the remainder.
pub fn shard(n: usize, rank: usize, size: usize) -> std::ops::Range<usize> {
    let size = size.max(1);
    let (base, extra) = (n / size, n % size);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// Makes one rank's failure every rank's: each rank says whether `result` is an error
/// (one all-gather); a rank whose own result failed gets its error back, the others
/// [`Error::PeerFailed`] naming the first rank that failed. With every rank successful
/// each gets its own value. Call it where ranks might disagree on success (a file only
/// rank 0 writes), so none is left waiting in the next collective.
///
/// # Errors
/// As described; the transport's errors.
pub fn agree<T>(comm: &dyn Communicator, what: &str, result: Result<T>) -> Result<T> {
    if comm.size() == 1 {
        return result;
    }
    let flags = comm.all_gather_u64(&[u64::from(result.is_err())])?;
    let failed: Vec<usize> = flags
        .iter()
        .enumerate()
        .filter(|(_, f)| f.first() == Some(&1))
        .map(|(r, _)| r)
        .collect();
    match (result, failed.first()) {
        (Err(e), _) => Err(e),
        (Ok(v), None) => Ok(v),
        (Ok(_), Some(&rank)) => Err(Error::PeerFailed {
            rank,
            what: what.to_string(),
        }),
    }
}

/// A 64-bit FNV-1a hash of the bytes of every tensor of `model` (trainable or not), in
/// the model's visiting order: equal parameters give equal checksums, and the ranks of
/// a data-parallel run compare theirs after each epoch.
///
/// # Errors
/// The device's errors when reading the tensors.
pub fn parameter_checksum<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>(
    model: &M,
) -> Result<u64> {
    let mut visitor = Checksum(FNV_OFFSET);
    M::iter_tensors(&mut RecursiveWalker {
        m: model,
        f: &mut visitor,
    })?;
    Ok(visitor.0)
}

struct Checksum(u64);

impl<E: Dtype, D: Device<E>> TensorVisitor<E, D> for Checksum {
    type Viewer = ViewTensorRef;
    type Err = Error;
    type E2 = E;
    type D2 = D;

    fn visit<S: Shape>(
        &mut self,
        _: TensorOptions<S, E, D>,
        t: &Tensor<S, E, D>,
    ) -> std::result::Result<Option<Tensor<S, E, D>>, Error> {
        let values = t.as_vec();
        let size = std::mem::size_of::<E>();
        // SAFETY: `values` is a live, initialized `Vec<E>` of plain numbers (f32/f64);
        // reading its bytes is reading those numbers' representations.
        let bytes = unsafe {
            std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), values.len() * size)
        };
        self.0 = fnv1a(self.0, bytes);
        Ok(None)
    }
}

/// A 64-bit FNV-1a hash of `bytes`, continuing from `hash` (start from
/// [`FNV_OFFSET`]).
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The starting value of [`fnv1a`].
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Checks that every rank was given the same `what` (its `hash`, e.g. of the training
/// data or the settings), as rank 0.
///
/// # Errors
/// [`Error::InvalidSetting`] (setting `processes`) naming the ranks that differ; the
/// transport's errors.
pub fn check_same(comm: &dyn Communicator, what: &str, hash: u64) -> Result<()> {
    if comm.size() == 1 {
        return Ok(());
    }
    let all = comm.all_gather_u64(&[hash])?;
    let differing: Vec<usize> = (1..all.len()).filter(|&r| all[r] != all[0]).collect();
    if differing.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid(
            "processes",
            format!("rank(s) {differing:?} were given other {what} than rank 0"),
        ))
    }
}

/// Checks that every rank holds parameters with the same [`parameter_checksum`] as
/// rank 0, after `epoch`. Returns the checksum.
///
/// # Errors
/// [`Error::ReplicasDiverged`] naming the ranks whose parameters differ from rank 0's;
/// the transport's errors.
pub fn check_agreement<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>(
    comm: &dyn Communicator,
    model: &M,
    epoch: usize,
) -> Result<u64> {
    let mine = parameter_checksum(model)?;
    if comm.size() == 1 {
        return Ok(mine);
    }
    let all: Vec<u64> = comm
        .all_gather_u64(&[mine])?
        .into_iter()
        .map(|v| v.first().copied().unwrap_or_default())
        .collect();
    let differing: Vec<usize> = (1..all.len()).filter(|&r| all[r] != all[0]).collect();
    if differing.is_empty() {
        Ok(mine)
    } else {
        Err(Error::ReplicasDiverged {
            epoch,
            ranks: differing,
            checksums: all,
        })
    }
}

/// Sums `values` (of any float dtype the crate trains with) over the ranks of `comm`.
///
/// # Errors
/// [`Error::InvalidSetting`] for a dtype other than `f32` and `f64`; the transport's
/// errors.
pub fn all_reduce_sum<E: 'static>(comm: &dyn Communicator, values: &mut [E]) -> Result<()> {
    use std::any::TypeId;
    if comm.size() == 1 {
        return Ok(());
    }
    if TypeId::of::<E>() == TypeId::of::<f32>() {
        // SAFETY: `E` is `f32`, checked just above.
        let v = unsafe { &mut *(values as *mut [E] as *mut [f32]) };
        comm.all_reduce_sum_f32(v)
    } else if TypeId::of::<E>() == TypeId::of::<f64>() {
        // SAFETY: `E` is `f64`, checked just above.
        let v = unsafe { &mut *(values as *mut [E] as *mut [f64]) };
        comm.all_reduce_sum_f64(v)
    } else {
        Err(Error::invalid(
            "dtype",
            "training across processes reduces f32 or f64 gradients only",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::shard;

    #[test]
    fn shards_cover_in_order() {
        let parts: Vec<_> = (0..3).map(|r| shard(10, r, 3)).collect();
        assert_eq!(parts, vec![0..4, 4..7, 7..10]);
        assert_eq!(shard(1, 1, 2), 1..1);
        assert_eq!(shard(5, 0, 1), 0..5);
    }
}
