//! A VAE on your own data: rows of measurements, counts, positive values or proportions
//! from a `.npy`, `.npz` or CSV file, with the likelihood that fits them
//! (`--likelihood gaussian | poisson | negative-binomial | zinb | binomial:N | gamma |
//! log-normal | beta`, shape parameters learned per column), a validation split that
//! picks the best epoch, and the test split evaluated once, with that model, at the end.
//!
//! ```text
//! python3 -c "from sklearn.datasets import load_breast_cancer as l; import numpy as np; \
//!             d = l(); np.savez('cancer.npz', x=d.data, y=d.target)"
//! cargo run --release --example tabular -- --train cancer.npz --latent-dim 2
//! cargo run --release --example tabular -- --train data.csv --label-column class
//! python3 -c "from sklearn.datasets import load_digits as l; import numpy as np; \
//!             d = l(); np.savez('digits.npz', x=d.data, y=d.target)"
//! cargo run --release --example tabular -- --train digits.npz --likelihood binomial:16
//! ```
//!
//! Every value must lie in the likelihood's support (non-negative integers for the
//! count likelihoods, `0..=N` for `binomial:N`, positive values for `gamma` and
//! `log-normal`, `(0, 1)` for `beta`): the first one that does not is reported with its
//! file, row and column before training. The non-Gaussian likelihoods model the values
//! as they are (`--scaling none`, the default for them); the count likelihoods' encoder
//! reads `ln(1 + x)` (`--encoder-input`).
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
use latent::data::{check_support, ValueSupport};
use latent::data::{load_table, Binarization, Dataset, Scaler, Scaling};
use latent::eval::explore::encode;
use latent::eval::{self, EvalOptions};
use latent::heads::{
    BetaHead, BinomialHead, GammaHead, LearnedGaussianHead, LikelihoodHead, LogNormalHead,
    NegativeBinomialHead, PoissonHead, StandardNormalPrior, ZinbHead,
};
use latent::train::{
    fit, load_checkpoint, Describe, LrSchedule, Named, RunDir, ThreadSafe, TrainConfig,
};
use latent::{Elbo, Error, Result};
use latent_models::{mlp_vae_with_heads, InputTransform, MlpVae};

type Dev = AutoDevice;
type Model<Lik> = MlpVae<usize, usize, usize, f32, Dev, Lik, StandardNormalPrior>;

/// `--likelihood`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum LikelihoodArg {
    /// Real values: Gaussian with a learned σ per column.
    Gaussian,
    /// Counts: Poisson.
    Poisson,
    /// Over-dispersed counts: negative binomial with a learned dispersion per column.
    NegativeBinomial,
    /// Counts with excess zeros: scVI's zero-inflated negative binomial.
    Zinb,
    /// Counts out of N trials.
    Binomial(u32),
    /// Positive values: Gamma with a learned concentration per column.
    Gamma,
    /// Positive values: log-normal with a learned σ per column.
    LogNormal,
    /// Proportions in (0, 1): Beta with a learned precision per column.
    Beta,
}

impl std::str::FromStr for LikelihoodArg {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "gaussian" => Self::Gaussian,
            "poisson" => Self::Poisson,
            "negative-binomial" => Self::NegativeBinomial,
            "zinb" => Self::Zinb,
            "gamma" => Self::Gamma,
            "log-normal" => Self::LogNormal,
            "beta" => Self::Beta,
            other => match other.strip_prefix("binomial:").map(str::parse) {
                Some(Ok(n)) if n > 0 => Self::Binomial(n),
                _ => {
                    return Err(format!(
                        "unknown likelihood '{other}': gaussian, poisson, negative-binomial, \
                         zinb, binomial:N (N ≥ 1 trials), gamma, log-normal or beta"
                    ))
                }
            },
        })
    }
}

impl LikelihoodArg {
    fn support(self) -> ValueSupport {
        match self {
            Self::Gaussian => ValueSupport::Real,
            Self::Poisson | Self::NegativeBinomial | Self::Zinb => ValueSupport::Counts,
            Self::Binomial(n) => ValueSupport::CountsUpTo(n),
            Self::Gamma | Self::LogNormal => ValueSupport::Positive,
            Self::Beta => ValueSupport::UnitInterval,
        }
    }

    fn is_count(self) -> bool {
        matches!(
            self,
            Self::Poisson | Self::NegativeBinomial | Self::Zinb | Self::Binomial(_)
        )
    }

    fn name(self) -> String {
        match self {
            Self::Gaussian => "gaussian".into(),
            Self::Poisson => "poisson".into(),
            Self::NegativeBinomial => "negative-binomial".into(),
            Self::Zinb => "zinb".into(),
            Self::Binomial(n) => format!("binomial:{n}"),
            Self::Gamma => "gamma".into(),
            Self::LogNormal => "log-normal".into(),
            Self::Beta => "beta".into(),
        }
    }
}

/// `--encoder-input`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum InputArg {
    /// ln(1 + x) for the count likelihoods, x as it is otherwise.
    Auto,
    /// x as it is.
    Identity,
    /// ln(1 + x).
    Log1p,
}

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

/// Train a VAE on rows of values from a file, with the likelihood that fits them.
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
    /// The likelihood p(x|z): gaussian, poisson, negative-binomial, zinb, binomial:N,
    /// gamma, log-normal or beta.
    #[arg(long, default_value = "gaussian")]
    likelihood: LikelihoodArg,
    /// What the encoder reads: auto (ln(1 + x) for counts), identity or log1p.
    #[arg(long, value_enum, default_value_t = InputArg::Auto)]
    encoder_input: InputArg,
    /// Column scaling, fitted on the training split (default: standardize for the
    /// gaussian likelihood, none for the others, which model the values as they are).
    #[arg(long, value_enum)]
    scaling: Option<ScalingArg>,
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
/// Every file is checked against the likelihood's support as it is read, so that an
/// error names the row of the file, not of a shuffled split.
fn splits(a: &Args) -> Result<(Dataset, Dataset, Dataset)> {
    let load = |p: &PathBuf| -> Result<Dataset> {
        let data = load_table(p, a.labels.as_deref(), a.label_column.as_deref())?;
        check_support(&data, a.likelihood.support(), &a.likelihood.name(), p)?;
        Ok(data)
    };
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
    let data = splits(a)?;
    let input = match (a.encoder_input, a.likelihood.is_count()) {
        (InputArg::Log1p, _) | (InputArg::Auto, true) => InputTransform::Log1p,
        (InputArg::Identity, _) | (InputArg::Auto, false) => InputTransform::Identity,
    };
    let dev = Dev::seed_from_u64(a.seed);
    // The learned per-column parameters need the table's width.
    let width = data.0.dim();
    match a.likelihood {
        LikelihoodArg::Gaussian => train_with(
            LearnedGaussianHead::new(&dev, width)?,
            (a, input, dev, data, start),
        ),
        LikelihoodArg::Poisson => train_with(PoissonHead, (a, input, dev, data, start)),
        LikelihoodArg::NegativeBinomial => train_with(
            NegativeBinomialHead::new(&dev, width)?,
            (a, input, dev, data, start),
        ),
        LikelihoodArg::Zinb => {
            train_with(ZinbHead::new(&dev, width)?, (a, input, dev, data, start))
        }
        LikelihoodArg::Binomial(n) => {
            train_with(BinomialHead::new(n)?, (a, input, dev, data, start))
        }
        LikelihoodArg::Gamma => {
            train_with(GammaHead::new(&dev, width)?, (a, input, dev, data, start))
        }
        LikelihoodArg::LogNormal => train_with(
            LogNormalHead::new(&dev, width)?,
            (a, input, dev, data, start),
        ),
        LikelihoodArg::Beta => {
            train_with(BetaHead::new(&dev, width)?, (a, input, dev, data, start))
        }
    }
}

/// What every likelihood's run shares: the flags, the encoder's input, the device, the
/// training, validation and test splits, and the start time.
type Shared<'a> = (
    &'a Args,
    InputTransform,
    Dev,
    (Dataset, Dataset, Dataset),
    Instant,
);

fn train_with<Lik>(
    likelihood: Lik,
    (a, input, dev, (train, val, test), start): Shared<'_>,
) -> Result<()>
where
    Lik: LikelihoodHead<usize, f32, Dev, OwnedTape<f32, Dev>>
        + LikelihoodHead<usize, f32, Dev, NoneTape>
        + TensorCollection<f32, Dev>
        + Named
        + ThreadSafe,
{
    let scaling = match (a.likelihood, a.scaling) {
        (LikelihoodArg::Gaussian, s) => s.unwrap_or(ScalingArg::Standardize),
        (_, None | Some(ScalingArg::None)) => ScalingArg::None,
        (l, Some(s)) => {
            return Err(Error::invalid(
                "scaling",
                format!(
                    "the {} likelihood models the values as they are; use --scaling none, not {}",
                    l.name(),
                    format!("{s:?}").to_lowercase()
                ),
            ))
        }
    };
    let scaler = Scaler::fit(&train, scaling.into())?;
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

    let mut model: Model<Lik> = mlp_vae_with_heads(
        &dev,
        (x, a.hidden, a.latent_dim),
        likelihood,
        StandardNormalPrior,
    )?
    .with_input(input);
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
        common::scatter(
            &a.out.join("latent.png"),
            "test rows' posterior means, by label",
            &mu,
            a.latent_dim,
            &test.labels,
            &[],
        )?;
    }
    let baseline = independent_baseline(a.likelihood, &train, &test);
    let summary = serde_json::json!({
        "data": a.train.display().to_string(),
        "n_train": train.len(), "n_validation": val.len(), "n_test": test.len(),
        "columns": x, "scaling": scaler.scaling, "hidden": a.hidden, "latent_dim": a.latent_dim,
        "likelihood": model.likelihood.name(), "encoder_input": input.name(),
        "prior": "standard-normal",
        "epochs_trained": report.epochs.last().map(|m| m.epoch),
        "stopped_early": report.stopped_early,
        "best_epoch": best_epoch, "validation_elbo": best_val,
        "test_elbo": ev.elbo.elbo, "test_reconstruction": ev.elbo.reconstruction,
        "test_kl": ev.elbo.kl, "test_nll": ev.nll.nll, "test_nll_stderr": ev.nll.stderr,
        "test_nll_k": ev.nll.k, "active_units": ev.active_units,
        "kl_per_dim": ev.kl_per_dim,
        "independent_baseline_test_nll": baseline,
        "units": if scaler.scaling == Scaling::None { "nats per row" } else { "nats per row, on the scaled values" },
        "seconds": start.elapsed().as_secs_f64(),
    });
    common::print(&common::write_json(&a.out, "summary.json", &summary)?);
    Ok(())
}

/// The test NLL (nats per row) of the model without latents for the binomial and
/// Poisson likelihoods: every column independent, its parameter estimated on the
/// training split with half a pseudo-count (`p̂_j = (Σ x_j + ½)/(N n + 1)` for
/// `binomial:N`, `λ̂_j = (Σ x_j + ½)/n` for `poisson`), so that a value never seen in
/// training keeps a finite log-mass. `None` for the other likelihoods.
fn independent_baseline(lik: LikelihoodArg, train: &Dataset, test: &Dataset) -> Option<f64> {
    use latent::special::scalar::lgamma;
    let (tr, te) = (train.values.as_ref()?, test.values.as_ref()?);
    let (w, n) = (train.dim(), train.len() as f64);
    let sums: Vec<f64> = (0..w).map(|j| tr.iter().skip(j).step_by(w).sum()).collect();
    let log_mass: Box<dyn Fn(usize, f64) -> f64> = match lik {
        LikelihoodArg::Binomial(trials) => {
            let t = f64::from(trials);
            let p: Vec<f64> = sums.iter().map(|s| (s + 0.5) / (t * n + 1.0)).collect();
            Box::new(move |j, x| {
                lgamma(t + 1.0) - lgamma(x + 1.0) - lgamma(t - x + 1.0)
                    + x * p[j].ln()
                    + (t - x) * (-p[j]).ln_1p()
            })
        }
        LikelihoodArg::Poisson => {
            let rate: Vec<f64> = sums.iter().map(|s| (s + 0.5) / n).collect();
            Box::new(move |j, x| x * rate[j].ln() - rate[j] - lgamma(x + 1.0))
        }
        _ => return None,
    };
    let total: f64 = te
        .iter()
        .enumerate()
        .map(|(i, &x)| log_mass(i % w, x))
        .sum();
    Some(-total / test.len() as f64)
}
