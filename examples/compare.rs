//! Trains the variants side by side on the same data, seed and epochs, and writes a
//! table: the VAE, the VAE with a full-covariance Gaussian guide (`full-cov`), the β-VAE (β = 4), the VAE trained with the IWAE bound (k = 5), the
//! VAE with a guide of 8 planar steps (`planar`) or 2 IAF steps (`iaf`), the
//! hierarchical VAE with two stochastic layers of 20 and 10 dimensions (`hvae`), the VAE
//! with a VampPrior of 100 pseudo-inputs (`vamp`), the CVAE conditioned on the class
//! label, and the convolutional VQ-VAE (7×7 codes). All MLP rows share the 784-400-20
//! networks.
//!
//! ```text
//! cargo run --release --example compare -- --epochs 5
//! ```
//!
//! Data as in the `vae` example (full Fashion-MNIST when found, else the embedded
//! subset); pixels are dynamically binarized (Burda et al. 2015), so every model has a
//! Bernoulli likelihood and its numbers are comparable.
//!
//! Writes into `--out` (default `runs/compare`): `results.md` and `results.json` (one
//! row per model: test ELBO, importance-sampled NLL where the model has a density over
//! `z`, reconstruction error, KL, active units, codebook perplexity, training speed and
//! time), and per model `reconstructions.png` (test images above reconstructions),
//! `samples.png` (decoded prior draws; for the CVAE one row per class, the same `z` down
//! each column) and, for the continuous models, `latent.png` (the posterior means of
//! the test images projected on their two principal axes, coloured by class — colours
//! in `results.md`).

use std::path::{Path, PathBuf};
use std::time::Instant;

mod common;
#[path = "common/discrete.rs"]
mod discrete;
#[path = "common/vamp.rs"]
mod vamp;
use vamp::VampVae;

use clap::Parser;
use common::RunArgs;
use dfdx::prelude::*;
use latent::data::{Binarization, Conditioning, Dataset, LabelCondition, Splits, CLASS_NAMES};
use latent::eval;
use latent::eval::viz::save_image_grid;
use latent::ops::to_f64_vec;
use latent::train::{
    fit, fit_task, prepare_test, ConditionalTask, Describe, EpochMetrics, MetricsLog, Task,
    TrainConfig,
};
use latent::{
    ConditionalModel, Conditioned, Distribution, Elbo, Error, Events, ImportanceWeighted,
    LatentVariableModel, Objective, Result,
};
use latent_models::{
    code_usage, conv_vq_vae, iaf_vae, mlp_full_covariance_vae, planar_vae, BetaVae, CodePrior,
    CodebookEma, CodebookUpdate, ConvVqVae, Cvae, DeadCodeRestart, GatedPixelCnn, HierarchicalVae,
    IafVae, LayerReport, MlpFullCovarianceVae, MlpVae, PlanarVae, VqVaeTask,
};
use serde::Serialize;

const X: usize = 784;
const H: usize = 400;
const Z: usize = 20;
/// Codebook size and code dimension of the VQ-VAE.
const K: usize = 256;
const DM: usize = 16;
const MODELS: [&str; 10] = [
    "vae", "full-cov", "beta-vae", "iwae", "planar", "iaf", "hvae", "vamp", "cvae", "vq-vae",
];
/// Planar steps of the `planar` row, IAF steps of the `iaf` row.
const PLANAR_STEPS: usize = 8;
const IAF_STEPS: usize = 2;
/// Context features and MADE units of the `iaf` row.
const IAF_WIDTH: usize = 100;
/// The blocks `z1`, `z2` of the `hvae` row.
const HVAE_Z: (usize, usize) = (20, 10);

type Dev = AutoDevice;

// dfdx allocates every intermediate afresh; with glibc malloc the large buffers are
// mmap-ed and unmapped on every step (page faults and TLB shootdowns took ~30% of the
// VQ-VAE's time). mimalloc keeps them in its heaps.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Train VAE variants with the same data, seed and epochs and compare them.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    run: RunArgs,
    /// Comma-separated subset of vae, full-cov, beta-vae, iwae, planar, iaf, hvae, vamp,
    /// cvae, vq-vae, and of the discrete-latent rows gmvae (with k-means on the raw
    /// pixels beside it; needs python3 with scikit-learn), sbn-reinforce, sbn-nvil,
    /// sbn-vimco, sbn-concrete.
    #[arg(
        long,
        default_value = "vae,full-cov,beta-vae,iwae,planar,iaf,hvae,vamp,cvae,vq-vae"
    )]
    models: String,
    /// Epochs of the gated PixelCNN prior fitted to the VQ-VAE's training codes.
    #[arg(long, default_value_t = 10)]
    pixelcnn_epochs: usize,
}

impl Args {
    fn out(&self) -> PathBuf {
        self.run.out_dir("compare")
    }

    /// Dynamic binarization, `--epochs` (default 5), writing into `dir`.
    fn config(&self, dir: &Path) -> TrainConfig {
        let epochs = self.run.epochs(5);
        self.run
            .config(epochs, Binarization::Dynamic, dir.to_path_buf())
    }
}

/// One row of the table. Likelihoods in nats per image; `None` where undefined.
#[derive(Debug, Clone, Serialize)]
struct Row {
    model: String,
    objective: String,
    /// Test ELBO (the VQ-VAE: `log p(x|z_q) − 49 ln K`, its bound with a uniform prior).
    test_elbo: f64,
    /// Importance-sampled `−log p(x)` (`−log p(x|y)` for the CVAE).
    test_nll: Option<f64>,
    test_nll_stderr: Option<f64>,
    /// `−E_q[log p(x|z)]` on the test set.
    reconstruction_nats: f64,
    /// Mean squared error per pixel between the binarized test image and the mean of
    /// `p(x | z)` at the posterior mean (`z_q` for the VQ-VAE).
    reconstruction_mse: f64,
    /// `KL(q(z|x) ‖ p(z))`, nats per image (the VQ-VAE: `49 ln K`, constant).
    kl: f64,
    active_units: Option<usize>,
    codebook_perplexity: Option<f64>,
    codes_used: Option<f64>,
    /// The VQ-VAE's code priors on the test codes, nats per image.
    code_priors: Option<CodePriors>,
    /// Per-layer KL and active units of a hierarchical model.
    layers: Option<LayerReport>,
    train_images_per_s: f64,
    seconds: f64,
}

/// `−log p(codes)` of the test images' code grids under three priors, and the VQ-VAE's
/// bound `log p(x|z_q) + log p(z_q)` with the PixelCNN (nats per image).
#[derive(Debug, Clone, Serialize)]
struct CodePriors {
    uniform_nll: f64,
    independent_nll: f64,
    pixelcnn_nll: f64,
    pixelcnn_train_nll_by_epoch: Vec<f64>,
    elbo_with_pixelcnn: f64,
}

/// The PixelCNN prior of the VQ-VAE row: layers, channels.
type CodePixelCnn = GatedPixelCnn<5, 7, 7, f32, Dev>;
const PIXELCNN_CHANNELS: usize = 32;

fn main() {
    let args = Args::parse();
    common::main(|| run(&args));
}

fn run(args: &Args) -> Result<()> {
    let chosen: Vec<&str> = args.models.split(',').map(str::trim).collect();
    let known = |m: &&str| MODELS.contains(m) || discrete::DISCRETE_MODELS.contains(m);
    if let Some(bad) = chosen.iter().find(|m| !known(m)) {
        return Err(Error::invalid(
            "models",
            format!(
                "`{bad}` is not one of {}, {}",
                MODELS.join(", "),
                discrete::DISCRETE_MODELS.join(", ")
            ),
        ));
    }
    let splits = args.run.splits()?;
    if splits.train.dim() != X {
        return Err(Error::shape(
            format!("images in {}", splits.source),
            &[28, 28],
            &[splits.train.rows, splits.train.cols],
        ));
    }
    let out = args.out();
    let _claim = args.run.claim(&out)?;
    let mut rows = Vec::new();
    let mut discrete_rows = Vec::new();
    for name in discrete::DISCRETE_MODELS
        .iter()
        .filter(|m| chosen.contains(m))
    {
        let new = discrete::row(&args.run, &splits, &out, name)?;
        if common::leader() {
            eprintln!("{name}: {new:?}");
        }
        discrete_rows.extend(new);
        write_results(args, &splits, &rows, &discrete_rows)?;
    }
    for name in MODELS.iter().filter(|m| chosen.contains(m)) {
        let row = match *name {
            "vae" => continuous(args, &splits, name, Elbo::default())?,
            "full-cov" => {
                let dev = Dev::seed_from_u64(args.run.seed);
                let m: MlpFullCovarianceVae<Const<X>, Const<H>, Const<Z>, f32, Dev> =
                    mlp_full_covariance_vae(&dev, (Const, Const, Const))?;
                row_for(args, &splits, name, Elbo::default(), m, &dev, |_, _| {
                    Ok(None)
                })?
            }
            "beta-vae" => continuous(args, &splits, name, BetaVae::new(4.0)?)?,
            "iwae" => continuous(args, &splits, name, ImportanceWeighted::new(5)?)?,
            "planar" => {
                let dev = Dev::seed_from_u64(args.run.seed);
                let m: PlanarVae<Const<X>, Const<H>, Const<Z>, PLANAR_STEPS, f32, Dev> =
                    planar_vae(&dev, (Const, Const, Const))?;
                row_for(args, &splits, name, Elbo::default(), m, &dev, |_, _| {
                    Ok(None)
                })?
            }
            "iaf" => {
                let dev = Dev::seed_from_u64(args.run.seed);
                let m: IafVae<Const<X>, Const<H>, Const<Z>, IAF_STEPS, f32, Dev> =
                    iaf_vae(&dev, (Const, Const, Const), IAF_WIDTH, IAF_WIDTH)?;
                row_for(args, &splits, name, Elbo::default(), m, &dev, |_, _| {
                    Ok(None)
                })?
            }
            "hvae" => {
                let dev = Dev::seed_from_u64(args.run.seed);
                let m = HierarchicalVae::new(&dev, (X, H, HVAE_Z.0, HVAE_Z.1))?;
                let mut row = row_for(args, &splits, name, Elbo::default(), m, &dev, |m, t| {
                    m.layer_report(t, &dev, 500).map(Some)
                })?;
                row.objective.push_str(" (layers z1, z2)");
                row
            }
            "vamp" => {
                let dev = Dev::seed_from_u64(args.run.seed);
                let m: VampVae<f32, Dev> = VampVae::build(&dev);
                row_for(args, &splits, name, Elbo::default(), m, &dev, |_, _| {
                    Ok(None)
                })?
            }
            "cvae" => cvae(args, &splits)?,
            _ => vq_vae(args, &splits)?,
        };
        if common::leader() {
            eprintln!("{name}: {row:?}");
        }
        rows.push(row);
        write_results(args, &splits, &rows, &discrete_rows)?;
    }
    common::print(&std::fs::read_to_string(out.join("results.md")).unwrap_or_default());
    Ok(())
}

fn first(test: &Dataset, args: &Args) -> Vec<usize> {
    let n = if args.run.eval_n == 0 {
        test.len()
    } else {
        args.run.eval_n.min(test.len())
    };
    (0..n).collect()
}

/// The MLP VAE 784-400-20 trained with `objective`.
fn continuous<O: Objective + Clone + latent::train::ThreadSafe>(
    args: &Args,
    splits: &Splits,
    name: &str,
    objective: O,
) -> Result<Row> {
    let dev = Dev::seed_from_u64(args.run.seed);
    let model: MlpVae<Const<X>, Const<H>, Const<Z>, f32, Dev> =
        latent_models::mlp_vae(&dev, (Const, Const, Const))?;
    row_for(args, splits, name, objective, model, &dev, |_, _| Ok(None))
}

/// Trains `model` with `objective` and measures its row.
fn row_for<O, M, Xd, Zd>(
    args: &Args,
    splits: &Splits,
    name: &str,
    objective: O,
    mut model: M,
    dev: &Dev,
    layers: impl FnOnce(&M, &Dataset) -> Result<Option<LayerReport>>,
) -> Result<Row>
where
    O: Objective + Clone + latent::train::ThreadSafe,
    Xd: Dim + Default,
    Zd: Dim,
    M: TensorCollection<f32, Dev>
        + LatentVariableModel<f32, Dev, OwnedTape<f32, Dev>, X = Xd, Z = Zd>
        + LatentVariableModel<f32, Dev, NoneTape, X = Xd, Z = Zd>
        + Describe
        + latent::train::ThreadSafe,
{
    let start = Instant::now();
    let dir = args.out().join(name);
    let spec = model.spec();
    let report = fit(
        &mut model,
        &objective,
        &splits.train,
        &splits.test,
        &TrainConfig {
            model: Some(spec.clone()),
            ..args.config(&dir)
        },
        dev,
    )?;
    let test = prepare_test(&splits.test, Binarization::Dynamic, args.run.seed);
    let full = latent::eval::evaluate(&model, &Elbo::default(), &test, dev, 500)?;
    let nll = eval::test_nll(&model, &test, dev, &args.run.eval_options())?;
    let variances = eval::posterior_mean_variance(&model, &test, dev, 500)?;

    let idx = first(&test, args);
    let x: Events<Xd, f32, Dev> = test.batch(dev, &idx, None)?;
    let q_mean = model.guide(x.clone())?.mean();
    let means = to_f64_vec(&q_mean);
    let recon = model.likelihood(q_mean)?.mean();
    let mse = mse(&x, &recon);
    // `prior` takes no tensor, so the tape it is built for is named.
    let z = LatentVariableModel::<f32, Dev, NoneTape>::prior(&model, 64, dev)?.sample();
    let samples = model.likelihood(z)?.mean().as_vec();
    common::pictures(&dir, (28, 28), &x.as_vec(), &recon.as_vec(), &samples, 8)?;
    let width = means.len() / idx.len().max(1);
    common::scatter(
        &dir.join("latent.png"),
        &format!("{name}: test posterior means by class"),
        &means,
        width,
        &labels(&test, &idx),
        &CLASS_NAMES,
    )?;
    let layers = layers(&model, &test)?;
    Ok(Row {
        model: name.into(),
        objective: objective.describe(),
        test_elbo: full.elbo,
        test_nll: Some(nll.nll),
        test_nll_stderr: Some(nll.stderr),
        reconstruction_nats: -full.reconstruction,
        reconstruction_mse: mse,
        kl: full.kl,
        active_units: Some(eval::active_units(&variances)),
        codebook_perplexity: None,
        codes_used: None,
        layers,
        code_priors: None,
        train_images_per_s: report.train_images_per_s,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The CVAE 784|10-400-20 conditioned on the one-hot label.
fn cvae(args: &Args, splits: &Splits) -> Result<Row> {
    let start = Instant::now();
    let dir = args.out().join("cvae");
    let dev = Dev::seed_from_u64(args.run.seed);
    let mut model: Cvae<Const<X>, Const<10>, Const<H>, Const<Z>, f32, Dev> =
        Cvae::new(&dev, (Const, Const, Const, Const))?;
    let mut task = ConditionalTask::new(Elbo::default(), LabelCondition);
    let spec = model.spec().part("condition", "label");
    let report = fit_task(
        &mut model,
        &mut task,
        &splits.train,
        &splits.test,
        &TrainConfig {
            model: Some(spec.clone()),
            ..args.config(&dir)
        },
        &dev,
    )?;
    let test = prepare_test(&splits.test, Binarization::Dynamic, args.run.seed);
    let full = task.evaluate(&model, &test, &dev)?;
    let nll = eval::test_nll_conditional(
        &model,
        &test,
        &dev,
        &args.run.eval_options(),
        &LabelCondition,
    )?;

    let idx = first(&test, args);
    let (x, y): (Events<Const<X>, f32, Dev>, Events<Const<10>, f32, Dev>) =
        LabelCondition.tensors(&test, &idx, None, &dev)?;
    let bound = Conditioned::new(&model, y);
    let q_mean = bound.guide(x.clone())?.mean();
    let means = to_f64_vec(&q_mean);
    let recon = bound.likelihood(q_mean)?.mean();
    let mse = mse(&x, &recon);
    // Samples: row c is class c; column j uses the same z_j for every class.
    let z: Tensor<(usize, Const<Z>), f32, Dev> = dev.sample_normal_like(&(10, Const));
    let z = latent::ops::repeat_rows(z, 10);
    let mut onehot = vec![0.0f32; 100 * 10];
    for r in 0..100 {
        onehot[r * 10 + r / 10] = 1.0;
    }
    let y = dev.tensor_from_vec(onehot, (100, Const));
    // repeat_rows is sample-major (row s·10 + j = z_j), which is what a class-major grid wants.
    let samples = model.likelihood(z, y)?.mean().as_vec();
    common::pictures(&dir, (28, 28), &x.as_vec(), &recon.as_vec(), &samples, 10)?;
    common::scatter(
        &dir.join("latent.png"),
        "cvae: test posterior means by class",
        &means,
        Z,
        &labels(&test, &idx),
        &CLASS_NAMES,
    )?;
    Ok(Row {
        model: "cvae".into(),
        objective: task.describe(),
        test_elbo: full.elbo,
        test_nll: Some(nll.nll),
        test_nll_stderr: Some(nll.stderr),
        reconstruction_nats: -full.reconstruction,
        reconstruction_mse: mse,
        kl: full.kl,
        active_units: None,
        codebook_perplexity: None,
        codes_used: None,
        code_priors: None,
        layers: None,
        train_images_per_s: report.train_images_per_s,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The convolutional VQ-VAE with a 7×7 grid of codes, EMA codebook and restarts.
fn vq_vae(args: &Args, splits: &Splits) -> Result<Row> {
    let start = Instant::now();
    let dir = args.out().join("vq-vae");
    let dev = Dev::seed_from_u64(args.run.seed);
    let mut model: ConvVqVae<DM, Const<K>, f32, Dev> = conv_vq_vae(&dev, Const)?;
    let mut task = VqVaeTask::new(
        0.25,
        CodebookUpdate::Ema(CodebookEma::new(K, DM, 0.99, 1e-5)?),
        args.run.seed,
    )?
    .with_restarts(DeadCodeRestart::new(K, 0.03, 0.99)?);
    let spec = model.spec();
    let report = fit_task(
        &mut model,
        &mut task,
        &splits.train,
        &splits.test,
        &TrainConfig {
            model: Some(spec.clone()),
            ..args.config(&dir)
        },
        &dev,
    )?;
    let test = prepare_test(&splits.test, Binarization::Dynamic, args.run.seed);
    let full = task.evaluate(&model, &test, &dev)?;
    // The encoder is generic over its input width: name it once.
    let width: Const<X> = Const;
    let (usage, _) = code_usage(&model, &test, width, &dev)?;

    let idx = first(&test, args);
    let x: Events<Const<X>, f32, Dev> = test.batch(&dev, &idx, None)?;
    let codes = model.encode(x.clone())?;
    let recon = model.decode(&codes)?.mean();
    let mse = mse(&x, &recon);
    // Samples from per-position categoricals fitted to the training codes.
    // Binarized as the model saw them in training.
    let fit_on = prepare_test(
        &splits.train.take(10_000),
        Binarization::Dynamic,
        args.run.seed,
    );
    let (_, train_codes) = code_usage(&model, &fit_on, width, &dev)?;
    let prior = CodePrior::fit(&train_codes, 49, K)?;
    let drawn = prior.sample(64, &dev)?;
    let samples: Vec<f32> = model.decode(&drawn)?.mean().as_vec();
    common::pictures(&dir, (28, 28), &x.as_vec(), &recon.as_vec(), &samples, 8)?;

    // The autoregressive prior (van den Oord et al. 2017, §4.1): a gated PixelCNN fitted
    // to the codes of the whole (binarized) training set, scored on the test codes.
    let all_train = prepare_test(&splits.train, Binarization::Dynamic, args.run.seed ^ 1);
    let (_, all_codes) = code_usage(&model, &all_train, width, &dev)?;
    let mut pixelcnn: CodePixelCnn = GatedPixelCnn::new(&dev, K, PIXELCNN_CHANNELS)?;
    let history = pixelcnn.fit(&all_codes, args.pixelcnn_epochs, 128, 1e-3, args.run.seed)?;
    let (_, test_codes) = code_usage(&model, &test, width, &dev)?;
    let n_test = test_codes.len() / 49;
    let pixelcnn_log_p: f64 = pixelcnn.log_prob(&test_codes)?.iter().sum();
    let independent_log_p: f64 = test_codes
        .iter()
        .enumerate()
        .map(|(j, &c)| prior.log_probs[(j % 49) * K + c])
        .sum();
    let pixelcnn_nll = -pixelcnn_log_p / n_test as f64;
    let independent_nll = -independent_log_p / n_test as f64;
    let code_priors = CodePriors {
        uniform_nll: 49.0 * (K as f64).ln(),
        independent_nll,
        pixelcnn_nll,
        pixelcnn_train_nll_by_epoch: history,
        elbo_with_pixelcnn: full.reconstruction - pixelcnn_nll,
    };
    let drawn = pixelcnn.sample(64, &dev)?;
    let pixel_samples: Vec<f32> = model.decode(&drawn)?.mean().as_vec();
    if common::leader() {
        save_image_grid(dir.join("samples_pixelcnn.png"), &pixel_samples, 28, 28, 8)?;
    }
    if common::leader() {
        eprintln!("vq-vae: {} codes restarted during training", task.restarts);
    }
    Ok(Row {
        model: "vq-vae".into(),
        objective: Task::<f32, Dev, ConvVqVae<DM, Const<K>, f32, Dev>>::describe(&task),
        test_elbo: full.elbo,
        test_nll: None,
        test_nll_stderr: None,
        reconstruction_nats: -full.reconstruction,
        reconstruction_mse: mse,
        kl: full.kl,
        active_units: None,
        codebook_perplexity: Some(usage.perplexity),
        codes_used: Some(usage.used_fraction),
        code_priors: Some(code_priors),
        layers: None,
        train_images_per_s: report.train_images_per_s,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn labels(data: &Dataset, idx: &[usize]) -> Vec<u8> {
    idx.iter().map(|&i| data.labels[i]).collect()
}

fn mse<S: Shape, T, U>(x: &Tensor<S, f32, Dev, T>, recon: &Tensor<S, f32, Dev, U>) -> f64 {
    let (a, b) = (to_f64_vec(x), to_f64_vec(recon));
    let squared: f64 = a.iter().zip(&b).map(|(u, v)| (u - v) * (u - v)).sum();
    squared / a.len().max(1) as f64
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

fn write_results(
    args: &Args,
    splits: &Splits,
    rows: &[Row],
    discrete_rows: &[discrete::DiscreteRow],
) -> Result<()> {
    let (r, out) = (&args.run, args.out());
    if !common::leader() {
        return Ok(());
    }
    common::write_json(&out, "results.json", &rows)?;
    if !discrete_rows.is_empty() {
        discrete::write(&out, discrete_rows)?;
    }
    let mut md =
        format!(
        "# Model comparison\n\nData: {} ({} training / {} test images, dynamically binarized), \
         {} epochs, batch {}, Adam 1e-3, seed {}. Nats per image. NLL: importance sampling \
         with k = {} on the first {} test images (± standard error). Reconstruction MSE: per \
         pixel, mean of p(x|z) at the posterior mean (z_q for the VQ-VAE) against the binary \
         test image.\n\n",
        splits.source,
        splits.train.len(),
        splits.test.len(),
        r.epochs(5),
        r.batch_size,
        r.seed,
        r.eval_k,
        if r.eval_n == 0 { splits.test.len() } else { r.eval_n.min(splits.test.len()) },
    );
    md.push_str(
        "| model | objective | test ELBO | NLL | −E log p(x\\|z) | MSE/pixel | KL | active units | perplexity | codes used | train img/s | seconds |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {:.2} | {} | {:.2} | {:.4} | {:.2} | {} | {} | {} | {:.0} | {:.0} |\n",
            r.model,
            r.objective,
            r.test_elbo,
            match (r.test_nll, r.test_nll_stderr) {
                (Some(n), Some(s)) => format!("{n:.2} ± {s:.2}"),
                _ => "–".into(),
            },
            r.reconstruction_nats,
            r.reconstruction_mse,
            r.kl,
            r.active_units.map_or("–".into(), |a| a.to_string()),
            fmt(r.codebook_perplexity, 1),
            fmt(r.codes_used.map(|f| 100.0 * f), 0) + if r.codes_used.is_some() { "%" } else { "" },
            r.train_images_per_s,
            r.seconds,
        ));
    }
    md.push_str(
        "\nThe CVAE's ELBO and NLL bound −log p(x | y) given the label, not −log p(x). The \
         VQ-VAE's ELBO is log p(x|z_q) − 49 ln K (uniform prior over K codes at 49 positions, \
         van den Oord et al. 2017, §3.1); it has no NLL column because its posterior is a point mass.\n\n\
         Latent plots (`*/latent.png`): posterior means of the test images on their first two \
         principal axes; colours by class: ",
    );
    let legend: Vec<String> = CLASS_NAMES
        .iter()
        .zip(common::COLOUR_NAMES)
        .map(|(c, n)| format!("{c} = {n}"))
        .collect();
    md.push_str(&legend.join(", "));
    md.push_str(".\n");
    for r in rows {
        if let Some(l) = &r.layers {
            md.push_str(&format!(
                "\n{}: KL by layer (Monte Carlo, nats per image) z1 {:.2}, z2 {:.2}; active units \
                 z1 {} of {}, z2 {} of {}.\n",
                r.model,
                l.kl[0],
                l.kl[1],
                l.active_units[0],
                l.widths[0],
                l.active_units[1],
                l.widths[1]
            ));
        }
        if let Some(p) = &r.code_priors {
            md.push_str(&format!(
                "\nVQ-VAE code priors on the test images' 7×7 code grids (nats per image): uniform \
                 {:.1}, independent per-position categoricals {:.1}, gated PixelCNN {:.1} \
                 (`vq-vae/samples.png` and `vq-vae/samples_pixelcnn.png` decode draws of the \
                 second and the third). The VQ-VAE's bound with the PixelCNN prior: \
                 log p(x|z_q) + log p(z_q) = {:.2}.\n",
                p.uniform_nll, p.independent_nll, p.pixelcnn_nll, p.elbo_with_pixelcnn
            ));
        }
    }
    // Every model's curves on one chart: the runs' own metrics logs, by directory name.
    let mut runs = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&out)
        .map_err(|e| Error::io(&out, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("metrics.jsonl").is_file())
        .collect();
    dirs.sort();
    for dir in &dirs {
        let name = dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        runs.push((name, MetricsLog::read(dir.join("metrics.jsonl"))?));
    }
    let named: Vec<(&str, &[EpochMetrics])> = runs
        .iter()
        .map(|(n, m)| (n.as_str(), m.as_slice()))
        .collect();
    latent::eval::charts::compare_curves(out.join("curves.png"), &named)?;
    if rows.is_empty() {
        md = "# Model comparison\n".into();
    }
    if !discrete_rows.is_empty() {
        md.push_str(&discrete::markdown(discrete_rows, r));
    }
    let path = out.join("results.md");
    latent::train::run_dir::write_atomically(&path, |w| {
        std::io::Write::write_all(w, md.as_bytes()).map_err(|e| Error::io(&path, e))
    })
}
