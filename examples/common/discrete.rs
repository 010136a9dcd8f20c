//! The discrete-latent rows of `compare`: the Gaussian-mixture VAE (its cluster summed
//! out) beside k-means on the raw pixels, and the VAE with 200 binary latents trained
//! with each score-function estimator and with the Concrete relaxation.

use std::path::Path;
use std::time::Instant;

use dfdx::prelude::*;
use latent::data::{Binarization, Dataset, Splits};
use latent::eval::clusters::{cluster_accuracy, normalized_mutual_information};
use latent::eval::explore::encode;
use latent::inference::enumerate::EnumeratedElbo;
use latent::inference::nvil::Moments;
use latent::train::{
    fit, fit_task, prepare_test, Describe, EnumeratedTask, ObjectiveTask, Task, ThreadSafe,
    TrainConfig, TrainReport,
};
use latent::{AnyObjective, Concrete, Elbo, Error, Events, Nvil, Objective, Result, Vimco};
use latent_models::{mlp_vae, ClusterFit, DiagonalGmm, GmVae, GmmSettings, MlpVae, SbnVae};
use serde::Serialize;

use crate::common::{self, RunArgs};

/// The discrete rows `compare` knows.
pub const DISCRETE_MODELS: [&str; 5] = [
    "gmvae",
    "sbn-reinforce",
    "sbn-nvil",
    "sbn-vimco",
    "sbn-concrete",
];
/// Clusters, hidden units and Gaussian latents of the GMVAE. Five latents: the best
/// cluster accuracy of the sizes tried (`docs/compare/discrete/gmvae-variants/`: 0.612
/// with seed 1 and 0.558 with seed 0, against 0.554 with ten and 0.550 with twenty).
const GMVAE_SIZES: (usize, usize, usize) = (10, 400, 5);
/// VaDE's start for the GMVAE (Jiang et al. 2017, §3.3): epochs of a plain VAE of the
/// same sizes before (at most `--epochs`), and epochs of fitting `q(y | x)` to the
/// responsibilities of the mixture fitted to its latent means.
const GMVAE_PRETRAIN_EPOCHS: usize = 10;
const GMVAE_CLUSTER_FIT_EPOCHS: usize = 5;
/// Binary latents of the SBN VAE, and its baseline network's tanh units (Mnih & Gregor
/// 2014, §6).
const SBN_LATENTS: usize = 200;
const BASELINE_HIDDEN: usize = 100;
/// VIMCO's samples per example.
const VIMCO_K: usize = 5;
/// The Concrete row's schedule: τ from 1 to 0.5 at rate 3e-4 per step (reached after
/// about 2,300 steps).
const CONCRETE: (f64, f64, f64) = (1.0, 0.5, 3e-4);
/// The gradient-variance measurement: draws of the encoder-weight gradient on one fixed
/// batch of this many test images.
const VARIANCE_DRAWS: usize = 100;
const VARIANCE_BATCH: usize = 100;

type Dev = AutoDevice;
type Sbn = SbnVae<Const<784>, usize, f32, Dev>;
type Gm = GmVae<Const<784>, usize, usize, usize, f32, Dev>;

/// One discrete row. Nats per image; `None` where it does not apply.
#[derive(Debug, Clone, Serialize)]
pub struct DiscreteRow {
    pub model: String,
    pub objective: String,
    /// The test ELBO (enumerated for the GMVAE), whole test set.
    pub test_elbo: Option<f64>,
    /// Importance-sampled `−log p(x)` (the GMVAE's cluster summed exactly).
    pub test_nll: Option<f64>,
    pub test_nll_stderr: Option<f64>,
    /// Test-set cluster accuracy (majority mapping) and NMI of `argmax q(y | x)`.
    pub cluster_accuracy: Option<f64>,
    pub cluster_nmi: Option<f64>,
    /// Mean over the encoder's weights of the variance of their gradient, over
    /// `VARIANCE_DRAWS` draws on one fixed batch, at the trained parameters.
    pub gradient_variance: Option<f64>,
    pub train_images_per_s: Option<f64>,
    pub seconds: f64,
}

/// Trains `model` with `task` into `dir` (dynamic binarization, `--epochs`, default 5)
/// and returns the report with the test set binarized once for the evaluations.
fn train<M, K>(
    run: &RunArgs,
    splits: &Splits,
    dir: &Path,
    model: &mut M,
    task: &mut K,
    dev: &Dev,
) -> Result<(TrainReport, Dataset)>
where
    M: TensorCollection<f32, Dev> + Describe + ThreadSafe,
    K: Task<f32, Dev, M> + Clone + ThreadSafe,
{
    let config = TrainConfig {
        model: Some(model.spec()),
        ..run.config(run.epochs(5), Binarization::Dynamic, dir.to_path_buf())
    };
    let report = fit_task(model, task, &splits.train, &splits.test, &config, dev)?;
    Ok((
        report,
        prepare_test(&splits.test, Binarization::Dynamic, run.seed),
    ))
}

/// Trains the row `name` (one of [`DISCRETE_MODELS`]) into `out/name`; the GMVAE row
/// also returns the row of its start (the pretrained VAE's mixture) and the k-means row.
///
/// # Errors
/// Training, evaluation and I/O errors; the k-means script's failure.
pub fn row(run: &RunArgs, splits: &Splits, out: &Path, name: &str) -> Result<Vec<DiscreteRow>> {
    match name {
        "gmvae" => gmvae(run, splits, out),
        "sbn-reinforce" => sbn(run, splits, out, name, AnyObjective::Elbo(Elbo::default())),
        "sbn-nvil" => sbn(run, splits, out, name, AnyObjective::Nvil(Nvil::default())),
        "sbn-vimco" => sbn(
            run,
            splits,
            out,
            name,
            AnyObjective::Vimco(Vimco::new(VIMCO_K)?),
        ),
        _ => {
            let (t0, t1, r) = CONCRETE;
            sbn(
                run,
                splits,
                out,
                name,
                AnyObjective::Concrete(Concrete::new(t0, t1, r)?),
            )
        }
    }
}

fn gmvae(run: &RunArgs, splits: &Splits, out: &Path) -> Result<Vec<DiscreteRow>> {
    let start = Instant::now();
    let dir = out.join("gmvae");
    let dev = Dev::seed_from_u64(run.seed);
    let k = GMVAE_SIZES.0;
    let (mut model, start_row) = vade_start(run, splits, &dir, &dev)?;
    let mut task = EnumeratedTask::new(EnumeratedElbo::default(), k)?;
    let (report, test) = train(run, splits, &dir, &mut model, &mut task, &dev)?;
    let elbo = latent::eval::evaluate_batches(test.len(), 500, |idx| {
        let x: Events<Const<784>, f32, Dev> = test.batch(&dev, idx, None)?;
        EnumeratedElbo::default().estimate(&model, x)
    })?;
    // K · batch · chunk latents per step: the chunk shrinks by K.
    let options = latent::eval::EvalOptions {
        chunk: 5,
        ..run.eval_options()
    };
    let nll = latent::eval::test_nll_enumerated(&model, &test, &dev, &options)?;
    let mut assign = Vec::with_capacity(test.len());
    for idx in latent::eval::batches(test.len(), 500)? {
        let x: Events<Const<784>, f32, Dev> = test.batch(&dev, &idx, None)?;
        for p in model.cluster_probs(x)? {
            let best = (0..p.len()).fold(0, |b, j| if p[j] > p[b] { j } else { b });
            assign.push(best);
        }
    }
    let (accuracy, nmi) = cluster_scores(&assign, &test)?;
    let gm = DiscreteRow {
        model: "gmvae".into(),
        objective: format!("enumerated elbo (K = {k})"),
        test_elbo: Some(elbo.elbo),
        test_nll: Some(nll.nll),
        test_nll_stderr: Some(nll.stderr),
        cluster_accuracy: Some(accuracy),
        cluster_nmi: Some(nmi),
        gradient_variance: None,
        train_images_per_s: Some(report.train_images_per_s),
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok(vec![gm, start_row, kmeans(run, &splits.test, &dir, k)?])
}

/// The majority-mapping accuracy and the NMI of `assign` against the classes of `test`.
fn cluster_scores(assign: &[usize], test: &Dataset) -> Result<(f64, f64)> {
    let labels: Vec<usize> = test.labels.iter().map(|&l| usize::from(l)).collect();
    Ok((
        cluster_accuracy(assign, &labels)?,
        normalized_mutual_information(assign, &labels)?,
    ))
}

/// VaDE's start for the GMVAE (Jiang et al. 2017, §3.3): a VAE of the GMVAE's sizes
/// trained with the ELBO, a mixture of `K` diagonal Gaussians fitted by EM to its guide
/// means of the training images (binarized once), the GMVAE built from both, and its
/// `q(y | x)` fitted to the mixture's responsibilities. Also returns the row of the
/// mixture's own clusters of the test images (the start the GMVAE's training moves
/// from).
fn vade_start(run: &RunArgs, splits: &Splits, dir: &Path, dev: &Dev) -> Result<(Gm, DiscreteRow)> {
    let start = Instant::now();
    let (k, h, z) = GMVAE_SIZES;
    let mut vae: MlpVae<Const<784>, usize, usize, f32, Dev> = mlp_vae(dev, (Const, h, z))?;
    let epochs = GMVAE_PRETRAIN_EPOCHS.min(run.epochs(5));
    let config = TrainConfig {
        model: Some(vae.spec()),
        ..run.config(epochs, Binarization::Dynamic, dir.join("pretrain"))
    };
    fit(
        &mut vae,
        &Elbo::default(),
        &splits.train,
        &splits.test,
        &config,
        dev,
    )?;
    let images = prepare_test(&splits.train, Binarization::Dynamic, run.seed);
    let (means, _) = encode(&vae, &images, dev, 500)?;
    let settings = GmmSettings {
        components: k,
        seed: run.seed,
        ..GmmSettings::default()
    };
    let gmm = DiagonalGmm::fit(&means, z, &settings)?.gmm;
    let mut model: Gm = GmVae::from_pretrained(dev, &vae, &gmm)?;
    let prior = model.cluster_prior()?;
    let targets: Vec<f64> = means
        .chunks(z)
        .flat_map(|m| prior.responsibilities(m))
        .collect();
    let fit_settings = ClusterFit {
        epochs: GMVAE_CLUSTER_FIT_EPOCHS,
        seed: run.seed,
        ..ClusterFit::default()
    };
    model.fit_cluster_net(&images, &targets, &fit_settings, dev)?;
    let test = prepare_test(&splits.test, Binarization::Dynamic, run.seed);
    let (test_means, _) = encode(&vae, &test, dev, 500)?;
    let assign: Vec<usize> = test_means.chunks(z).map(|m| gmm.predict(m)).collect();
    let (accuracy, nmi) = cluster_scores(&assign, &test)?;
    let row = DiscreteRow {
        model: format!("VAE ({epochs} epochs) + GMM on its means"),
        objective: format!("EM, {} restarts (VaDE's start)", settings.restarts),
        test_elbo: None,
        test_nll: None,
        test_nll_stderr: None,
        cluster_accuracy: Some(accuracy),
        cluster_nmi: Some(nmi),
        gradient_variance: None,
        train_images_per_s: None,
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok((model, row))
}

/// k-means on the raw test pixels (grey levels in `[0, 1]`), by
/// `scripts/kmeans_baseline.py` (scikit-learn), on the same test images.
fn kmeans(run: &RunArgs, test: &Dataset, dir: &Path, k: usize) -> Result<DiscreteRow> {
    let start = Instant::now();
    let scratch = tempfile::tempdir_in(dir).map_err(|e| Error::io(dir, e))?;
    let (images, labels, result) = (
        scratch.path().join("images.npy"),
        scratch.path().join("labels.npy"),
        dir.join("kmeans.json"),
    );
    let pixels: Vec<f32> = test.images.iter().map(|&p| f32::from(p) / 255.0).collect();
    write_npy(&images, &pixels, &[test.len() as u64, test.dim() as u64])?;
    write_npy(&labels, &test.labels, &[test.len() as u64])?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kmeans_baseline.py");
    let status = std::process::Command::new("python3")
        .arg(&script)
        .args(["--images", &images.to_string_lossy()])
        .args(["--labels", &labels.to_string_lossy()])
        .args(["--out", &result.to_string_lossy()])
        .args(["--clusters", &k.to_string()])
        .args(["--seed", &run.seed.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| Error::io(&script, e))?;
    if !status.success() {
        return Err(Error::invalid(
            "k-means",
            format!(
                "{} failed ({status}); it needs numpy and scikit-learn: \
                 pip install -r scripts/requirements.txt",
                script.display()
            ),
        ));
    }
    let text = std::fs::read_to_string(&result).map_err(|e| Error::io(&result, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::io(&result, std::io::Error::other(e)))?;
    Ok(DiscreteRow {
        model: "k-means (raw pixels)".into(),
        objective: format!(
            "scikit-learn {} KMeans, {} restarts",
            v["sklearn"].as_str().unwrap_or("?"),
            v["n_init"]
        ),
        test_elbo: None,
        test_nll: None,
        test_nll_stderr: None,
        cluster_accuracy: v["accuracy"].as_f64(),
        cluster_nmi: v["nmi"].as_f64(),
        gradient_variance: None,
        train_images_per_s: None,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn write_npy<T: npyz::Serialize + npyz::AutoSerialize + Copy>(
    path: &Path,
    values: &[T],
    shape: &[u64],
) -> Result<()> {
    use npyz::WriterBuilder;
    let io = |e: std::io::Error| Error::io(path, e);
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(io)?;
    w.extend(values.iter().copied()).map_err(io)?;
    w.finish().map_err(io)
}

fn sbn(
    run: &RunArgs,
    splits: &Splits,
    out: &Path,
    name: &str,
    objective: AnyObjective,
) -> Result<Vec<DiscreteRow>> {
    let start = Instant::now();
    let dir = out.join(name);
    let dev = Dev::seed_from_u64(run.seed);
    let mut model: Sbn = SbnVae::new(&dev, Const, SBN_LATENTS, BASELINE_HIDDEN)?;
    let mut task = ObjectiveTask::new(objective);
    let (report, test) = train(run, splits, &dir, &mut model, &mut task, &dev)?;
    let elbo = latent::eval::evaluate(&model, &Elbo::default(), &test, &dev, 500)?;
    let nll = latent::eval::test_nll(&model, &test, &dev, &run.eval_options())?;
    let idx: Vec<usize> = (0..VARIANCE_BATCH.min(test.len())).collect();
    let x: Events<Const<784>, f32, Dev> = test.batch(&dev, &idx, None)?;
    let variance = gradient_variance(&model, &unscaled(task.objective), &x)?;
    Ok(vec![DiscreteRow {
        model: name.into(),
        objective: objective.describe(),
        test_elbo: Some(elbo.elbo),
        test_nll: Some(nll.nll),
        test_nll_stderr: Some(nll.stderr),
        cluster_accuracy: None,
        cluster_nmi: None,
        gradient_variance: Some(variance),
        train_images_per_s: Some(report.train_images_per_s),
        seconds: start.elapsed().as_secs_f64(),
    }])
}

/// NVIL as measured: its trained centre, without the division by the running standard
/// deviation (a rescaling of the gradient, not a variance reduction), so that every
/// estimator's variance is that of an estimate of the same gradient.
fn unscaled(objective: AnyObjective) -> AnyObjective {
    match objective {
        AnyObjective::Nvil(n) => {
            AnyObjective::Nvil(n.with_alpha(0.999_999).unwrap_or(n).with_moments(Moments {
                variance: 0.0,
                ..n.moments()
            }))
        }
        other => other,
    }
}

/// The mean over the encoder weights `V` of `Var[∂ objective / ∂V]`, the objective
/// averaged over the batch `x`, over [`VARIANCE_DRAWS`] draws.
fn gradient_variance(
    model: &Sbn,
    objective: &AnyObjective,
    x: &Events<Const<784>, f32, Dev>,
) -> Result<f64> {
    let (outputs, inputs) = *model.encoder.weight.shape();
    let n = outputs * inputs.size();
    let (mut s1, mut s2) = (vec![0f64; n], vec![0f64; n]);
    for _ in 0..VARIANCE_DRAWS {
        let grads = model.try_alloc_grads().map_err(Error::device)?;
        let value = objective.objective(model, x.clone().traced(grads))?;
        let g = value.mean::<(), Axis<0>>().backward();
        for (i, v) in g.get(&model.encoder.weight).as_vec().iter().enumerate() {
            let v = f64::from(*v);
            s1[i] += v;
            s2[i] += v * v;
        }
    }
    let d = VARIANCE_DRAWS as f64;
    let total: f64 = s1
        .iter()
        .zip(&s2)
        .map(|(a, b)| (b - a * a / d) / (d - 1.0))
        .sum();
    Ok(total / n as f64)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// The discrete rows as a markdown section.
pub fn markdown(rows: &[DiscreteRow], run: &RunArgs) -> String {
    let mut md = format!(
        "\n## Discrete latents\n\nGMVAE: K = {} clusters summed out exactly over {} Gaussian latents, \
         {}-unit networks; clusters are argmax q(y | x) on the (binarized) test images, accuracy \
         with each cluster mapped to its majority class, NMI with arithmetic normalization; \
         k-means runs on the same test images' grey levels. SBN: {} binary latents, linear \
         guide and decoder, learned Bernoulli prior; NVIL's baseline network has {} tanh units; \
         VIMCO k = {}; Concrete τ = max({}, {}·e^(−{} t)). Gradient variance: the mean over the \
         encoder weights of the variance of d(objective)/dV over {} draws on the first {} test \
         images, at each row's trained parameters (NVIL without its division by the running \
         standard deviation). NLL: k = {}.\n\n\
         | model | objective | test ELBO | NLL | cluster acc. | NMI | grad. variance | train img/s | seconds |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        GMVAE_SIZES.0,
        GMVAE_SIZES.2,
        GMVAE_SIZES.1,
        SBN_LATENTS,
        BASELINE_HIDDEN,
        VIMCO_K,
        CONCRETE.1,
        CONCRETE.0,
        CONCRETE.2,
        VARIANCE_DRAWS,
        VARIANCE_BATCH,
        run.eval_k,
    );
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |\n",
            r.model,
            r.objective,
            opt(r.test_elbo, 2),
            match (r.test_nll, r.test_nll_stderr) {
                (Some(n), Some(s)) => format!("{n:.2} ± {s:.2}"),
                _ => "–".into(),
            },
            opt(r.cluster_accuracy, 3),
            opt(r.cluster_nmi, 3),
            r.gradient_variance
                .map_or("–".into(), |v| format!("{v:.3e}")),
            opt(r.train_images_per_s, 0),
            r.seconds,
        ));
    }
    md
}

/// Writes `discrete.json` into `out` (rank 0).
///
/// # Errors
/// I/O errors.
pub fn write(out: &Path, rows: &[DiscreteRow]) -> Result<()> {
    common::write_json(out, "discrete.json", &serde_json::json!({ "rows": rows }))?;
    Ok(())
}
