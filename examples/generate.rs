//! Opens a trained run again and looks into it: samples, reconstructions, the latents
//! of the whole test set, an interpolation and a latent traversal.
//!
//! ```text
//! cargo run --release --example vae                      # trains into runs/vae
//! cargo run --release --example generate -- --run runs/vae
//! cargo run --release --example generate -- --run runs/cvae/labels --label 7
//! cargo run --release --example generate -- --run runs/compare/vq-vae --images 0,5,9
//! ```
//!
//! The run's `checkpoint.safetensors` says which model it holds (kind, sizes,
//! likelihood, prior: see `config.json` beside it); the model is rebuilt from that and
//! loaded with `latent::train::load_model`, which refuses a checkpoint that does not
//! match. Works for the runs of the `vae` example (any likelihood and prior, IWAE and
//! β-VAE objectives included), the label-conditioned CVAE of `cvae` and `compare`, the
//! VAEs and the conv VQ-VAE of `compare`, and the VampPrior VAE of `custom_model`.
//!
//! Writes into `--out` (default: the run's `generated/` directory, so the training
//! run's own `samples.png` and `reconstructions.png` stay as they were):
//! - `samples.png`: `--n` draws from the prior, decoded (`--seed`); for the CVAE of
//!   class `--label`, or one row per class; for the VQ-VAE, codes drawn from the
//!   per-position code frequencies of the training set;
//! - `reconstructions.png`: the test images `--images` above their reconstructions;
//! - `latents.csv`: each test image's index, label and posterior means and `log σ`
//!   (the VQ-VAE: its 49 code indices);
//! - `interpolation.png`: test images `--between A,B` at the ends, the decoded points of
//!   the segment between their posterior means in between (the VQ-VAE: between their
//!   encoder outputs, quantized);
//! - `traversal.png`: around test image `--center`, one row per latent dimension in
//!   order of decreasing KL (the most informative first), each running from −3 to +3
//!   standard deviations of that dimension's posterior means over the test set (the
//!   VQ-VAE: one row per code dimension, moving every position's encoder output).
//!
//! The test images are found as in training (`--data`, `$LATENT_DATA`, Debian's
//! Fashion-MNIST, the embedded subset) and binarized as the run was.

mod common;
#[path = "common/vamp.rs"]
mod vamp;

use vamp::VampVae;

use std::path::{Path, PathBuf};

use clap::Parser;
use common::mlp_heads::{self, MlpVaeBounds, Model, WithHeads};
use dfdx::prelude::*;
use latent::data::{discover, Conditioning, Dataset, LabelCondition, Splits};
use latent::distributions::Normal;
use latent::eval::explore::{column_std, descending, encode, interpolate, traverse};
use latent::eval::viz::save_image_grid;
use latent::train::{load_model, prepare_test, read_checkpoint_meta, Describe, ModelSpec};
use latent::{ConditionalModel, Distribution, Error, Events, LatentVariableModel, Result};
use latent_models::{conv_vq_vae, mlp_vae_with_heads, CodePrior, ConvVqVae, Cvae};

type Dev = AutoDevice;

/// Open a trained run and write samples, reconstructions, latents, an interpolation
/// and a latent traversal (into the run's `generated/` directory unless `--out`).
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
struct Args {
    /// The run directory (holding `checkpoint.safetensors`).
    #[arg(long)]
    run: PathBuf,
    /// Where to write the pictures and `latents.csv` (created if absent; default:
    /// `RUN/generated`, beside the training run's own files, which stay untouched).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Directory with the four IDX files, or `embedded` (default: as in training).
    #[arg(long)]
    data: Option<String>,
    /// Samples to draw.
    #[arg(long, default_value_t = 64)]
    n: usize,
    /// Seed of the samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Test images to reconstruct (comma-separated indices).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,4,5,6,7,8,9")]
    images: Vec<usize>,
    /// The two test images to interpolate between.
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    between: Vec<usize>,
    /// The test image at the centre of the traversal.
    #[arg(long, default_value_t = 0)]
    center: usize,
    /// Points per interpolation and traversal row.
    #[arg(long, default_value_t = 11)]
    steps: usize,
    /// CVAE: the class to draw samples of (default: one row per class).
    #[arg(long)]
    label: Option<u8>,
}

fn main() {
    if let Err(e) = run(&Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// What every model's part needs: the arguments, the run's test split (prepared as in
/// training) and its training split, the device.
struct Ctx<'a> {
    args: &'a Args,
    /// The output directory (`--out`, or the run's `generated/`).
    dir: PathBuf,
    splits: Splits,
    test: Dataset,
    dev: Dev,
    checkpoint: PathBuf,
}

impl Ctx<'_> {
    fn out(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    fn shape(&self) -> (usize, usize) {
        (self.test.rows, self.test.cols)
    }
    /// Checks that the test images asked for exist.
    fn check_images(&self) -> Result<()> {
        let a = self.args;
        let asked = a.images.iter().chain(&a.between).chain([&a.center]);
        if let Some(&i) = asked.into_iter().find(|&&i| i >= self.test.len()) {
            return Err(Error::invalid(
                "images",
                format!("test image {i} of {}", self.test.len()),
            ));
        }
        if a.between.len() != 2 {
            return Err(Error::invalid("between", "needs two test images, A,B"));
        }
        if a.n == 0 || a.steps == 0 {
            return Err(Error::invalid("n/steps", "must be at least 1"));
        }
        Ok(())
    }
    fn grid(&self, name: &str, images: &[f32], cols: usize) -> Result<()> {
        let (h, w) = self.shape();
        save_image_grid(self.out(name), images, h, w, cols)?;
        eprintln!("wrote {}", self.out(name).display());
        Ok(())
    }
}

fn run(args: &Args) -> Result<()> {
    let checkpoint = args.run.join("checkpoint.safetensors");
    let meta = read_checkpoint_meta(&checkpoint)?.ok_or_else(|| Error::Checkpoint {
        path: checkpoint.clone(),
        reason: "it does not say which model it holds (written before latent 0.1's \
                 self-describing checkpoints?)"
            .into(),
    })?;
    let spec = meta.model.clone().ok_or_else(|| Error::Checkpoint {
        path: checkpoint.clone(),
        reason: "it does not describe its model".into(),
    })?;
    // Not while a training run is still writing there (a busy run is an error).
    let _claim = latent::train::RunDir::resume(&args.run)?;
    let training = meta.training.clone();
    eprintln!(
        "run {}: {} {:?} {:?}{}",
        args.run.display(),
        spec.kind,
        spec.sizes,
        spec.parts,
        training
            .as_ref()
            .map(|t| format!(", {} after {} epochs", t.objective, t.epoch))
            .unwrap_or_default()
    );
    let splits = discover(args.data.as_deref())?;
    let (binarization, seed) = training
        .as_ref()
        .map(|t| (t.config.binarization, t.config.seed))
        .unwrap_or_default();
    let test = prepare_test(&splits.test, binarization, seed);
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| args.run.join(latent::train::run_dir::GENERATED_DIR));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let ctx = Ctx {
        args,
        dir,
        splits,
        test,
        dev: Dev::seed_from_u64(args.seed),
        checkpoint,
    };
    ctx.check_images()?;
    let size = |name: &str| -> Result<usize> {
        spec.sizes.get(name).copied().ok_or_else(|| {
            Error::invalid("run", format!("the model description has no size `{name}`"))
        })
    };
    let part = |role: &str| spec.parts.get(role).map(String::as_str).unwrap_or("");
    match spec.kind.as_str() {
        "vae" => {
            let dims = (size("x")?, size("h")?, size("z")?);
            let (likelihood, prior) =
                mlp_heads::from_spec(&spec).map_err(|e| unknown(&spec, &e.to_string()))?;
            mlp_heads::with_heads(likelihood, prior, dims.2, OpenVae { ctx: &ctx, dims })
        }
        "cvae" if part("condition") == "label" => cvae(&ctx, (size("x")?, size("h")?, size("z")?)),
        "vq-vae" if size("dm")? == 16 => vq_vae(&ctx, size("k")?),
        "vamp-vae" => vamp_vae(&ctx),
        _ => Err(unknown(&spec, "this kind")),
    }
}

fn unknown(spec: &ModelSpec, what: &str) -> Error {
    Error::invalid(
        "run",
        format!(
            "generate does not know {what} ({} {:?} {:?}); it opens the MLP VAE, the \
             label-conditioned CVAE, the conv VQ-VAE with DM = 16 and the VampPrior VAE",
            spec.kind, spec.sizes, spec.parts
        ),
    )
}

/// Opening an MLP VAE run, once its heads are known.
struct OpenVae<'a, 'b> {
    ctx: &'a Ctx<'b>,
    dims: (usize, usize, usize),
}

impl WithHeads for OpenVae<'_, '_> {
    fn run<L, P>(self, heads: impl FnOnce(&Dev) -> Result<(L, P)>) -> Result<()>
    where
        Model<L, P>: MlpVaeBounds,
    {
        let (likelihood, prior) = heads(&self.ctx.dev)?;
        let mut model: Model<L, P> =
            mlp_vae_with_heads(&self.ctx.dev, self.dims, likelihood, prior)?;
        load_model(&mut model, &self.ctx.checkpoint)?;
        explore(self.ctx, &model, self.dims.2)
    }
}

/// The VAE with a VampPrior of the `custom_model` example.
fn vamp_vae(ctx: &Ctx<'_>) -> Result<()> {
    let mut model: VampVae<f32, Dev> = VampVae::build(&ctx.dev);
    load_model(&mut model, &ctx.checkpoint)?;
    explore(ctx, &model, Const)
}

/// Every picture and the latents of a model with a Gaussian guide.
fn explore<M>(ctx: &Ctx<'_>, model: &M, z_dim: M::Z) -> Result<()>
where
    M: LatentVariableModel<
        f32,
        Dev,
        NoneTape,
        Posterior = Normal<<M as LatentVariableModel<f32, Dev, NoneTape>>::Z, f32, Dev, NoneTape>,
    >,
    M::X: Default,
{
    let dev = &ctx.dev;
    let z = z_dim.size();
    let decode = |zs: &[f64]| -> Result<Vec<f32>> {
        Ok(latent::eval::explore::decode(model, zs, z_dim, dev)?.as_vec())
    };
    // Samples from the prior.
    let samples = model
        .likelihood(model.prior(ctx.args.n, dev)?.sample())?
        .mean();
    ctx.grid("samples.png", &samples.as_vec(), 8)?;
    // Reconstructions.
    let x: Tensor<(usize, M::X), f32, Dev> = ctx.test.batch(dev, &ctx.args.images, None)?;
    let recon = latent::eval::explore::reconstruct(model, x.clone())?;
    ctx.grid(
        "reconstructions.png",
        &[x.as_vec(), recon.as_vec()].concat(),
        ctx.args.images.len(),
    )?;
    // Latents of the test set.
    let (mu, log_sigma) = encode(model, &ctx.test, dev, 500)?;
    write_latents(ctx, z, &mu, &log_sigma)?;
    // Interpolation between two test images.
    let row = |i: usize| &mu[i * z..(i + 1) * z];
    let (a, b) = (ctx.args.between[0], ctx.args.between[1]);
    let path = decode(&interpolate(row(a), row(b), ctx.args.steps)?)?;
    ctx.grid(
        "interpolation.png",
        &[pixels(&ctx.test, a), path, pixels(&ctx.test, b)].concat(),
        ctx.args.steps + 2,
    )?;
    // Traversal, dimensions by decreasing KL (by spread where the KL has no closed
    // form per dimension, e.g. under a mixture prior).
    let spread = column_std(&mu, z);
    let kl = latent::eval::kl_per_dimension(model, &ctx.test, dev, 500)?;
    let order = descending(kl.as_deref().unwrap_or(&spread));
    match &kl {
        Some(kl) => eprintln!(
            "traversal rows (dimension: KL nats): {}",
            order
                .iter()
                .map(|&j| format!("{j}: {:.2}", kl[j]))
                .reduce(|a, b| format!("{a}, {b}"))
                .unwrap_or_default()
        ),
        None => eprintln!("traversal rows by spread of the posterior means: {order:?}"),
    }
    let t = traverse(row(ctx.args.center), &spread, &order, ctx.args.steps, 3.0)?;
    ctx.grid("traversal.png", &decode(&t)?, ctx.args.steps)
}

/// The label-conditioned CVAE (784 | 10 → H → Z).
fn cvae(ctx: &Ctx<'_>, (x, h, z): (usize, usize, usize)) -> Result<()> {
    let dev = &ctx.dev;
    let mut model: Cvae<usize, Const<10>, usize, usize, f32, Dev> =
        Cvae::new(dev, (x, Const, h, z))?;
    // The CVAE example describes its condition beside the sizes.
    let spec = model.spec().part("condition", "label");
    let found = read_checkpoint_meta(&ctx.checkpoint)?.and_then(|m| m.model);
    if let Some(found) = found.filter(|f| *f != spec) {
        return Err(Error::CheckpointMismatch {
            path: ctx.checkpoint.clone(),
            differences: spec.differences(&found),
        });
    }
    latent::train::load_checkpoint(&mut model, &ctx.checkpoint)?;
    let one_hot = |labels: &[u8]| {
        let mut y = vec![0.0f32; labels.len() * 10];
        for (r, &c) in labels.iter().enumerate() {
            y[r * 10 + c as usize % 10] = 1.0;
        }
        let y: Events<Const<10>, f32, Dev> = dev.tensor_from_vec(y, (labels.len(), Const));
        y
    };
    let decode = |zs: &[f64], labels: &[u8]| -> Result<Vec<f32>> {
        let v: Vec<f32> = zs.iter().map(|&v| v as f32).collect();
        let zt = dev.tensor_from_vec(v, (labels.len(), z));
        Ok(model.likelihood(zt, one_hot(labels))?.mean().as_vec())
    };
    // Samples: class --label, or one row of 8 per class.
    let labels: Vec<u8> = match ctx.args.label {
        Some(c) if c < 10 => vec![c; ctx.args.n],
        Some(c) => return Err(Error::invalid("label", format!("class {c} of 10"))),
        None => (0..10u8).flat_map(|c| [c; 8]).collect(),
    };
    let y = one_hot(&labels);
    let zs = model.prior(y.clone())?.sample();
    let samples = model.likelihood(zs, y)?.mean();
    ctx.grid("samples.png", &samples.as_vec(), 8)?;
    // Reconstructions with the true labels.
    let (xs, ys) = Conditioning::<usize, Const<10>>::tensors::<f32, Dev>(
        &LabelCondition,
        &ctx.test,
        &ctx.args.images,
        None,
        dev,
    )?;
    let xs = xs
        .try_reshape_like(&(ctx.args.images.len(), x))
        .map_err(Error::device)?;
    let recon = model
        .likelihood(
            model.guide(xs.clone(), ys)?.mean(),
            one_hot(&labels_of(ctx, &ctx.args.images)),
        )?
        .mean();
    ctx.grid(
        "reconstructions.png",
        &[xs.as_vec(), recon.as_vec()].concat(),
        ctx.args.images.len(),
    )?;
    // Latents of the test set, given their labels.
    let (mut mu, mut log_sigma) = (Vec::new(), Vec::new());
    for idx in latent::eval::batches(ctx.test.len(), 500)? {
        let (xs, ys) = Conditioning::<usize, Const<10>>::tensors::<f32, Dev>(
            &LabelCondition,
            &ctx.test,
            &idx,
            None,
            dev,
        )?;
        let xs = xs
            .try_reshape_like(&(idx.len(), x))
            .map_err(Error::device)?;
        let q = model.guide(xs, ys)?;
        mu.extend(latent::ops::to_f64_vec(&q.loc));
        log_sigma.extend(latent::ops::to_f64_vec(&q.log_scale));
    }
    write_latents(ctx, z, &mu, &log_sigma)?;
    let row = |i: usize| &mu[i * z..(i + 1) * z];
    // Interpolation, decoded with the first image's label.
    let (a, b) = (ctx.args.between[0], ctx.args.between[1]);
    let steps = ctx.args.steps;
    let la = ctx.test.labels[a];
    let path = decode(&interpolate(row(a), row(b), steps)?, &vec![la; steps])?;
    ctx.grid(
        "interpolation.png",
        &[pixels(&ctx.test, a), path, pixels(&ctx.test, b)].concat(),
        steps + 2,
    )?;
    // Traversal around --center with its label, by spread (the style dimensions).
    let spread = column_std(&mu, z);
    let order = descending(&spread);
    let t = traverse(row(ctx.args.center), &spread, &order, steps, 3.0)?;
    let lc = ctx.test.labels[ctx.args.center];
    ctx.grid(
        "traversal.png",
        &decode(&t, &vec![lc; order.len() * steps])?,
        steps,
    )
}

fn labels_of(ctx: &Ctx<'_>, idx: &[usize]) -> Vec<u8> {
    idx.iter().map(|&i| ctx.test.labels[i]).collect()
}

/// The conv VQ-VAE with a codebook of `k` codes of 16 dimensions.
fn vq_vae(ctx: &Ctx<'_>, k: usize) -> Result<()> {
    const DM: usize = 16;
    let dev = &ctx.dev;
    let mut model: ConvVqVae<DM, usize, f32, Dev> = conv_vq_vae(dev, k)?;
    load_model(&mut model, &ctx.checkpoint)?;
    let grid = 49;
    let decode_codes = |codes: &[usize]| -> Result<Vec<f32>> {
        let pixels: Events<Const<784>, f32, Dev> = model.decode(codes)?.mean();
        Ok(pixels.as_vec())
    };
    // Samples: codes from the per-position frequencies of the training set.
    let width: Const<784> = Const;
    let (_, train_codes) = latent_models::code_usage(&model, &ctx.splits.train, width, dev)?;
    let prior = CodePrior::fit(&train_codes, grid, k)?;
    let codes = prior.sample(ctx.args.n, &Cpu::seed_from_u64(ctx.args.seed))?;
    ctx.grid("samples.png", &decode_codes(&codes)?, 8)?;
    // Reconstructions.
    let x: Tensor<(usize, Const<784>), f32, Dev> = ctx.test.batch(dev, &ctx.args.images, None)?;
    let codes = model.encode(x.clone())?;
    ctx.grid(
        "reconstructions.png",
        &[x.as_vec(), decode_codes(&codes)?].concat(),
        ctx.args.images.len(),
    )?;
    // The code indices of the test set.
    let (_, test_codes) = latent_models::code_usage(&model, &ctx.test, width, dev)?;
    let path = ctx.out("latents.csv");
    let mut csv = String::from("index,label");
    for g in 0..grid {
        csv.push_str(&format!(",code_{g}"));
    }
    csv.push('\n');
    for (i, row) in test_codes.chunks(grid).enumerate() {
        csv.push_str(&format!("{i},{}", ctx.test.labels[i]));
        for c in row {
            csv.push_str(&format!(",{c}"));
        }
        csv.push('\n');
    }
    write_text(&path, &csv)?;
    // Encoder outputs z_e of the test images asked for, 49 × DM values each.
    let z_e = |idx: &[usize]| -> Result<Vec<f64>> {
        let x: Tensor<(usize, Const<784>), f32, Dev> = ctx.test.batch(dev, idx, None)?;
        let out = model.encoder.try_forward(x).map_err(Error::device)?;
        Ok(latent::ops::to_f64_vec(&out))
    };
    let quantize_decode = |points: &[f64]| -> Result<Vec<f32>> {
        let v: Vec<f32> = points.iter().map(|&p| p as f32).collect();
        let t: Events<Const<DM>, f32, Dev> = dev.tensor_from_vec(v, (points.len() / DM, Const));
        decode_codes(&model.quantizer.nearest(&t)?)
    };
    let (a, b) = (ctx.args.between[0], ctx.args.between[1]);
    let steps = ctx.args.steps;
    let path = quantize_decode(&interpolate(&z_e(&[a])?, &z_e(&[b])?, steps)?)?;
    ctx.grid(
        "interpolation.png",
        &[pixels(&ctx.test, a), path, pixels(&ctx.test, b)].concat(),
        steps + 2,
    )?;
    // Traversal: code dimension d of every position moved together by ±3 spreads.
    let center = z_e(&[ctx.args.center])?;
    let first: Vec<usize> = (0..ctx.test.len().min(500)).collect();
    let spread = column_std(&z_e(&first)?, DM);
    let mut points = Vec::with_capacity(DM * steps * center.len());
    for d in descending(&spread) {
        for t in interpolate(&[-3.0], &[3.0], steps)? {
            points.extend(center.iter().enumerate().map(|(j, &v)| {
                if j % DM == d {
                    v + t * spread[d]
                } else {
                    v
                }
            }));
        }
    }
    ctx.grid("traversal.png", &quantize_decode(&points)?, steps)
}

/// The pixels of test image `i`, in `[0, 1]`.
fn pixels(test: &Dataset, i: usize) -> Vec<f32> {
    let dim = test.dim();
    test.images[i * dim..(i + 1) * dim]
        .iter()
        .map(|&p| p as f32 / 255.0)
        .collect()
}

/// `latents.csv`: `index,label,mu_0,…,log_sigma_0,…` per test image.
fn write_latents(ctx: &Ctx<'_>, z: usize, mu: &[f64], log_sigma: &[f64]) -> Result<()> {
    let mut csv = String::from("index,label");
    for j in 0..z {
        csv.push_str(&format!(",mu_{j}"));
    }
    for j in 0..z {
        csv.push_str(&format!(",log_sigma_{j}"));
    }
    csv.push('\n');
    for i in 0..mu.len() / z {
        csv.push_str(&format!("{i},{}", ctx.test.labels[i]));
        for v in mu[i * z..(i + 1) * z]
            .iter()
            .chain(&log_sigma[i * z..(i + 1) * z])
        {
            csv.push_str(&format!(",{v}"));
        }
        csv.push('\n');
    }
    write_text(&ctx.out("latents.csv"), &csv)
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    latent::train::run_dir::write_atomically(path, |w| {
        std::io::Write::write_all(w, text.as_bytes()).map_err(|e| Error::io(path, e))
    })?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
