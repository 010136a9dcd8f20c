//! Throughput beside PyTorch's, interleaved in the same run, on two threads each:
//! training the reference VAE (784-400-20, Bernoulli, Adam 1e-3, batch 128, dynamic
//! binarization), its importance-sampled test NLL (k = 1000 on the first 1000 test
//! images), and training the conv VQ-VAE (K = 256, DM = 16, EMA codebook).
//!
//! ```text
//! cargo bench --bench vae_throughput              # 3 pairs of each
//! LATENT_BENCH_EPOCHS=5 LATENT_BENCH_PAIRS=5 LATENT_BENCH_VQ_EPOCHS=2 cargo bench --bench vae_throughput
//! ```
//!
//! Runs `pairs` times: `latent` (`TrainConfig::threads = 2`), then PyTorch
//! (`benches/pytorch/reference_vae.py` through `benches/pytorch/run.sh`, or the runner
//! `$LATENT_TORCH_RUNNER` names; it also times its NLL evaluation), then the same for
//! the VQ-VAE (`benches/pytorch/conv_vqvae.py`, 1 epoch by default). Prints each run's
//! images/s, each pair's ratio, and the median and minimum ratio per comparison, with
//! the CPU model and the SIMD level the matrix products dispatched to. `run.sh` uses a
//! Python that imports torch, or installs `benches/pytorch/requirements.txt` into a
//! virtual environment of its own on first use.
//! Data: full Fashion-MNIST when found (as the examples find it), else the embedded
//! subset (then PyTorch is skipped). Nothing is asserted (speed is measured, not
//! tested): this VM's speed drifts by ±30%, hence the interleaving.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use dfdx::prelude::*;
use latent::data::{discover, Binarization, Splits};
use latent::eval::{test_nll, EvalOptions};
use latent::train::{fit, fit_task, prepare_test, TrainConfig};
use latent::Elbo;
use latent_models::{
    conv_vq_vae, mlp_vae, CodebookEma, CodebookUpdate, ConvVqVae, DeadCodeRestart, MlpVae,
    VqVaeTask,
};

const THREADS: usize = 2;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Both sides' settings: dynamic binarization, batch 128, Adam 1e-3, two threads.
fn config(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        binarization: Binarization::Dynamic,
        threads: THREADS,
        ..Default::default()
    }
}

/// Training images/s, test ELBO and IS-NLL images/s of the reference VAE.
fn ours(splits: &Splits, epochs: usize) -> Option<(f64, f64, f64)> {
    let dev = AutoDevice::seed_from_u64(0);
    let mut model: MlpVae<Const<784>, Const<400>, Const<20>, f32, AutoDevice> =
        mlp_vae(&dev, (Const, Const, Const)).unwrap();
    let config = config(epochs);
    let test = splits.test.take(1000);
    let report = fit(
        &mut model,
        &Elbo::default(),
        &splits.train,
        &test,
        &config,
        &dev,
    );
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("training failed: {e}");
            return None;
        }
    };
    let test = prepare_test(&test, Binarization::Dynamic, 0);
    let options = EvalOptions {
        k: 1000,
        threads: THREADS,
        ..Default::default()
    };
    let start = Instant::now();
    if let Err(e) = test_nll(&model, &test, &dev, &options) {
        eprintln!("evaluation failed: {e}");
        return None;
    }
    Some((
        report.train_images_per_s,
        report.epochs.last().map_or(f64::NAN, |m| m.test_elbo),
        test.len() as f64 / start.elapsed().as_secs_f64(),
    ))
}

/// Training images/s of the conv VQ-VAE, as the `compare` example trains it.
fn ours_vq(splits: &Splits, epochs: usize) -> Option<f64> {
    let dev = AutoDevice::seed_from_u64(0);
    let mut model: ConvVqVae<16, Const<256>, f32, AutoDevice> = conv_vq_vae(&dev, Const).ok()?;
    let task = CodebookEma::new(256, 16, 0.99, 1e-5)
        .and_then(|ema| VqVaeTask::<Const<784>>::new(0.25, CodebookUpdate::Ema(ema), 0))
        .and_then(|t| Ok(t.with_restarts(DeadCodeRestart::new(256, 0.03, 0.99)?)));
    let mut task = match task {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vq-vae setup failed: {e}");
            return None;
        }
    };
    let config = config(epochs);
    let test = splits.test.take(1000);
    match fit_task(&mut model, &mut task, &splits.train, &test, &config, &dev) {
        Ok(r) => Some(r.train_images_per_s),
        Err(e) => {
            eprintln!("vq-vae training failed: {e}");
            None
        }
    }
}

/// Runs a PyTorch script and reads the `key=value` numbers it prints.
fn torch(cmd: &mut Command, keys: &[&str]) -> Option<Vec<f64>> {
    match cmd.output() {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let values: Option<Vec<f64>> = keys
                .iter()
                .map(|k| {
                    text.split_whitespace()
                        .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
                        .and_then(|v| v.parse::<f64>().ok())
                })
                .collect();
            if values.is_none() {
                println!("pytorch: could not read {keys:?} in its output: {text}");
            }
            values
        }
        Ok(o) => {
            println!("pytorch: failed: {}", String::from_utf8_lossy(&o.stderr));
            None
        }
        Err(e) => {
            println!("pytorch: could not run: {e}");
            None
        }
    }
}

/// Prints the median and minimum of `ratios`.
fn summary(what: &str, ratios: &mut [f64]) {
    if ratios.is_empty() {
        return;
    }
    ratios.sort_by(f64::total_cmp);
    let n = ratios.len();
    let median = if n % 2 == 1 {
        ratios[n / 2]
    } else {
        (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0
    };
    println!(
        "{what}: latent / pytorch over {n} pairs: median {median:.2}, minimum {:.2}",
        ratios[0]
    );
}

fn main() {
    let epochs = env_usize("LATENT_BENCH_EPOCHS", 2);
    let pairs = env_usize("LATENT_BENCH_PAIRS", 3).max(1);
    let splits = match discover(None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("no data: {e}");
            return;
        }
    };
    println!(
        "data: {} ({} training images), {epochs} epochs per run, {pairs} pairs",
        splits.source,
        splits.train.len()
    );
    println!(
        "cpu: {} ({} logical cores); matrix products: {}; threads: latent {THREADS}, pytorch {THREADS}",
        cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        latent::kernels::simd_level()
    );
    let runner = std::env::var_os("LATENT_TORCH_RUNNER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/pytorch/run.sh")
        });
    let with_torch = splits.source != "embedded" && runner.exists();
    if !with_torch {
        println!(
            "pytorch: skipped (needs full Fashion-MNIST and {})",
            runner.display()
        );
    }
    let (mut train, mut nll, mut vq) = (Vec::new(), Vec::new(), Vec::new());
    println!(
        "reference VAE, {epochs} epochs per training run; IS-NLL k = 1000 on 1000 test images"
    );
    for pair in 1..=pairs {
        let Some((ips, elbo, eval)) = ours(&splits, epochs) else {
            return;
        };
        print!("pair {pair}: latent {ips:>8.0} images/s (test ELBO {elbo:.2}), NLL {eval:>5.1} images/s");
        if with_torch {
            let mut cmd = Command::new("bash");
            cmd.arg(&runner)
                .arg("vae")
                .arg(&splits.source)
                .arg(epochs.to_string())
                .arg(THREADS.to_string())
                .arg("1");
            if let Some(t) = torch(&mut cmd, &["train_images_per_s", "eval_nll_images_per_s"]) {
                train.push(ips / t[0]);
                nll.push(eval / t[1]);
                print!(
                    "   pytorch {:>8.0} images/s, NLL {:>5.1} images/s   ratios {:.2}, {:.2}",
                    t[0],
                    t[1],
                    ips / t[0],
                    eval / t[1]
                );
            }
        }
        println!();
    }
    let vq_epochs = env_usize("LATENT_BENCH_VQ_EPOCHS", 1);
    println!("conv VQ-VAE, {vq_epochs} epochs per run");
    for pair in 1..=pairs {
        let Some(ips) = ours_vq(&splits, vq_epochs) else {
            return;
        };
        print!("pair {pair}: latent {ips:>8.0} images/s");
        if with_torch {
            let mut cmd = Command::new("bash");
            cmd.arg(&runner)
                .arg("vqvae")
                .arg(&splits.source)
                .arg(vq_epochs.to_string())
                .arg(THREADS.to_string());
            if let Some(t) = torch(&mut cmd, &["train_images_per_s"]) {
                vq.push(ips / t[0]);
                print!(
                    "   pytorch {:>8.0} images/s   ratio {:.2}",
                    t[0],
                    ips / t[0]
                );
            }
        }
        println!();
    }
    summary("reference VAE training", &mut train);
    summary("IS-NLL evaluation (k = 1000)", &mut nll);
    summary("conv VQ-VAE training", &mut vq);
}
