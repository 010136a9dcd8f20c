//! Training throughput of the reference VAE (784-400-20, Bernoulli, Adam 1e-3, batch
//! 128, dynamic binarization) beside PyTorch's, in the same run.
//!
//! ```text
//! cargo bench --bench vae_throughput              # 2 epochs each
//! LATENT_BENCH_EPOCHS=5 cargo bench --bench vae_throughput
//! ```
//!
//! The PyTorch side runs `shared/anchors/run_torch_vae.sh` (beside the checkout, or
//! `$LATENT_TORCH_ANCHOR`) with 2 threads when it exists; it installs torch into a
//! throwaway virtual environment on first use. Data: full Fashion-MNIST when found
//! (as the examples find it), else the embedded subset (then PyTorch is skipped).
//! Prints images per second; nothing is asserted (speed is measured, not tested).

use std::path::PathBuf;
use std::process::Command;

use dfdx::prelude::*;
use latent::data::{discover, Binarization};
use latent::train::{fit, TrainConfig};
use latent::Elbo;
use latent_models::{mlp_vae, MlpVae};

fn main() {
    let epochs: usize = std::env::var("LATENT_BENCH_EPOCHS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let splits = match discover(None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("no data: {e}");
            return;
        }
    };
    println!(
        "data: {} ({} training images), {epochs} epochs",
        splits.source,
        splits.train.len()
    );

    let dev = AutoDevice::seed_from_u64(0);
    let mut model: MlpVae<784, 400, 20, f32, AutoDevice> = mlp_vae(&dev);
    let config = TrainConfig {
        epochs,
        binarization: Binarization::Dynamic,
        ..Default::default()
    };
    let test = splits.test.take(1000);
    let ours = match fit::<784, 20, f32, AutoDevice, _, _>(
        &mut model,
        &Elbo::default(),
        &splits.train,
        &test,
        &config,
        &dev,
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("training failed: {e}");
            return;
        }
    };
    let last = ours.epochs.last().map_or(f64::NAN, |m| m.test_elbo);
    println!(
        "latent  (dfdx {}): {:>8.0} images/s, test ELBO {last:.2} (first 1000 test images)",
        if cfg!(feature = "cuda") {
            "cuda"
        } else {
            "cpu"
        },
        ours.train_images_per_s
    );

    let anchor = std::env::var_os("LATENT_TORCH_ANCHOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/anchors/run_torch_vae.sh")
        });
    if splits.source == "embedded" || !anchor.exists() {
        println!(
            "pytorch: skipped (needs full Fashion-MNIST and {})",
            anchor.display()
        );
        return;
    }
    let out = Command::new("bash")
        .arg(&anchor)
        .arg(&splits.source)
        .arg(epochs.to_string())
        .arg("2")
        .arg("1")
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let ips = text
                .split_whitespace()
                .find_map(|w| w.strip_prefix("train_images_per_s="))
                .and_then(|v| v.parse::<f64>().ok());
            match ips {
                Some(t) => println!(
                    "pytorch (2 threads): {t:>8.0} images/s   → latent / pytorch = {:.2}",
                    ours.train_images_per_s / t
                ),
                None => println!("pytorch: could not read its output: {text}"),
            }
        }
        Ok(o) => println!("pytorch: failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => println!("pytorch: could not run {}: {e}", anchor.display()),
    }
}
