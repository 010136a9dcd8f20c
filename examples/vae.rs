//! The main job: train the classic MLP VAE on Fashion-MNIST and report its test ELBO.
//!
//! ```text
//! cargo run --release --example vae     # the reference protocol, below
//! cargo run --release --example vae -- --hidden 300 --latent-dim 7 --prior mixture:5
//! ```
//!
//! Data: `--data DIR` (IDX files, raw or .gz, MNIST works too), else `$LATENT_DATA`,
//! else `/usr/share/datasets/fashion-mnist` (Debian's `dataset-fashion-mnist`), else the
//! subset embedded in the crate (`--data embedded` forces it). The sizes are chosen at
//! run time: the input is the data's pixels, `--hidden` and `--latent-dim` any size.
//!
//! The defaults are the reference protocol: a 784-400-20 ReLU MLP with Bernoulli
//! logits, dynamically binarized pixels, 10 epochs of Adam 1e-3 on batches of 128,
//! seed 0, then the test ELBO and the NLL by importance sampling (k = 1000, first
//! 1000 test images).
//!
//! `--objective iwae --k 5` trains with the IWAE bound instead of the ELBO. The test
//! NLL is estimated by importance sampling with `--eval-k` samples (default 1000) on
//! the first `--eval-n` test images (default 1000, 0 for all).
//!
//! Writes into `--out` (default `runs/vae`): `summary.json`, `metrics.jsonl`,
//! `checkpoint.safetensors` (weights, Adam's state and what the run is, also in
//! `config.json`), `reconstructions.png` (test images above their reconstructions) and
//! `samples.png` (decoded draws from the prior). `--resume` continues a stopped run
//! from its last checkpoint (`--epochs` more in total); `examples/generate.rs` opens a
//! finished one again.

mod common;

use std::path::Path;
use std::time::Instant;

use clap::Parser;
use common::mlp_heads::{with_heads, MlpVaeBounds, Model, WithHeads};
use common::{value_name, BinarizeArg, LikelihoodArg, ObjectiveArg, PriorArg, RunArgs};
use dfdx::prelude::*;
use latent::data::{Dataset, Splits};
use latent::eval;
use latent::train::{fit, prepare_test, Describe, ThreadSafe};
use latent::LatentVariableModel;
use latent::{AnyObjective, Distribution, Elbo, Error, ImportanceWeighted, Objective, Result};
use latent_models::mlp_vae_with_heads;

type Dev = AutoDevice;

/// Train the MLP VAE (X-H-Z, ReLU, Adam) on Fashion-MNIST and evaluate it.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    run: RunArgs,
    /// Latent dimensions Z.
    #[arg(long, default_value_t = 20)]
    latent_dim: usize,
    /// Hidden units H.
    #[arg(long, default_value_t = 400)]
    hidden: usize,
    /// Pixel binarization (dynamic: a fresh Bernoulli draw of every pixel each epoch,
    /// the reference protocol of the likelihood tables).
    #[arg(long, value_enum, default_value_t = BinarizeArg::Dynamic)]
    binarize: BinarizeArg,
    /// Likelihood p(x|z).
    #[arg(long, value_enum, default_value_t = LikelihoodArg::Bernoulli)]
    likelihood: LikelihoodArg,
    /// Prior p(z): standard-normal, or mixture:K, a learned mixture of K Normals.
    #[arg(long, default_value = "standard-normal")]
    prior: PriorArg,
    /// Training objective.
    #[arg(long, value_enum, default_value_t = ObjectiveArg::Elbo)]
    objective: ObjectiveArg,
    /// Latent samples L per image in the ELBO.
    #[arg(long, default_value_t = 1)]
    samples: usize,
    /// Weight of the KL term in the training ELBO (the reported ELBO uses 1).
    #[arg(long, default_value_t = 1.0)]
    beta: f64,
    /// Importance samples k of the IWAE objective.
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// KL warm-up: the KL weight rises linearly from 0 to 1 over this many steps (0: off).
    #[arg(long, default_value_t = 0)]
    kl_warmup_steps: usize,
}

fn main() {
    let args = Args::parse();
    common::main(|| run(args));
}

fn run(a: Args) -> Result<()> {
    for (name, v) in [("hidden", a.hidden), ("latent-dim", a.latent_dim)] {
        if v == 0 {
            return Err(Error::invalid(name, "must be at least 1"));
        }
    }
    let splits = a.run.splits()?;
    with_heads(
        a.likelihood,
        a.prior,
        a.latent_dim,
        Train {
            a: &a,
            splits: &splits,
        },
    )
}

/// Training, once the heads are chosen.
struct Train<'a> {
    a: &'a Args,
    splits: &'a Splits,
}

impl WithHeads for Train<'_> {
    fn run<L, P>(self, heads: impl FnOnce(&Dev) -> Result<(L, P)>) -> Result<()>
    where
        Model<L, P>: MlpVaeBounds,
    {
        train(self.a, self.splits, heads)
    }
}

fn train<L, P>(a: &Args, splits: &Splits, heads: impl FnOnce(&Dev) -> Result<(L, P)>) -> Result<()>
where
    Model<L, P>: TensorCollection<f32, Dev>
        + LatentVariableModel<f32, Dev, OwnedTape<f32, Dev>, X = usize, Z = usize>
        + LatentVariableModel<f32, Dev, NoneTape, X = usize, Z = usize>
        + Describe
        + ThreadSafe,
{
    let start = Instant::now();
    let (r, out) = (&a.run, a.run.out_dir("vae"));
    let _claim = r.claim(&out)?;
    let dev = Dev::seed_from_u64(r.seed);
    let (likelihood, prior) = heads(&dev)?;
    let (x, h, z) = (splits.train.dim(), a.hidden, a.latent_dim);
    let mut model: Model<L, P> = mlp_vae_with_heads(&dev, (x, h, z), likelihood, prior)?;
    let objective = match a.objective {
        ObjectiveArg::Elbo => AnyObjective::Elbo(Elbo::new(a.samples)?.with_beta(a.beta)?),
        ObjectiveArg::Iwae => AnyObjective::Iwae(ImportanceWeighted::new(a.k)?),
    };
    let binarization = a.binarize.into();
    let config = latent::train::TrainConfig {
        kl_warmup_steps: a.kl_warmup_steps,
        model: Some(model.spec()),
        ..r.config(r.epochs(10), binarization, out.clone())
    };
    let report = fit(
        &mut model,
        &objective,
        &splits.train,
        &splits.test,
        &config,
        &dev,
    )?;

    let test = prepare_test(&splits.test, binarization, r.seed);
    let options = r.eval_options();
    if !r.quiet && common::leader() {
        let n = options.n.unwrap_or(test.len()).min(test.len());
        eprintln!(
            "evaluating: test NLL with k = {} on {n} test images",
            options.k
        );
    }
    // A failed final evaluation still leaves the summary of what was trained (beside
    // the checkpoint of the last epoch), with the failure recorded in it.
    let evaluation = eval::report(&model, &test, &dev, &options)
        .and_then(|report| write_pictures(&model, &test, &dev, &out).map(|()| report));
    let ev = evaluation.as_ref().ok();
    let failure = evaluation
        .as_ref()
        .err()
        .map(|e| format!("final evaluation: {e}"));

    // Likelihoods in nats per test image: the ELBO (negative) and its parts, the
    // importance-sampled NLL (positive) with its samples per image, Monte Carlo standard
    // error and (first) test images; active units have Cov_x(E_q[z_j|x]) > 0.01 (Burda
    // et al. 2015); the KL per dimension is null where the pair has no closed form.
    let summary = serde_json::json!({
        "dataset": splits.source, "device": common::device_name(),
        "n_train": splits.train.len(), "n_test": test.len(),
        "epochs": config.epochs, "batch_size": r.batch_size,
        "binarization": binarization.to_string(), "likelihood": value_name(&a.likelihood),
        "prior": a.prior.to_string(), "objective": objective.describe(),
        "hidden": h, "latent_dim": z, "samples": a.samples, "beta": a.beta,
        "lr": r.lr, "seed": r.seed,
        "test_elbo": ev.map(|e| e.elbo.elbo),
        "test_reconstruction": ev.map(|e| e.elbo.reconstruction),
        "test_kl": ev.map(|e| e.elbo.kl),
        "test_nll": ev.map(|e| e.nll.nll), "test_nll_k": ev.map(|e| e.nll.k),
        "test_nll_stderr": ev.map(|e| e.nll.stderr), "test_nll_n": ev.map(|e| e.nll.n),
        "active_units": ev.map(|e| e.active_units),
        "kl_per_dim": ev.and_then(|e| e.kl_per_dim.clone()),
        "evaluation_error": failure,
        "train_images_per_s": report.train_images_per_s,
        "seconds": start.elapsed().as_secs_f64(),
    });
    common::print(&common::write_json(&out, "summary.json", &summary)?);
    if common::leader() {
        eprintln!("wrote {}", out.display());
    }
    if latent::distributed::world().size() > 1 {
        let world = latent::distributed::world();
        eprintln!(
            "rank {}: parameter checksum {:016x}",
            world.rank(),
            report.parameter_checksum
        );
    }
    evaluation.map(|_| ())
}

/// `reconstructions.png` (test images above the means of `p(x | z = E_q[z|x])`) and
/// `samples.png` (8×8 means of `p(x | z)`, `z ~ p(z)`).
fn write_pictures<M>(model: &M, test: &Dataset, dev: &Dev, out: &Path) -> Result<()>
where
    M: LatentVariableModel<f32, Dev, NoneTape, X = usize>,
{
    let idx: Vec<usize> = (0..40.min(test.len())).collect();
    let x: Tensor<(usize, usize), f32, Dev> = test.batch(dev, &idx, None)?;
    let recon = model.likelihood(model.guide(x.clone())?.mean())?.mean();
    let samples = model.likelihood(model.prior(64, dev)?.sample())?.mean();
    let shape = (test.rows, test.cols);
    common::pictures(
        out,
        shape,
        &x.as_vec(),
        &recon.as_vec(),
        &samples.as_vec(),
        8,
    )
}
