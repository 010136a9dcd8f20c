//! A VAE on your own real-valued data: rows of measurements from a `.npy`, `.npz` or CSV
//! file, a Gaussian likelihood with a learned σ per column, a validation split that
//! picks the best epoch, and the test split evaluated once, with that model, at the end.
//!
//! ```text
//! python3 -c "from sklearn.datasets import load_breast_cancer as l; import numpy as np; \
//!             d = l(); np.savez('cancer.npz', x=d.data, y=d.target)"
//! cargo run --release --example tabular -- --train cancer.npz --latent-dim 2
//! cargo run --release --example tabular -- --train data.csv --label-column class
//! ```
//!
//! Data: `--train FILE` (`.npy` with `--labels FILE.npy`, `.npz` with arrays `x` and
//! `y`, or CSV with a header row and `--label-column NAME|INDEX`); the test split is
//! `--test FILE`, else `--test-fraction` of the rows (seeded); the validation split is
//! `--val FILE`, else `--val-fraction` of the remaining training rows. Values are
//! checked (NaN, infinity, ragged rows, non-numbers: errors naming the row and column)
//! and scaled by `--scaling` (`standardize` by default) with statistics of the training
//! split only, saved in `scaler.json`.
//!
//! Writes into `--out` (default `runs/tabular`): `summary.json` (the best epoch, its
//! validation ELBO, and the test ELBO, NLL and active units of that model),
//! `metrics.jsonl` (the validation figures per epoch), `checkpoint.safetensors` (the
//! last epoch, for `--resume`), `best.safetensors` (the best epoch), `scaler.json`
//! and `latent.png` (the test rows' posterior means on their first two principal axes,
//! coloured by label).

mod common;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use dfdx::prelude::*;
use latent::data::{load_table, Binarization, Dataset, Scaler, Scaling};
use latent::eval::{self, EvalOptions};
use latent::explore::encode;
use latent::heads::{LearnedGaussianHead, StandardNormalPrior};
use latent::train::{fit, load_checkpoint, Describe, LrSchedule, RunDir, TrainConfig};
use latent::{Elbo, Error, Result};
use latent_models::{mlp_vae_with_heads, MlpVae};

type Dev = AutoDevice;
type Model = MlpVae<
    usize,
    usize,
    usize,
    f32,
    Dev,
    LearnedGaussianHead<usize, f32, Dev>,
    StandardNormalPrior,
>;

/// `--scaling`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum ScalingArg {
    /// Values as they are.
    None,
    /// Zero mean and unit variance per column (training split).
    Standardize,
    /// [0, 1] per column (training split).
    MinMax,
}

impl From<ScalingArg> for Scaling {
    fn from(s: ScalingArg) -> Self {
        match s {
            ScalingArg::None => Scaling::None,
            ScalingArg::Standardize => Scaling::Standardize,
            ScalingArg::MinMax => Scaling::MinMax,
        }
    }
}

/// `--lr-schedule`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum ScheduleArg {
    /// The same rate throughout.
    Constant,
    /// Cosine annealing from --lr to 0 over the run.
    Cosine,
}

/// Train a VAE with a Gaussian likelihood on rows of real values from a file.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
struct Args {
    /// The training data: .npy, .npz (arrays x, y) or .csv (header row).
    #[arg(long)]
    train: PathBuf,
    /// Labels of a .npy training file (a .npy of integers, one per row).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// The CSV column holding the labels (name or 0-based index); the others are features.
    #[arg(long)]
    label_column: Option<String>,
    /// A test file (same format); else --test-fraction of the rows.
    #[arg(long)]
    test: Option<PathBuf>,
    /// Rows held out for testing when there is no --test file.
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// A validation file (same format); else --val-fraction of the training rows.
    #[arg(long)]
    val: Option<PathBuf>,
    /// Training rows held out for validation (best-epoch selection, early stopping).
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// Column scaling, fitted on the training split.
    #[arg(long, value_enum, default_value_t = ScalingArg::Standardize)]
    scaling: ScalingArg,
    /// Hidden units H.
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    /// Latent dimensions Z.
    #[arg(long, default_value_t = 2)]
    latent_dim: usize,
    /// Passes over the training split (at most: see --patience).
    #[arg(long, default_value_t = 300)]
    epochs: usize,
    /// Stop after this many epochs without a better validation ELBO (0: never).
    #[arg(long, default_value_t = 30)]
    patience: usize,
    /// Rows per optimizer step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Learning-rate schedule over the run: constant, or cosine annealing to 0.
    #[arg(long, value_enum, default_value_t = ScheduleArg::Constant)]
    lr_schedule: ScheduleArg,
    /// Linear learning-rate warm-up over this many optimizer steps.
    #[arg(long, default_value_t = 0)]
    warmup_steps: usize,
    /// Clip the gradient to this global L2 norm.
    #[arg(long)]
    grad_clip: Option<f64>,
    /// Decoupled weight decay λ (AdamW).
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Seed of the splits, initialization, shuffling and sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Importance samples per test row for the test NLL.
    #[arg(long, default_value_t = 1000)]
    eval_k: usize,
    /// Output directory.
    #[arg(long, default_value = "runs/tabular")]
    out: PathBuf,
    /// Replace an earlier run found in the output directory.
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Continue the run in the output directory.
    #[arg(long)]
    resume: bool,
    /// Data-parallel CPU threads per step (0: one per core).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Hide the per-epoch lines.
    #[arg(long)]
    quiet: bool,
}

fn main() {
    let args = Args::parse();
    common::main(|| run(&args));
}

/// The training, validation and test splits, unscaled.
fn splits(a: &Args) -> Result<(Dataset, Dataset, Dataset)> {
    let load = |p: &PathBuf| load_table(p, a.labels.as_deref(), a.label_column.as_deref());
    let all = load(&a.train)?;
    let (train, test) = match &a.test {
        Some(p) => (all, load(p)?),
        None => all.split_off(a.test_fraction, a.seed)?,
    };
    let (train, val) = match &a.val {
        Some(p) => (train, load(p)?),
        None => train.split_off(a.val_fraction, a.seed ^ 0x7a1)?,
    };
    for (name, split) in [("validation", &val), ("test", &test)] {
        latent::data::check_pair(&train, split, &format!("{} ({name})", a.train.display()))?;
    }
    Ok((train, val, test))
}

fn run(a: &Args) -> Result<()> {
    for (name, v) in [("hidden", a.hidden), ("latent-dim", a.latent_dim)] {
        if v == 0 {
            return Err(Error::invalid(name, "must be at least 1"));
        }
    }
    let start = Instant::now();
    // Across processes rank 0 alone claims the run directory and writes there.
    let _claim = match (common::leader(), a.resume) {
        (false, _) => None,
        (true, true) => Some(RunDir::resume(&a.out)?),
        (true, false) => Some(RunDir::claim(&a.out, a.overwrite)?),
    };
    let (train, val, test) = splits(a)?;
    let scaler = Scaler::fit(&train, a.scaling.into())?;
    let (train, val, test) = (
        scaler.apply(&train)?,
        scaler.apply(&val)?,
        scaler.apply(&test)?,
    );
    common::write_json(&a.out, "scaler.json", &scaler)?;
    let x = train.dim();
    if common::leader() {
        eprintln!(
            "data: {} ({} training, {} validation, {} test rows of {x} values; {:?} scaling)",
            a.train.display(),
            train.len(),
            val.len(),
            test.len(),
            scaler.scaling
        );
    }

    let dev = Dev::seed_from_u64(a.seed);
    let likelihood = LearnedGaussianHead::new(&dev, x)?;
    let mut model: Model = mlp_vae_with_heads(
        &dev,
        (x, a.hidden, a.latent_dim),
        likelihood,
        StandardNormalPrior,
    )?;
    let config = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        seed: a.seed,
        binarization: Binarization::None,
        progress: !a.quiet,
        out_dir: Some(a.out.clone()),
        overwrite: a.overwrite,
        threads: a.threads,
        resume: a.resume,
        keep_best: true,
        patience: (a.patience > 0).then_some(a.patience),
        lr_schedule: match a.lr_schedule {
            ScheduleArg::Constant => LrSchedule::Constant,
            ScheduleArg::Cosine => LrSchedule::Cosine { min_lr: 0.0 },
        },
        warmup_steps: a.warmup_steps,
        grad_clip: a.grad_clip,
        weight_decay: a.weight_decay,
        model: Some(model.spec()),
        ..TrainConfig::default()
    };
    // The trainer evaluates the validation split after every epoch.
    let report = fit(&mut model, &Elbo::default(), &train, &val, &config, &dev)?;
    let Some((best_epoch, best_val)) = report.best else {
        return Err(Error::invalid("epochs", "no epoch was evaluated"));
    };
    load_checkpoint(&mut model, a.out.join("best.safetensors"))?;

    // The test split, once, with the best model.
    let options = EvalOptions {
        k: a.eval_k,
        ..EvalOptions::default()
    };
    let ev = eval::report(&model, &test, &dev, &options)?;
    let (mu, _) = encode(&model, &test, &dev, 500)?;
    if a.latent_dim >= 2 {
        common::scatter(&a.out.join("latent.png"), &mu, a.latent_dim, &test.labels)?;
    }
    let summary = serde_json::json!({
        "data": a.train.display().to_string(),
        "n_train": train.len(), "n_validation": val.len(), "n_test": test.len(),
        "columns": x, "scaling": scaler.scaling, "hidden": a.hidden, "latent_dim": a.latent_dim,
        "likelihood": "gaussian, learned σ per column", "prior": "standard-normal",
        "epochs_trained": report.epochs.last().map(|m| m.epoch),
        "stopped_early": report.stopped_early,
        "best_epoch": best_epoch, "validation_elbo": best_val,
        "test_elbo": ev.elbo.elbo, "test_reconstruction": ev.elbo.reconstruction,
        "test_kl": ev.elbo.kl, "test_nll": ev.nll.nll, "test_nll_stderr": ev.nll.stderr,
        "test_nll_k": ev.nll.k, "active_units": ev.active_units,
        "kl_per_dim": ev.kl_per_dim,
        "units": "nats per row, on the scaled values",
        "seconds": start.elapsed().as_secs_f64(),
    });
    common::print(&common::write_json(&a.out, "summary.json", &summary)?);
    Ok(())
}
