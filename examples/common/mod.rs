//! What the examples share: the command-line flags every run has, the value lists
//! clap shows in `--help`, data discovery and the summary file.
//!
//! Each example declares `mod common;` and flattens [`RunArgs`] into its own flags.

#![allow(dead_code)] // each example uses the part it needs

use std::path::{Path, PathBuf};

pub mod mlp_heads;

use latent::data::{discover, Binarization, Splits};
use latent::eval::EvalOptions;
use latent::train::{RunDir, TrainConfig};
use latent::{Error, Result};

/// The flags of every training run.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Directory with the four IDX files, or `embedded` for the built-in subset
    /// (default: `$LATENT_DATA`, then Debian's Fashion-MNIST, then the embedded subset).
    #[arg(long)]
    pub data: Option<String>,
    /// Passes over the training set, per model (default: 10; 5 in `compare`).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per optimizer step.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Seed for initialization, shuffling, binarization and sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Importance samples per test image for the test NLL.
    #[arg(long, default_value_t = 1000)]
    pub eval_k: usize,
    /// Test images for the NLL (the first ones of the split; 0: all).
    #[arg(long, default_value_t = 1000)]
    pub eval_n: usize,
    /// Data-parallel CPU threads (replicas) per training step; 0: one per core.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Hide the progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Replace an earlier run found in the output directory (refused otherwise).
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Continue the run in the output directory from its last checkpoint, to
    /// `--epochs` (same settings as the run; the result equals an uninterrupted run).
    #[arg(long)]
    pub resume: bool,
}

impl RunArgs {
    /// The output directory: `--out`, else `runs/<name>`.
    pub fn out_dir(&self, name: &str) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| Path::new("runs").join(name))
    }

    /// Claims the output directory for the whole run (see [`RunDir`]): another run
    /// still writing there, or an earlier run without `--overwrite`, is an error.
    ///
    /// # Errors
    /// [`Error::RunDirBusy`], [`Error::RunDirOccupied`], I/O errors.
    /// Only rank 0 of a run across processes claims it (and writes there): the others
    /// get `None`.
    pub fn claim(&self, out: &Path) -> Result<Option<RunDir>> {
        if !leader() {
            return Ok(None);
        }
        if self.resume {
            RunDir::resume(out)
        } else {
            RunDir::claim(out, self.overwrite)
        }
        .map(Some)
    }

    /// Finds the data (see `--data`) and says which it used.
    ///
    /// # Errors
    /// Missing or malformed data files.
    pub fn splits(&self) -> Result<Splits> {
        let splits = discover(self.data.as_deref())?;
        if !leader() {
            return Ok(splits);
        }
        eprintln!(
            "data: {} ({} training, {} test images of {}×{})",
            splits.source,
            splits.train.len(),
            splits.test.len(),
            splits.train.rows,
            splits.train.cols
        );
        Ok(splits)
    }

    /// `--epochs`, else the example's `default`.
    pub fn epochs(&self, default: usize) -> usize {
        self.epochs.unwrap_or(default)
    }

    /// The trainer's settings for `epochs` passes, writing into `out`.
    pub fn config(&self, epochs: usize, binarization: Binarization, out: PathBuf) -> TrainConfig {
        TrainConfig {
            epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            seed: self.seed,
            binarization,
            progress: !self.quiet,
            out_dir: Some(out),
            overwrite: self.overwrite,
            threads: self.threads,
            resume: self.resume,
            ..Default::default()
        }
    }

    /// The settings of the importance-sampled NLL.
    pub fn eval_options(&self) -> EvalOptions {
        EvalOptions {
            k: self.eval_k,
            n: (self.eval_n > 0).then_some(self.eval_n),
            ..Default::default()
        }
    }
}

/// `--binarize`: how pixels in `[0, 1]` become the data the likelihood sees.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinarizeArg {
    /// Grey levels as they are.
    None,
    /// One Bernoulli draw per pixel, fixed for the run.
    Static,
    /// A fresh Bernoulli draw per pixel every epoch (Burda et al. 2015).
    Dynamic,
}

impl From<BinarizeArg> for Binarization {
    fn from(b: BinarizeArg) -> Self {
        match b {
            BinarizeArg::None => Binarization::None,
            BinarizeArg::Static => Binarization::Static,
            BinarizeArg::Dynamic => Binarization::Dynamic,
        }
    }
}

/// `--objective`: what the optimizer maximizes.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectiveArg {
    /// The ELBO with `--samples` latent draws and `--beta`.
    Elbo,
    /// The importance-weighted bound with `--k` samples (Burda et al. 2015).
    Iwae,
}

/// `--likelihood`: the family of `p(x | z)` on the decoder's output.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LikelihoodArg {
    /// Bernoulli on logits (binary or binarized pixels).
    Bernoulli,
    /// Continuous Bernoulli on logits (grey levels in [0, 1]).
    ContinuousBernoulli,
    /// Normal with a learned σ shared by all pixels.
    Gaussian,
}

/// `--prior`: `standard-normal`, or `mixture:K` (a learned mixture of K Normals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriorArg {
    /// `N(0, I)`.
    StandardNormal,
    /// A learned mixture of this many diagonal Normals.
    Mixture(usize),
}

impl std::str::FromStr for PriorArg {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.split_once(':') {
            None if s == "standard-normal" => Ok(Self::StandardNormal),
            Some(("mixture", k)) => match k.parse() {
                Ok(k) if k >= 1 => Ok(Self::Mixture(k)),
                _ => Err(format!("`{k}` is not a number of components ≥ 1")),
            },
            _ => Err(format!(
                "`{s}` is not one of: standard-normal, mixture:K (K ≥ 1 components)"
            )),
        }
    }
}

impl std::fmt::Display for PriorArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::StandardNormal => f.write_str("standard-normal"),
            Self::Mixture(k) => write!(f, "mixture:{k}"),
        }
    }
}

/// The name clap shows for a value (`continuous-bernoulli`, …).
pub fn value_name<V: clap::ValueEnum>(v: &V) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |p| p.get_name().to_string())
}

/// `cpu` or `cuda`, as built.
pub fn device_name() -> &'static str {
    if cfg!(feature = "cuda") {
        "cuda"
    } else {
        "cpu"
    }
}

/// Runs an example's `run`: with the `mpi` feature it first starts MPI (so the example
/// trains across the ranks of `mpirun -np N`), and an error on any rank ends the whole
/// job (`MPI_Abort`), since the other ranks would wait for it in the next collective.
pub fn main(run: impl FnOnce() -> Result<()>) {
    #[cfg(feature = "mpi")]
    let mpi = match latent::distributed::Mpi::init() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let world = latent::distributed::world();
    if world.size() > 1 && leader() {
        eprintln!("processes: {}", world.describe());
    }
    if let Err(e) = run() {
        if world.size() > 1 {
            eprintln!("error on rank {}: {e}", world.rank());
            world.abort(1);
        }
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    #[cfg(feature = "mpi")]
    drop(mpi);
}

/// Whether this process writes the run's files and prints its results: always, but
/// for the ranks after the first of a run across processes.
pub fn leader() -> bool {
    latent::distributed::is_leader()
}

/// Prints `text` on stdout from rank 0 only.
pub fn print(text: &str) {
    if leader() {
        println!("{text}");
    }
}

/// Writes `summary` as pretty JSON to `dir/name` atomically (a temporary file in `dir`,
/// then a rename) and returns the JSON. Across processes only rank 0 writes.
///
/// # Errors
/// I/O errors, naming the path.
pub fn write_json<S: serde::Serialize>(dir: &Path, name: &str, summary: &S) -> Result<String> {
    let path = dir.join(name);
    let mut value =
        serde_json::to_value(summary).map_err(|e| Error::io(&path, std::io::Error::other(e)))?;
    if let Some(object) = value.as_object_mut() {
        object.insert("provenance".into(), provenance());
    }
    let json = serde_json::to_string_pretty(&value)
        .map_err(|e| Error::io(&path, std::io::Error::other(e)))?;
    if !leader() {
        return Ok(json);
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    latent::train::run_dir::write_atomically(&path, |w| {
        std::io::Write::write_all(w, format!("{json}\n").as_bytes())
            .map_err(|e| Error::io(&path, e))
    })?;
    Ok(json)
}

/// Where a result came from, written into every JSON result: the command line, the
/// date (UTC), the commit of the working tree it ran from (with `-dirty` when tracked
/// files differed from it; null outside a git checkout), the CPU model and the SIMD
/// level of the matrix products.
pub fn provenance() -> serde_json::Value {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=7", "HEAD"]).map(|c| {
        match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if !changes.is_empty() => format!("{c}-dirty"),
            _ => c,
        }
    });
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|m| m.trim().to_string())
    });
    serde_json::json!({
        "command": std::env::args().reduce(|a, b| format!("{a} {b}")),
        "date": utc_date(),
        "commit": commit,
        "cpu": cpu,
        "simd": latent::kernels::simd_level().to_string(),
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

/// Today's date in UTC, `YYYY-MM-DD` (the days-to-civil conversion of Howard Hinnant's
/// `chrono`-compatible date algorithms).
fn utc_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// `reconstructions.png`: up to 4 pairs of rows of 10 (images `orig` above their
/// reconstructions `recon`); `samples.png`: decoded prior draws, `cols` per row. Images
/// are `(height, width)` intensities in `[0, 1]`, one after another.
///
/// # Errors
/// I/O and PNG encoding errors.
pub fn pictures(
    dir: &Path,
    (height, width): (usize, usize),
    orig: &[f32],
    recon: &[f32],
    samples: &[f32],
    cols: usize,
) -> Result<()> {
    if !leader() {
        return Ok(());
    }
    let (per_row, dim) = (10, height * width);
    let n = (4 * per_row).min(orig.len() / dim.max(1));
    let mut grid = Vec::with_capacity(2 * n * dim);
    for s in (0..n).step_by(per_row) {
        let e = (s + per_row).min(n);
        grid.extend_from_slice(&orig[s * dim..e * dim]);
        grid.extend_from_slice(&recon[s * dim..e * dim]);
    }
    let save = latent::eval::viz::save_image_grid;
    save(
        dir.join("reconstructions.png"),
        &grid,
        height,
        width,
        per_row,
    )?;
    save(dir.join("samples.png"), samples, height, width, cols)
}

/// The colour names of [`latent::eval::charts::COLOURS`], class by class.
pub const COLOUR_NAMES: [&str; 10] = [
    "blue", "orange", "green", "red", "purple", "brown", "pink", "grey", "olive", "cyan",
];

/// The `z`-dimensional `points` projected on their first two principal axes (PCA by
/// nalgebra's symmetric eigendecomposition), drawn as a labelled scatter plot, one colour
/// per class, named by `names` in the legend.
pub fn scatter(
    path: &Path,
    title: &str,
    points: &[f64],
    z: usize,
    classes: &[u8],
    names: &[&str],
) -> Result<()> {
    if !leader() {
        return Ok(());
    }
    let n = points.len() / z;
    let mean: Vec<f64> = (0..z)
        .map(|j| (0..n).map(|i| points[i * z + j] / n as f64).sum())
        .collect();
    let centred = nalgebra::DMatrix::from_fn(n, z, |i, j| points[i * z + j] - mean[j]);
    let cov = centred.transpose() * &centred / (n.max(2) - 1) as f64;
    let eig = nalgebra::SymmetricEigen::new(cov);
    let mut order: Vec<usize> = (0..z).collect();
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let axes = if z >= 2 { &order[..2] } else { &order[..1] };
    let proj = &centred * eig.eigenvectors.select_columns(axes);
    let xy: Vec<(f64, f64)> = (0..n)
        .map(|i| (proj[(i, 0)], if z >= 2 { proj[(i, 1)] } else { 0.0 }))
        .collect();
    latent::eval::charts::scatter(
        path,
        title,
        ("first principal axis", "second principal axis"),
        &xy,
        &classes[..n.min(classes.len())],
        names,
    )
}
