//! The test NLL of a trained long-run model, from its checkpoint alone: the file
//! describes its model (guide, sizes), which is rebuilt, loaded and evaluated as
//! `long_run` evaluates its best epoch, on a device seeded with `--seed`, so the same
//! file, data, seed, `--eval-k`, `--eval-n` and thread count give `long_run`'s figures
//! bit for bit on the CPU.
//!
//! ```text
//! cargo run --release --example evaluate -- --checkpoint docs/long_run/hvae-vamp/best.safetensors \
//!     --eval-k 5000 --eval-n 0
//! ```
//!
//! Prints the test ELBO (every test image) and the importance-sampled NLL with its
//! standard error, with a progress bar and the time left; `--out FILE` also writes them
//! as JSON.

mod common;
#[path = "common/long_models.rs"]
mod long_models;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use latent::data::discover;
use latent::eval::EvalOptions;
use latent::{Error, Result};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Evaluate a long-run checkpoint's test NLL on dynamically binarized Fashion-MNIST.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The checkpoint (`best.safetensors` or `checkpoint.safetensors` of a long run).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Directory with the four IDX files, or `embedded` (default: `$LATENT_DATA`, then
    /// Debian's Fashion-MNIST, then the embedded subset).
    #[arg(long)]
    data: Option<String>,
    /// Seeds the test set's binarization and the importance samples (default: the
    /// run's seed, from the checkpoint).
    #[arg(long)]
    seed: Option<u64>,
    /// Importance samples per test image.
    #[arg(long, default_value_t = 5000)]
    eval_k: usize,
    /// Test images (the first ones of the split; 0: all).
    #[arg(long, default_value_t = 0)]
    eval_n: usize,
    /// CPU threads for the evaluation; 0: one per core.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
    /// Also write the figures to this JSON file.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    common::main(|| run(&args));
}

fn run(a: &Args) -> Result<()> {
    let start = Instant::now();
    let splits = discover(a.data.as_deref())?;
    if splits.test.dim() != 784 {
        return Err(Error::shape(
            "images",
            &[28, 28],
            &[splits.test.rows, splits.test.cols],
        ));
    }
    let options = EvalOptions {
        k: a.eval_k,
        n: (a.eval_n > 0).then_some(a.eval_n),
        threads: a.threads,
        progress: !a.quiet,
        ..Default::default()
    };
    let (model, seed, eval) =
        long_models::evaluate_checkpoint(&a.checkpoint, &splits.test, a.seed, &options)?;
    let summary = serde_json::json!({
        "checkpoint": a.checkpoint,
        "model": model.describe(),
        "dataset": splits.source,
        "seed": seed,
        "test_elbo": eval.elbo.elbo,
        "test_nll": eval.nll.nll, "test_nll_stderr": eval.nll.stderr,
        "test_nll_k": eval.nll.k, "test_nll_n": eval.nll.n,
        "seconds": start.elapsed().as_secs_f64(),
    });
    println!(
        "{}: test ELBO {:.3}, NLL {:.3} ± {:.3} nats (k = {}, {} images, seed {seed}, {:.0} s)",
        model.describe(),
        eval.elbo.elbo,
        eval.nll.nll,
        eval.nll.stderr,
        eval.nll.k,
        eval.nll.n,
        start.elapsed().as_secs_f64()
    );
    if let Some(out) = &a.out {
        let dir = out.parent().unwrap_or(std::path::Path::new("."));
        let name = out.file_name().map_or_else(
            || Err(Error::invalid("out", "names no file")),
            |n| Ok(n.to_string_lossy().to_string()),
        )?;
        common::write_json(dir, &name, &summary)?;
    }
    Ok(())
}
