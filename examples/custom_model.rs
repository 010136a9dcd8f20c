//! Defining your own latent-variable model: a VAE with the **VampPrior** (Tomczak &
//! Welling 2018, "VAE with a VampPrior"), which none of the built-in models is, written
//! only with `latent`'s public traits, trained and evaluated with its stock tools.
//!
//! ```text
//! cargo run --release --example custom_model -- --epochs 10
//! ```
//!
//! The VampPrior replaces `N(0, I)` by the mixture of the guide's own posteriors at `U`
//! learned pseudo-inputs `u_1..u_U` (their eq. 9):
//!
//! `p(z) = (1/U) Σ_k q(z | u_k)`.
//!
//! The prior thus shares the encoder with the guide and is learned with it. Its KL from
//! `q(z|x)` has no closed form, and nothing needs saying about it: the ELBO estimator
//! falls back to the Monte Carlo KL by itself.
//!
//! The walkthrough is in the comments, numbered. Writes `summary.json` and
//! `pseudo_inputs.png` (what the learned pseudo-inputs look like) into `--out`.

mod common;

use clap::Parser;
use common::RunArgs;
use dfdx::prelude::*;
use latent::data::Binarization;
use latent::eval::viz::save_image_grid;
use latent::eval::{evaluate, test_nll};
use latent::train::{fit, prepare_test, Describe};
// Steps 1–5, the model (the prelude's traits, the struct, `TensorCollection`,
// `LatentVariableModel`, the KL), are in `common/vamp.rs`, shared with the `generate`
// example, which opens these runs again.
#[path = "common/vamp.rs"]
mod vamp;
use latent::prelude::*;
use vamp::{VampVae, H, U, X, Z};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Dev = AutoDevice;

/// Train a VAE with a VampPrior on Fashion-MNIST.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    run: RunArgs,
}

fn main() {
    let args = Args::parse();
    common::main(|| run(&args));
}

fn run(args: &Args) -> Result<()> {
    let (r, out) = (&args.run, args.run.out_dir("custom_model"));
    let _claim = r.claim(&out)?;
    let splits = r.splits()?;
    // 6. Build it like any dfdx module, and train it with the stock trainer and ELBO.
    let dev = Dev::seed_from_u64(r.seed);
    let mut model: VampVae<f32, Dev> = VampVae::build(&dev);
    let config = latent::train::TrainConfig {
        model: Some(model.spec()),
        ..r.config(r.epochs(10), Binarization::Dynamic, out.clone())
    };
    let report = fit(
        &mut model,
        &Elbo::default(),
        &splits.train,
        &splits.test,
        &config,
        &dev,
    )?;

    // 7. Evaluate it with the stock tools: the ELBO (with the MC KL) and the
    //    importance-sampled NLL, which only needs `log p(z)` of the prior.
    let test = prepare_test(&splits.test, Binarization::Dynamic, r.seed);
    let elbo = evaluate(&model, &Elbo::default(), &test, &dev, 500)?;
    let nll = test_nll(&model, &test, &dev, &r.eval_options())?;
    let pseudo = model.pseudo_inputs.clone().sigmoid().as_vec();
    if common::leader() {
        save_image_grid(out.join("pseudo_inputs.png"), &pseudo, 28, 28, 10)?;
    }

    let summary = serde_json::json!({
        "model": format!("VAE {X}-{H}-{Z} with a VampPrior of {U} pseudo-inputs"),
        "dataset": splits.source,
        "epochs": config.epochs,
        "test_elbo": elbo.elbo,
        "test_reconstruction": elbo.reconstruction,
        "test_kl_monte_carlo": elbo.kl,
        "test_nll": nll.nll,
        "test_nll_stderr": nll.stderr,
        "test_nll_k": nll.k,
        "test_nll_n": nll.n,
        "train_images_per_s": report.train_images_per_s,
    });
    common::print(&common::write_json(&out, "summary.json", &summary)?);
    Ok(())
}
