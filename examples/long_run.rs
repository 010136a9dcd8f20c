//! The long-run recipe toward the published Fashion-MNIST likelihoods: the architecture
//! of the likelihood tables (Tomczak & Welling 2018; Norouzi et al. 2020, "Exemplar
//! VAE"): encoder and decoder of two gated layers of 300 units, 40 latents, Bernoulli
//! pixels, dynamic binarization; trained on the first 50,000 training images with the
//! last 10,000 for validation, KL warm-up, early stopping on the validation ELBO; then
//! the importance-sampled NLL with k = 5,000 on the whole test set.
//!
//! ```text
//! cargo run --release --example long_run -- --guide gaussian --batch-size 100 --lr 5e-4 \
//!     --epochs 2000 --warmup-epochs 100 --patience 50 --minutes 100 --eval-k 5000 --eval-n 0
//! ```
//!
//! `--guide` chooses `q(z|x)`: `gaussian` (the paper's diagonal Normal), `iaf` (two
//! inverse autoregressive steps, Kingma et al. 2016) or `planar` (eight planar steps,
//! Rezende & Mohamed 2015). `--prior vamp --pseudo-inputs 500` replaces `N(0, I)` by a
//! VampPrior (Tomczak & Welling 2018; `latent_models::VampVae`): the guide's Gaussian
//! part (a flow guide's base Normal) averaged over learned pseudo-inputs, started as the
//! paper's code starts them (`--pseudo-init paper`: pixels from N(0.05, 0.01²)) or from
//! random training images (`data`). Differences from the paper that remain: `log σ` of
//! the guide is clamped to ±20 rather than the paper's `log σ² ∈ [−6, 2]`, and the
//! gated layers are initialized as PyTorch's `nn.Linear` rather than He's.
//! `--model hvae --prior vamp` trains the paper's best configuration, two stochastic
//! layers of 40 dimensions with the VampPrior on the top one
//! (`latent_models::HierarchicalVampVae`). `--minutes` bounds the training time (the run stops after
//! the epoch that spends it, like early stopping). The best validation epoch's weights
//! (`best.safetensors`) are the ones evaluated. Progress: a bar per epoch, a line per
//! epoch with the validation ELBO and an estimate of the time left, and a bar for the
//! NLL's batches with its time left.
//!
//! Writes `metrics.jsonl`, `checkpoint.safetensors`, `best.safetensors` and
//! `summary.json` (with the published figures beside ours) into `--out`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

mod common;
#[path = "common/long_models.rs"]
mod long_models;

use clap::Parser;
use common::RunArgs;
use dfdx::prelude::*;
use latent::data::{Binarization, Splits};
use latent::train::{
    fit, Describe, EpochCallback, EpochMetrics, ModelSpec, ThreadSafe, TrainConfig,
};
use latent::{Elbo, Error, LatentVariableModel, Result};
use latent_models::PseudoInit;
use long_models::{evaluate_checkpoint, Dev, GuideArg, LongModel, ModelArg, PriorArg, WithModel};
use rand::SeedableRng;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The published test NLLs (nats) on dynamically binarized Fashion-MNIST, as reported
/// by Norouzi et al. 2020 (Exemplar VAE, Table 1) for this architecture.
const PUBLISHED: [(&str, f64); 2] = [("VAE, Gaussian prior", 228.70), ("VAE, VampPrior", 227.35)];

/// `--pseudo-init`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum PseudoInitArg {
    /// Pixels from N(0.05, 0.01²).
    Paper,
    /// Random training images.
    Data,
}

/// Train the gated 300-300-40 VAE of the published likelihood tables for long, with
/// early stopping, and evaluate its test NLL.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    run: RunArgs,
    /// The guide q(z|x).
    #[arg(long, value_enum, default_value_t = GuideArg::Gaussian)]
    guide: GuideArg,
    /// One stochastic layer, or two with a VampPrior on the top one (`hvae`).
    #[arg(long, value_enum, default_value_t = ModelArg::Vae)]
    model: ModelArg,
    /// Dimensions of the top layer z2 (`--model hvae`; the paper's 40).
    #[arg(long, default_value_t = 40)]
    top_latent_dim: usize,
    /// The prior p(z).
    #[arg(long, value_enum, default_value_t = PriorArg::Standard)]
    prior: PriorArg,
    /// Pseudo-inputs of the VampPrior (`--prior vamp`; the paper's 500).
    #[arg(long, default_value_t = 500)]
    pseudo_inputs: usize,
    /// How the pseudo-inputs start: `paper` (pixels from N(0.05, 0.01²), the paper's
    /// code) or `data` (random training images' grey levels).
    #[arg(long, value_enum, default_value_t = PseudoInitArg::Paper)]
    pseudo_init: PseudoInitArg,
    /// Hidden units H of each gated layer.
    #[arg(long, default_value_t = 300)]
    hidden: usize,
    /// Latent dimensions Z.
    #[arg(long, default_value_t = 40)]
    latent_dim: usize,
    /// Training images (the rest of the training split is the validation set).
    #[arg(long, default_value_t = 50_000)]
    train_size: usize,
    /// KL warm-up over this many epochs (0: none).
    #[arg(long, default_value_t = 100)]
    warmup_epochs: usize,
    /// Stop when the validation ELBO has not improved for this many epochs.
    #[arg(long, default_value_t = 50)]
    patience: usize,
    /// Stop after the epoch that brings the training time past this many minutes.
    #[arg(long)]
    minutes: Option<f64>,
}

fn main() {
    let args = Args::parse();
    common::main(|| run(&args));
}

fn run(a: &Args) -> Result<()> {
    let dev = Dev::seed_from_u64(a.run.seed);
    let model = LongModel {
        model: a.model,
        top: if a.model == ModelArg::Hvae {
            a.top_latent_dim
        } else {
            0
        },
        guide: a.guide,
        prior: a.prior,
        sizes: (784, a.hidden, a.latent_dim),
        pseudo_inputs: if a.prior == PriorArg::Vamp {
            a.pseudo_inputs
        } else {
            0
        },
    };
    let splits = a.run.splits()?;
    let init = match a.pseudo_init {
        PseudoInitArg::Paper => PseudoInit::PAPER,
        PseudoInitArg::Data => {
            // Random training images (from the training part of the split), grey levels.
            let (train, _) = splits.train.split_at(a.train_size);
            let mut rng = rand::rngs::StdRng::seed_from_u64(a.run.seed);
            let picks =
                rand::seq::index::sample(&mut rng, train.len(), a.pseudo_inputs.min(train.len()));
            PseudoInit::Data(
                picks
                    .iter()
                    .flat_map(|i| {
                        train
                            .image(i)
                            .iter()
                            .map(|&p| f64::from(p) / 255.0)
                            .collect::<Vec<_>>()
                    })
                    .collect(),
            )
        }
    };
    model.build(&dev, &init, Train { a, model, splits })
}

/// Trains the model `long_run` built.
struct Train<'a> {
    a: &'a Args,
    model: LongModel,
    /// The data, found once (the pseudo-inputs may start from its images).
    splits: Splits,
}

impl WithModel for Train<'_> {
    type Out = ();

    fn with<M>(self, mut model: M, spec: ModelSpec, dev: &Dev) -> Result<()>
    where
        M: TensorCollection<f32, Dev>
            + LatentVariableModel<f32, Dev, OwnedTape<f32, Dev>, X = usize, Z = usize>
            + LatentVariableModel<f32, Dev, NoneTape, X = usize, Z = usize>
            + Describe
            + ThreadSafe,
    {
        let a = self.a;
        let start = Instant::now();
        let (r, out) = (&a.run, a.run.out_dir("long_run"));
        let _claim = r.claim(&out)?;
        let splits = self.splits;
        if splits.train.dim() != 784 {
            return Err(Error::shape(
                "images",
                &[28, 28],
                &[splits.train.rows, splits.train.cols],
            ));
        }
        let (train_set, validation) = splits.train.split_at(a.train_size);
        if validation.is_empty() {
            return Err(Error::invalid(
                "train-size",
                format!("leaves no validation images out of {}", splits.train.len()),
            ));
        }
        let epochs = r.epochs(2000);
        let steps_per_epoch = train_set.len().div_ceil(r.batch_size.max(1));
        let timer = Arc::new(Mutex::new((Instant::now(), f64::NEG_INFINITY, 0usize, 0.0)));
        let limit = a.minutes.map(|m| m * 60.0);
        let quiet = r.quiet || !common::leader();
        let config = TrainConfig {
            model: Some(spec),
            kl_warmup_steps: a.warmup_epochs * steps_per_epoch,
            keep_best: true,
            patience: Some(a.patience),
            time_limit: limit,
            on_epoch: Some(EpochCallback::new(move |m: &EpochMetrics| {
                eta_line(&timer, m, epochs, limit, quiet);
                Ok(())
            })),
            ..r.config(epochs, Binarization::Dynamic, out.clone())
        };
        let report = fit(
            &mut model,
            &Elbo::default(),
            &train_set,
            &validation,
            &config,
            dev,
        )?;
        let train_minutes = report.train_seconds / 60.0;

        // The best validation epoch's weights on the whole test set, opened again from
        // the file as `evaluate` opens it, so that `evaluate` gives the same figures.
        let options = latent::eval::EvalOptions {
            progress: !quiet,
            ..r.eval_options()
        };
        let best = out.join("best.safetensors");
        let (_, _, eval) = evaluate_checkpoint(&best, &splits.test, Some(r.seed), &options)?;
        let (elbo, nll) = (eval.elbo, eval.nll);
        let summary = serde_json::json!({
            "model": self.model.describe(),
            "checkpoint": "best.safetensors",
            "dataset": splits.source,
            "train_images": train_set.len(), "validation_images": validation.len(),
            "batch_size": r.batch_size, "lr": r.lr, "seed": r.seed,
            "warmup_epochs": a.warmup_epochs, "patience": a.patience, "minutes": a.minutes,
            "epochs_trained": report.epochs.len(), "stopped_early": report.stopped_early,
            "best_epoch": report.best.map(|b| b.0), "best_validation_elbo": report.best.map(|b| b.1),
            "train_minutes": train_minutes,
            "train_images_per_s": report.train_images_per_s,
            "test_elbo": elbo.elbo, "test_reconstruction": elbo.reconstruction, "test_kl": elbo.kl,
            "test_nll": nll.nll, "test_nll_stderr": nll.stderr, "test_nll_k": nll.k, "test_nll_n": nll.n,
            "published_nll": serde_json::Value::Array(PUBLISHED.iter().map(|(m, v)| serde_json::json!({"model": m, "nll": v})).collect()),
            "seconds": start.elapsed().as_secs_f64(),
        });
        common::print(&common::write_json(&out, "summary.json", &summary)?);
        Ok(())
    }
}

/// After each epoch: the validation ELBO, the best so far and the time left until the
/// last epoch or the time limit (which counts training steps only), whichever comes
/// first, from the mean epoch time.
fn eta_line(
    timer: &Mutex<(Instant, f64, usize, f64)>,
    m: &EpochMetrics,
    epochs: usize,
    limit: Option<f64>,
    quiet: bool,
) {
    let Ok(mut t) = timer.lock() else { return };
    let (started, best, done, trained) = &mut *t;
    *done += 1;
    *trained += m.train_seconds;
    *best = best.max(m.test_elbo);
    if quiet {
        return;
    }
    let per_epoch = started.elapsed().as_secs_f64() / *done as f64;
    let mut left = per_epoch * epochs.saturating_sub(m.epoch) as f64;
    if let Some(limit) = limit {
        // Epochs until the training time passes the limit, at the wall time of an epoch.
        let train_per_epoch = *trained / *done as f64;
        let epochs_left = ((limit - *trained).max(0.0) / train_per_epoch.max(1e-9)).ceil();
        left = left.min(epochs_left * per_epoch);
    }
    eprintln!(
        "epoch {}/{epochs}: validation ELBO {:.2} (best {:.2}), {:.1} s/epoch, at most {:.0} min left (early stopping may end it sooner)",
        m.epoch,
        m.test_elbo,
        best,
        per_epoch,
        left / 60.0
    );
}
