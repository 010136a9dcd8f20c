//! The main job: train the classic MLP VAE on Fashion-MNIST and report its test ELBO.
//!
//! ```text
//! cargo run --release --example vae -- --epochs 10 --binarize dynamic
//! ```
//!
//! Data: `--data DIR` (IDX files, raw or .gz, MNIST works too), else `$LATENT_DATA`,
//! else `/usr/share/datasets/fashion-mnist` (Debian's `dataset-fashion-mnist`), else the
//! subset embedded in the crate (`--data embedded` forces it).
//!
//! `--objective iwae --k 5` trains with the IWAE bound instead of the ELBO. The test
//! NLL is estimated by importance sampling with `--eval-k` samples (default 1000) on
//! the first `--eval-n` test images (default 1000, 0 for all).
//!
//! Writes into `--out` (default `runs/vae`): `summary.json`, `metrics.jsonl`,
//! `checkpoint.safetensors`, `reconstructions.png` (test images above their
//! reconstructions) and `samples.png` (decoded draws from the prior).

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use dfdx::nn::modules::ReLU;
use dfdx::prelude::*;
use latent::data::{discover, Binarization, Dataset};
use latent::distributions::Distribution;
use latent::eval::{self, evaluate, EvalOptions};
use latent::heads::{
    BernoulliHead, ContinuousBernoulliHead, LearnedGaussianHead, MixturePrior, StandardNormalPrior,
};
use latent::nn::Linear;
use latent::train::{fit, prepare_test, TrainConfig};
use latent::viz::save_image_grid;
use latent::{
    AnyObjective, Elbo, Error, ImportanceWeighted, LatentVariableModel, Objective, Result,
};
use latent_models::{MlpDecoder, MlpEncoder, Vae};

/// Train the MLP VAE (784-H-Z, ReLU, Bernoulli logits, Adam) on Fashion-MNIST.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
struct Args {
    /// Directory with the four IDX files, or `embedded` for the built-in subset.
    #[arg(long)]
    data: Option<String>,
    /// Passes over the training set.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Images per optimizer step.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Latent dimensions Z.
    #[arg(long, default_value_t = 20)]
    latent_dim: usize,
    /// Hidden units H.
    #[arg(long, default_value_t = 400)]
    hidden: usize,
    /// Latent samples L per image in the ELBO.
    #[arg(long, default_value_t = 1)]
    samples: usize,
    /// Weight of the KL term in the training objective (the reported ELBO uses 1).
    #[arg(long, default_value_t = 1.0)]
    beta: f64,
    /// Pixel binarization: none, static or dynamic.
    #[arg(long, default_value = "none")]
    binarize: String,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Seed for initialization, shuffling, binarization and ε.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory.
    #[arg(long, default_value = "runs/vae")]
    out: PathBuf,
    /// Training objective: elbo or iwae.
    #[arg(long, default_value = "elbo")]
    objective: String,
    /// Importance samples k of the IWAE objective.
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// Importance samples per test image for the test NLL.
    #[arg(long, default_value_t = 1000)]
    eval_k: usize,
    /// Evaluate the test NLL on the first N test images (0: all).
    #[arg(long, default_value_t = 1000)]
    eval_n: usize,
    /// Likelihood p(x|z).
    #[arg(long, value_enum, default_value_t = Likelihood::Bernoulli)]
    likelihood: Likelihood,
    /// Prior p(z): standard-normal, or mixture:K, a learned mixture of K Normals.
    #[arg(long, default_value = "standard-normal")]
    prior: PriorArg,
    /// KL warm-up: the KL weight rises linearly from 0 to 1 over this many optimizer
    /// steps (0: off).
    #[arg(long, default_value_t = 0)]
    kl_warmup_steps: usize,
    /// Data-parallel CPU threads (replicas) per training step; 0: one per core.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let binarization: Binarization = args.binarize.parse()?;
    for (name, v) in [("hidden", args.hidden), ("latent-dim", args.latent_dim)] {
        if v == 0 {
            return Err(Error::invalid(name, "must be at least 1"));
        }
    }
    let splits = discover(args.data.as_deref())?;
    eprintln!(
        "data: {} ({} training, {} test images of {}×{})",
        splits.source,
        splits.train.len(),
        splits.test.len(),
        splits.train.rows,
        splits.train.cols
    );
    let (a, b, sp) = (&args, binarization, &splits);
    let z = args.latent_dim;
    match (args.likelihood, args.prior) {
        (Likelihood::Bernoulli, PriorArg::StandardNormal) => train_and_report(
            a,
            b,
            sp,
            |_| Ok((BernoulliHead, StandardNormalPrior)),
            kl_closed,
        ),
        (Likelihood::ContinuousBernoulli, PriorArg::StandardNormal) => train_and_report(
            a,
            b,
            sp,
            |_| Ok((ContinuousBernoulliHead, StandardNormalPrior)),
            kl_closed,
        ),
        (Likelihood::Gaussian, PriorArg::StandardNormal) => train_and_report(
            a,
            b,
            sp,
            |d| Ok((LearnedGaussianHead::new(d, 1)?, StandardNormalPrior)),
            kl_closed,
        ),
        (Likelihood::Bernoulli, PriorArg::Mixture(k)) => train_and_report(
            a,
            b,
            sp,
            |d| Ok((BernoulliHead, MixturePrior::new(d, k, z)?)),
            kl_none,
        ),
        (Likelihood::ContinuousBernoulli, PriorArg::Mixture(k)) => train_and_report(
            a,
            b,
            sp,
            |d| Ok((ContinuousBernoulliHead, MixturePrior::new(d, k, z)?)),
            kl_none,
        ),
        (Likelihood::Gaussian, PriorArg::Mixture(k)) => train_and_report(
            a,
            b,
            sp,
            |d| Ok((LearnedGaussianHead::new(d, 1)?, MixturePrior::new(d, k, z)?)),
            kl_none,
        ),
    }
}

/// The likelihood `p(x | z)` of the decoder's output.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Likelihood {
    /// Bernoulli on logits (binary or binarized pixels).
    Bernoulli,
    /// Continuous Bernoulli on logits (grey levels in [0, 1]).
    ContinuousBernoulli,
    /// Normal with a learned σ shared by all pixels.
    Gaussian,
}

/// The prior `p(z)`: `standard-normal` or `mixture:K`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PriorArg {
    StandardNormal,
    Mixture(usize),
}

impl std::str::FromStr for PriorArg {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.split_once(':') {
            None if s == "standard-normal" => Ok(Self::StandardNormal),
            Some(("mixture", k)) => match k.parse::<usize>() {
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

/// The MLP VAE at run-time sizes `X-H-Z` (the data's pixels, `--hidden`,
/// `--latent-dim`) with likelihood head `L` and prior head `P`.
type Model<L, P> = Vae<
    MlpEncoder<usize, usize, f32, AutoDevice>,
    MlpDecoder<usize, usize, usize, f32, AutoDevice>,
    usize,
    usize,
    usize,
    f32,
    AutoDevice,
    L,
    P,
>;

/// Mean closed-form KL per latent dimension (standard-Normal prior).
fn kl_closed<L>(
    model: &Model<L, StandardNormalPrior>,
    data: &Dataset,
    dev: &AutoDevice,
) -> Result<Option<Vec<f64>>>
where
    Model<L, StandardNormalPrior>: LatentVariableModel<
        f32,
        AutoDevice,
        NoneTape,
        X = usize,
        Z = usize,
        Posterior = latent::Normal<usize, f32, AutoDevice>,
        Prior = latent::StandardNormal<usize, f32, AutoDevice>,
    >,
{
    eval::kl_per_dimension(model, data, dev, 100).map(Some)
}

/// No closed-form KL per dimension (e.g. against a mixture prior).
fn kl_none<M>(_: &M, _: &Dataset, _: &AutoDevice) -> Result<Option<Vec<f64>>> {
    Ok(None)
}

#[derive(serde::Serialize)]
struct Summary {
    dataset: String,
    device: String,
    n_train: usize,
    n_test: usize,
    epochs: usize,
    batch_size: usize,
    binarization: String,
    likelihood: String,
    prior: String,
    objective: String,
    hidden: usize,
    latent_dim: usize,
    samples: usize,
    beta: f64,
    lr: f64,
    seed: u64,
    /// Test ELBO, nats per image (negative).
    test_elbo: f64,
    /// Test E_q[log p(x|z)], nats per image.
    test_reconstruction: f64,
    /// Test KL(q(z|x) || p(z)), nats per image.
    test_kl: f64,
    /// Importance-sampled test NLL, nats per image (positive).
    test_nll: f64,
    /// Importance samples per image behind test_nll.
    test_nll_k: usize,
    /// Monte Carlo standard error of test_nll.
    test_nll_stderr: f64,
    /// Test images behind test_nll (the first ones of the split).
    test_nll_n: usize,
    /// Latent dimensions with Cov_x(E_q[z_j|x]) > 0.01 (Burda et al. 2015).
    active_units: usize,
    /// Mean KL per latent dimension, nats (null where the pair has no closed form).
    kl_per_dim: Option<Vec<f64>>,
    train_images_per_s: f64,
    seconds: f64,
}

fn train_and_report<L, P>(
    args: &Args,
    binarization: Binarization,
    splits: &latent::data::Splits,
    heads: impl FnOnce(&AutoDevice) -> Result<(L, P)>,
    kl_dims: impl Fn(&Model<L, P>, &Dataset, &AutoDevice) -> Result<Option<Vec<f64>>>,
) -> Result<()>
where
    Model<L, P>: TensorCollection<f32, AutoDevice>
        + LatentVariableModel<f32, AutoDevice, OwnedTape<f32, AutoDevice>, X = usize, Z = usize>
        + LatentVariableModel<f32, AutoDevice, NoneTape, X = usize, Z = usize>
        + latent::train::ThreadSafe,
{
    let start = Instant::now();
    let dev = AutoDevice::seed_from_u64(args.seed);
    let (likelihood, prior) = heads(&dev)?;
    let (x, h, z) = (splits.train.dim(), args.hidden, args.latent_dim);
    let mut model: Model<L, P> = Vae::with_heads(
        (Linear::new(&dev, x, h)?, ReLU),
        (Linear::new(&dev, z, h)?, ReLU, Linear::new(&dev, h, x)?),
        likelihood,
        prior,
        (h, z),
        &dev,
    )?;
    let elbo = Elbo::new(args.samples)?.with_beta(args.beta)?;
    let objective = match args.objective.as_str() {
        "elbo" => AnyObjective::Elbo(elbo),
        "iwae" => AnyObjective::Iwae(ImportanceWeighted::new(args.k)?),
        other => {
            return Err(Error::invalid(
                "objective",
                format!("`{other}` is not one of elbo, iwae"),
            ))
        }
    };
    let config = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
        binarization,
        progress: !args.quiet,
        out_dir: Some(args.out.clone()),
        threads: args.threads,
        kl_warmup_steps: args.kl_warmup_steps,
    };
    let report = fit(
        &mut model,
        &objective,
        &splits.train,
        &splits.test,
        &config,
        &dev,
    )?;

    let test = prepare_test(&splits.test, binarization, args.seed);
    let options = EvalOptions {
        k: args.eval_k,
        n: (args.eval_n > 0).then_some(args.eval_n),
        ..Default::default()
    };
    if !args.quiet {
        eprintln!(
            "evaluating: test NLL with k = {} on {} test images",
            options.k,
            options.n.unwrap_or(test.len()).min(test.len())
        );
    }
    let elbo_eval = evaluate(&model, &Elbo::default(), &test, &dev, 500)?;
    let nll = eval::test_nll(&model, &test, &dev, &options)?;
    let variances = eval::posterior_mean_variance(&model, &test, &dev, 500)?;
    let active_units = eval::active_units(&variances);
    let kl_per_dim = kl_dims(&model, &test, &dev)?;
    write_pictures(&model, &test, &dev, &args.out)?;

    let summary = Summary {
        dataset: splits.source.clone(),
        device: device_name(),
        n_train: splits.train.len(),
        n_test: test.len(),
        epochs: args.epochs,
        batch_size: args.batch_size,
        binarization: binarization.to_string(),
        likelihood: clap::ValueEnum::to_possible_value(&args.likelihood)
            .map_or_else(String::new, |v| v.get_name().to_string()),
        prior: args.prior.to_string(),
        objective: objective.describe(),
        hidden: h,
        latent_dim: z,
        samples: args.samples,
        beta: args.beta,
        lr: args.lr,
        seed: args.seed,
        test_elbo: elbo_eval.elbo,
        test_reconstruction: elbo_eval.reconstruction,
        test_kl: elbo_eval.kl,
        test_nll: nll.nll,
        test_nll_k: nll.k,
        test_nll_stderr: nll.stderr,
        test_nll_n: nll.n,
        active_units,
        kl_per_dim,
        train_images_per_s: report.train_images_per_s,
        seconds: start.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_string_pretty(&summary)
        .map_err(|e| Error::io(&args.out, std::io::Error::other(e)))?;
    let path = args.out.join("summary.json");
    std::fs::write(&path, format!("{json}\n")).map_err(|e| Error::io(&path, e))?;
    println!("{json}");
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn device_name() -> String {
    if cfg!(feature = "cuda") {
        "cuda".into()
    } else {
        "cpu".into()
    }
}

/// `reconstructions.png`: 4 pairs of rows, test images above the means of
/// `p(x | z = E_q[z|x])`; `samples.png`: 8×8 means of `p(x | z)`, `z ~ p(z)`.
fn write_pictures<M>(model: &M, test: &Dataset, dev: &AutoDevice, out: &Path) -> Result<()>
where
    M: LatentVariableModel<f32, AutoDevice, NoneTape, X = usize>,
{
    let cols = 10;
    let n = (4 * cols).min(test.len());
    let (rows, width, dim) = (test.rows, test.cols, test.dim());
    let idx: Vec<usize> = (0..n).collect();
    let x = test.batch::<usize, f32, AutoDevice>(dev, &idx, None)?;
    let recon = model
        .likelihood(model.guide(x.clone())?.mean())?
        .mean()
        .as_vec();
    let orig = x.as_vec();
    let mut grid = Vec::with_capacity(2 * n * dim);
    for start in (0..n).step_by(cols) {
        let end = (start + cols).min(n);
        grid.extend_from_slice(&orig[start * dim..end * dim]);
        grid.extend_from_slice(&recon[start * dim..end * dim]);
    }
    save_image_grid(out.join("reconstructions.png"), &grid, rows, width, cols)?;
    let samples = model
        .likelihood(model.prior(64, dev)?.sample())?
        .mean()
        .as_vec();
    save_image_grid(out.join("samples.png"), &samples, rows, width, 8)?;
    Ok(())
}
