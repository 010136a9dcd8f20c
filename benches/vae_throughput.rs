//! Training throughput of the reference VAE (784-400-20, Bernoulli, Adam 1e-3, batch
//! 128, dynamic binarization) beside PyTorch's, interleaved in the same run.
//!
//! ```text
//! cargo bench --bench vae_throughput              # 3 pairs of 2 epochs each
//! LATENT_BENCH_EPOCHS=5 LATENT_BENCH_PAIRS=5 cargo bench --bench vae_throughput
//! ```
//!
//! Runs `pairs` times: `latent` (2 threads: `TrainConfig::threads = 2`), then PyTorch
//! (`shared/anchors/run_torch_vae.sh` beside the checkout, or `$LATENT_TORCH_ANCHOR`,
//! 2 threads), and prints each run's images/s, each pair's ratio, and the median and
//! minimum ratio, with the CPU model and the SIMD level the matrix products dispatched
//! to. The anchor installs torch into a throwaway virtual environment on first use.
//! Data: full Fashion-MNIST when found (as the examples find it), else the embedded
//! subset (then PyTorch is skipped). Nothing is asserted (speed is measured, not
//! tested): this VM's speed drifts by ±30%, hence the interleaving.

use std::path::PathBuf;
use std::process::Command;

use dfdx::prelude::*;
use latent::data::{discover, Binarization, Splits};
use latent::train::{fit, TrainConfig};
use latent::Elbo;
use latent_models::{mlp_vae, MlpVae};

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

fn ours(splits: &Splits, epochs: usize) -> Option<(f64, f64)> {
    let dev = AutoDevice::seed_from_u64(0);
    let mut model: MlpVae<784, 400, 20, f32, AutoDevice> = mlp_vae(&dev);
    let config = TrainConfig {
        epochs,
        binarization: Binarization::Dynamic,
        threads: THREADS,
        ..Default::default()
    };
    let test = splits.test.take(1000);
    match fit::<784, 20, f32, AutoDevice, _, _>(
        &mut model,
        &Elbo::default(),
        &splits.train,
        &test,
        &config,
        &dev,
    ) {
        Ok(r) => Some((
            r.train_images_per_s,
            r.epochs.last().map_or(f64::NAN, |m| m.test_elbo),
        )),
        Err(e) => {
            eprintln!("training failed: {e}");
            None
        }
    }
}

fn torch(anchor: &PathBuf, data: &str, epochs: usize) -> Option<f64> {
    let out = Command::new("bash")
        .arg(anchor)
        .arg(data)
        .arg(epochs.to_string())
        .arg(THREADS.to_string())
        .arg("1")
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let ips = text
                .split_whitespace()
                .find_map(|w| w.strip_prefix("train_images_per_s="))
                .and_then(|v| v.parse::<f64>().ok());
            if ips.is_none() {
                println!("pytorch: could not read its output: {text}");
            }
            ips
        }
        Ok(o) => {
            println!("pytorch: failed: {}", String::from_utf8_lossy(&o.stderr));
            None
        }
        Err(e) => {
            println!("pytorch: could not run {}: {e}", anchor.display());
            None
        }
    }
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
    let anchor = std::env::var_os("LATENT_TORCH_ANCHOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/anchors/run_torch_vae.sh")
        });
    let with_torch = splits.source != "embedded" && anchor.exists();
    if !with_torch {
        println!(
            "pytorch: skipped (needs full Fashion-MNIST and {})",
            anchor.display()
        );
    }
    let mut ratios = Vec::new();
    for pair in 1..=pairs {
        let Some((ips, elbo)) = ours(&splits, epochs) else {
            return;
        };
        print!("pair {pair}: latent {ips:>8.0} images/s (test ELBO {elbo:.2})");
        if with_torch {
            if let Some(t) = torch(&anchor, &splits.source, epochs) {
                ratios.push(ips / t);
                print!("   pytorch {t:>8.0} images/s   ratio {:.2}", ips / t);
            }
        }
        println!();
    }
    if !ratios.is_empty() {
        ratios.sort_by(f64::total_cmp);
        let median = if ratios.len() % 2 == 1 {
            ratios[ratios.len() / 2]
        } else {
            (ratios[ratios.len() / 2 - 1] + ratios[ratios.len() / 2]) / 2.0
        };
        println!(
            "latent / pytorch over {} pairs: median {median:.2}, minimum {:.2}",
            ratios.len(),
            ratios[0]
        );
    }
}
