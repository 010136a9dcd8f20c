//! The conditional VAE (Sohn et al. 2015) on Fashion-MNIST, in its two uses:
//!
//! - **labels**: `y` is the one-hot class; `labels/samples.png` has one row per class
//!   (T-shirt/top first, ankle boot last), the same `z ~ N(0, I)` down each column, so
//!   the label sets the garment and `z` its style;
//! - **completion**: `y` is the top half of the image and `x` the bottom half;
//!   `completion/completions.png` shows, per column, a test image, then its top half
//!   completed by three draws `z ~ N(0, I)` (the mean of `p(x_bottom | z, y)`), and the
//!   summary reports the completion log-likelihood `log p(x_bottom | x_top)` on the test
//!   set (importance sampling, nats per image).
//!
//! ```text
//! cargo run --release --example cvae -- --epochs 10
//! ```
//!
//! Pixels are dynamically binarized (Bernoulli likelihood). Writes `summary.json` and
//! the pictures into `--out` (default `runs/cvae`).

mod common;

use clap::Parser;
use common::RunArgs;
use dfdx::prelude::*;
use latent::data::{Binarization, Conditioning, LabelCondition, TopRowsCondition};
use latent::eval::test_nll_conditional;
use latent::eval::viz::save_image_grid;
use latent::train::{fit_task, prepare_test, ConditionalTask, Describe, Task, TrainConfig};
use latent::{ConditionalModel, Distribution, Elbo, Error, Events, Result};
use latent_models::Cvae;
use serde::Serialize;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Dev = AutoDevice;
const H: usize = 400;
const Z: usize = 20;
/// Bottom and top halves of a 28×28 image.
const HALF: usize = 392;

/// Train the CVAE on class labels and on image completion.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    run: RunArgs,
}

/// What the run measured, nats per test image.
#[derive(Debug, Serialize)]
struct Summary {
    dataset: String,
    epochs: usize,
    /// Conditional ELBO of the label model, a bound on `log p(x | label)`.
    labels_test_elbo: f64,
    /// `−log p(x | label)` by importance sampling.
    labels_test_nll: f64,
    labels_test_nll_stderr: f64,
    /// Conditional ELBO of the completion model, a bound on `log p(x_bottom | x_top)`.
    completion_test_elbo: f64,
    /// The completion log-likelihood `log p(x_bottom | x_top)` (392 pixels).
    completion_test_log_likelihood: f64,
    completion_test_log_likelihood_stderr: f64,
    nll_k: usize,
    nll_n: usize,
}

fn main() {
    let args = Args::parse();
    common::main(|| run(&args));
}

fn run(args: &Args) -> Result<()> {
    let (r, out) = (&args.run, args.run.out_dir("cvae"));
    let _claim = r.claim(&out)?;
    let splits = r.splits()?;
    if (splits.train.rows, splits.train.cols) != (28, 28) {
        return Err(Error::shape(
            format!("images in {}", splits.source),
            &[28, 28],
            &[splits.train.rows, splits.train.cols],
        ));
    }
    let test = prepare_test(&splits.test, Binarization::Dynamic, r.seed);
    let options = r.eval_options();
    let epochs = r.epochs(10);
    let config = |dir: &str| r.config(epochs, Binarization::Dynamic, out.join(dir));

    // 1. Class-conditioned generation.
    let dev = Dev::seed_from_u64(r.seed);
    let mut labels: Cvae<Const<784>, Const<10>, Const<H>, Const<Z>, f32, Dev> =
        Cvae::new(&dev, (Const, Const, Const, Const))?;
    let mut task = ConditionalTask::new(Elbo::default(), LabelCondition);
    let spec = labels.spec().part("condition", "label");
    fit_task(
        &mut labels,
        &mut task,
        &splits.train,
        &splits.test,
        &TrainConfig {
            model: Some(spec),
            ..config("labels")
        },
        &dev,
    )?;
    let labels_elbo = task.evaluate(&labels, &test, &dev)?;
    let labels_nll = test_nll_conditional(&labels, &test, &dev, &options, &LabelCondition)?;
    let z: Tensor<(usize, Const<Z>), f32, Dev> = dev.sample_normal_like(&(10, Const));
    let z = latent::ops::repeat_rows(z, 10); // row c·10 + j holds z_j
    let mut y = vec![0.0f32; 100 * 10];
    for r in 0..100 {
        y[r * 10 + r / 10] = 1.0; // row c·10 + j has class c
    }
    let y = dev.tensor_from_vec(y, (100, Const));
    let grid = labels.likelihood(z, y)?.mean().as_vec();
    if common::leader() {
        save_image_grid(out.join("labels/samples.png"), &grid, 28, 28, 10)?;
    }

    // 2. Completion of the bottom half from the top half.
    let dev = Dev::seed_from_u64(r.seed);
    let condition = TopRowsCondition { rows: 14 };
    // Sizes chosen at run time here (the halves of the data's images).
    let mut completion: Cvae<usize, usize, usize, usize, f32, Dev> =
        Cvae::new(&dev, (HALF, HALF, H, Z))?;
    let mut task = ConditionalTask::new(Elbo::default(), condition);
    let spec = completion.spec().part("condition", "top-14-rows");
    fit_task(
        &mut completion,
        &mut task,
        &splits.train,
        &splits.test,
        &TrainConfig {
            model: Some(spec),
            ..config("completion")
        },
        &dev,
    )?;
    let completion_elbo = task.evaluate(&completion, &test, &dev)?;
    let completion_nll = test_nll_conditional(&completion, &test, &dev, &options, &condition)?;
    let cols = 10;
    let idx: Vec<usize> = (0..cols).collect();
    let (x_t, top_t): (Events<usize, f32, Dev>, Events<usize, f32, Dev>) =
        condition.tensors(&test, &idx, None, &dev)?;
    let (x, top) = (x_t.as_vec(), top_t.as_vec());
    let draws = 3;
    let z: Tensor<(usize, usize), f32, Dev> = dev.sample_normal_like(&(draws * cols, Z));
    let top_rep = latent::ops::repeat_rows(top_t, draws);
    let bottoms = completion.likelihood(z, top_rep)?.mean().as_vec();
    let mut picture = Vec::with_capacity((draws + 1) * cols * 784);
    for i in 0..cols {
        picture.extend_from_slice(&top[i * HALF..(i + 1) * HALF]);
        picture.extend_from_slice(&x[i * HALF..(i + 1) * HALF]);
    }
    for d in 0..draws {
        for i in 0..cols {
            picture.extend_from_slice(&top[i * HALF..(i + 1) * HALF]);
            let row = d * cols + i;
            picture.extend_from_slice(&bottoms[row * HALF..(row + 1) * HALF]);
        }
    }
    if common::leader() {
        save_image_grid(
            out.join("completion/completions.png"),
            &picture,
            28,
            28,
            cols,
        )?;
    }

    let summary = Summary {
        dataset: splits.source.clone(),
        epochs,
        labels_test_elbo: labels_elbo.elbo,
        labels_test_nll: labels_nll.nll,
        labels_test_nll_stderr: labels_nll.stderr,
        completion_test_elbo: completion_elbo.elbo,
        completion_test_log_likelihood: -completion_nll.nll,
        completion_test_log_likelihood_stderr: completion_nll.stderr,
        nll_k: completion_nll.k,
        nll_n: completion_nll.n,
    };
    common::print(&common::write_json(&out, "summary.json", &summary)?);
    Ok(())
}
