//! The crate's one error type.
//!
//! Every fallible function in `latent` returns [`Result<T>`](Result). Bad input — a
//! corrupt file, a shape that does not fit, an invalid setting, a loss that became
//! NaN — is reported through a variant of [`Error`], never through a panic.

use std::path::PathBuf;

/// Every way an operation in `latent` can fail.
///
/// `#[non_exhaustive]`: match the variants you handle and keep a `_` arm, so that new
/// variants are not a breaking change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file that could not be read or written.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A file claimed to be in IDX format but is not a valid one.
    #[error("malformed IDX file {path}: {reason}")]
    MalformedIdx {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it, e.g. "bad magic number 0x12345678".
        reason: String,
    },

    /// A tensor, buffer or data set had a different shape than required. Shapes are
    /// the sizes of the dimensions, outermost first (`[batch, width]`, `[n]`, …).
    #[error("shape mismatch in {context}: expected {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// Where the mismatch was found.
        context: String,
        /// The shape that was required.
        expected: Vec<usize>,
        /// The shape that was given.
        found: Vec<usize>,
    },

    /// A length that must be a positive multiple of `multiple_of` (values per row,
    /// conditions per batch, codes per grid) is not one.
    #[error("length mismatch in {context}: {found} is not a positive multiple of {multiple_of}")]
    NotAMultiple {
        /// Where the mismatch was found.
        context: String,
        /// The required factor.
        multiple_of: usize,
        /// The length that was given.
        found: usize,
    },

    /// A setting or a distribution parameter is outside its valid range.
    #[error("invalid setting `{name}`: {reason}")]
    InvalidSetting {
        /// The setting or parameter, e.g. `samples` or `scale`.
        name: String,
        /// Why the value is invalid.
        reason: String,
    },

    /// A computed quantity (usually the training loss) is NaN or infinite.
    #[error("non-finite {what} {}: {value}", place(*.epoch, *.step))]
    NonFinite {
        /// What became non-finite, e.g. `loss`.
        what: String,
        /// The 1-based epoch in which it happened; 0 outside the training loop (an
        /// evaluation or a model called directly), which the message says instead.
        epoch: usize,
        /// The 1-based optimizer step within that epoch.
        step: usize,
        /// The offending value.
        value: f64,
    },

    /// Another live process holds the run directory (its lock file names it).
    #[error("run directory {path} is in use by process {pid}")]
    RunDirBusy {
        /// The directory.
        path: PathBuf,
        /// The process holding it.
        pid: u32,
    },

    /// The run directory holds the outputs of an earlier run; choose another directory
    /// or overwrite it explicitly.
    #[error("run directory {path} holds an earlier run (pass --overwrite to replace it, or --resume to continue it)")]
    RunDirOccupied {
        /// The directory.
        path: PathBuf,
    },

    /// The compute device (CPU allocator or CUDA) reported an error.
    #[error("device error: {0}")]
    Device(String),

    /// A checkpoint could not be written or read back.
    #[error("checkpoint error on {path}: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// A value of a data file that cannot be used: not a number, NaN or infinite, a
    /// label out of range, a ragged row, an unsupported array type.
    #[error("bad value in {path} at row {row}, column {column}: {reason}")]
    BadValue {
        /// The data file.
        path: PathBuf,
        /// The 0-based data row (header excluded).
        row: usize,
        /// The 0-based column.
        column: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// Settings whose memory would exceed the limit, refused before anything is
    /// allocated (e.g. [`crate::train::TrainConfig::memory_limit`]).
    #[error("{what} would need at least {} MiB, more than the limit of {} MiB (lower the batch size or the samples, or raise the limit)", needed / (1 << 20), limit / (1 << 20))]
    MemoryLimit {
        /// What would need the memory.
        what: String,
        /// Bytes it would need (a lower bound).
        needed: u128,
        /// The limit in bytes.
        limit: u128,
    },

    /// A checkpoint describes another model than the one it is loaded into
    /// ([`crate::train::load_model`]), or does not describe its model.
    #[error("checkpoint {path} does not hold this model: {}", differences.join("; "))]
    CheckpointMismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// Each difference, one per entry (e.g. `size z: 20 here, 10 in the checkpoint`).
        differences: Vec<String>,
    },

    /// The ranks of a run across processes hold different parameters after an epoch
    /// ([`crate::distributed::check_agreement`]): their updates diverged, which a
    /// data-parallel run must never do silently.
    #[error("after epoch {epoch} the parameters of rank(s) {ranks:?} differ from rank 0's (checksums by rank: {checksums:x?})")]
    ReplicasDiverged {
        /// The epoch after which the ranks were compared.
        epoch: usize,
        /// The ranks whose parameters differ from rank 0's.
        ranks: Vec<usize>,
        /// Every rank's parameter checksum, in rank order.
        checksums: Vec<u64>,
    },

    /// Another rank of a run across processes failed at a step every rank takes
    /// together ([`crate::distributed::agree`]); its own error is reported there.
    #[error("rank {rank} failed {what}")]
    PeerFailed {
        /// The first rank that failed.
        rank: usize,
        /// What it was doing.
        what: String,
    },

    /// Setting up or using the communication between processes failed (MPI).
    #[error("communication between processes: {0}")]
    Communication(String),

    /// An operation this object does not provide: the inverse of a bijector that has
    /// none, the log-density of a flow at a point it cannot invert.
    #[error("{what} is not available: {reason}")]
    Unsupported {
        /// What was asked for.
        what: String,
        /// Why it is not available.
        reason: String,
    },

    /// Encoding or decoding an image failed.
    #[error("image error on {path}: {reason}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// `Result` with [`Error`] as its error type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::ShapeMismatch`] in `context`.
    pub fn shape(context: impl Into<String>, expected: &[usize], found: &[usize]) -> Self {
        Error::ShapeMismatch {
            context: context.into(),
            expected: expected.to_vec(),
            found: found.to_vec(),
        }
    }

    /// An [`Error::NotAMultiple`] in `context`.
    pub fn not_a_multiple(context: impl Into<String>, multiple_of: usize, found: usize) -> Self {
        Error::NotAMultiple {
            context: context.into(),
            multiple_of,
            found,
        }
    }

    /// An [`Error::InvalidSetting`] for `name` with the given reason.
    pub fn invalid(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidSetting {
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Unsupported`]: `what` is not available, because `reason`.
    pub fn unsupported(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Unsupported {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Converts a dfdx device error (allocation failure, CUDA error) into [`Error::Device`].
    pub fn device(err: impl std::fmt::Debug) -> Self {
        Error::Device(format!("{err:?}"))
    }
}

/// Where a non-finite value appeared: `at epoch E, step S`, or `outside the training
/// loop` for epoch 0.
fn place(epoch: usize, step: usize) -> String {
    if epoch == 0 {
        "outside the training loop".into()
    } else {
        format!("at epoch {epoch}, step {step}")
    }
}
