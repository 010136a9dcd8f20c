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
use latent::eval::{evaluate, test_nll};
use latent::train::{fit, prepare_test};
use latent::viz::save_image_grid;
// 1. The prelude has the traits (`LatentVariableModel`, `Distribution`, …), the families
//    (`Normal`, `Bernoulli`, `MixtureOfDiagNormals`, …) and the estimators.
use latent::prelude::*;
use latent_models::{MlpDecoder, MlpEncoder};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Dev = AutoDevice;
const X: usize = 784;
const H: usize = 400;
const Z: usize = 20;
/// The number of pseudo-inputs `U` (the paper uses 500 on MNIST).
const U: usize = 100;

// 2. The model is a plain struct of dfdx modules and tensors. We reuse the crate's
//    `DiagonalNormalGuide` (encoder + two linear heads → N(μ, σ²)) and the MLP pieces;
//    the pseudo-inputs are a trainable `(U, 784)` tensor of logits, squashed into
//    [0, 1] by a sigmoid so that they live where images do.
struct VampVae<E: Dtype, D: Storage<E>> {
    guide: DiagonalNormalGuide<MlpEncoder<Const<X>, Const<H>, E, D>, Const<H>, Const<Z>, E, D>,
    decoder: MlpDecoder<Const<X>, Const<H>, Const<Z>, E, D>,
    pseudo_inputs: Tensor<Rank2<U, X>, E, D>,
}

// 3. `TensorCollection` tells dfdx (and so the optimizer, `zero_grads`, checkpoints)
//    where the parameters are, and how to initialize the ones that are ours.
impl<E: Real, D: Device<E>> TensorCollection<E, D> for VampVae<E, D> {
    type To<E2: Dtype, D2: Device<E2>> = VampVae<E2, D2>;

    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> std::result::Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("guide", |s| &s.guide, |s| &mut s.guide),
                Self::module("decoder", |s| &s.decoder, |s| &mut s.decoder),
                Self::tensor(
                    "pseudo_inputs",
                    |s| &s.pseudo_inputs,
                    |s| &mut s.pseudo_inputs,
                    // Logits in (−1.5, −0.5): mostly dark pixels, like the data, and
                    // different for each pseudo-input so the components start apart.
                    TensorOptions::reset_with(|t| {
                        let (lo, hi): (E, E) = (latent::ops::cst(-1.5), latent::ops::cst(-0.5));
                        t.try_fill_with_distr(rand_distr::Uniform::new(lo, hi))
                    }),
                ),
            ),
            |(guide, decoder, pseudo_inputs)| VampVae {
                guide,
                decoder,
                pseudo_inputs,
            },
        )
    }
}

// 4. The model itself: which families, and how to make them. Implement it for every
//    tape `T`, so that the same model trains (`OwnedTape`) and evaluates (`NoneTape`).
//    The sizes are fixed at compile time here (`Const`), so a guide and decoder that
//    do not fit together would not compile; `usize` would take them at run time.
impl<E, D, T> LatentVariableModel<E, D, T> for VampVae<E, D>
where
    E: Real,
    D: Device<E> + 'static,
    T: Tape<E, D> + 'static,
{
    type X = Const<X>;
    type Z = Const<Z>;
    type Posterior = Normal<Const<Z>, E, D, T>;
    type Prior = MixtureOfDiagNormals<Const<U>, Const<Z>, E, D, T>;
    type Likelihood = Bernoulli<Const<X>, E, D, T>;

    // q(z | x): the stock guide.
    fn guide(&self, x: Events<Const<X>, E, D, T>) -> Result<Self::Posterior> {
        self.guide.posterior(x)
    }

    // p(z) = (1/U) Σ_k q(z | u_k). The pseudo-inputs enter with a fresh tape of the
    // computation's type, so gradients reach them (and the encoder, a second time).
    fn prior(&self, batch: usize, _device: &D) -> Result<Self::Prior> {
        let u = self.pseudo_inputs.retaped::<T>().sigmoid();
        let u = u.reshape_like(&(U, Const));
        let q_u = self.guide.posterior(u)?;
        let rows = q_u.loc.shape().0;
        let shape_error = |_| Error::shape("VampPrior components", &[U, Z], &[rows, Z]);
        let loc = q_u.loc.try_realize().map_err(shape_error)?;
        let log_scale = q_u.log_scale.try_realize().map_err(shape_error)?;
        // Equal weights: constant zero logits.
        let logits = loc.device().zeros().retaped();
        MixtureOfDiagNormals::shared(batch, logits, loc, log_scale)
    }

    // p(x | z): Bernoulli pixels on the decoder's logits.
    fn likelihood(&self, z: Events<Const<Z>, E, D, T>) -> Result<Self::Likelihood> {
        Ok(Bernoulli::new(
            self.decoder.try_forward(z).map_err(Error::device)?,
        ))
    }

    // 5. `closed_form_kl` is not overridden: its default looks the pair
    //    (Normal, MixtureOfDiagNormals) up among the closed forms, finds none, and the
    //    ELBO estimates KL(q ‖ p) = E_q[log q(z|x) − log p(z)] on its own samples. A model
    //    whose pair had a closed form of its own would return it here.
}

/// Train a VAE with a VampPrior on Fashion-MNIST.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    run: RunArgs,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<()> {
    let (r, out) = (&args.run, args.run.out_dir("custom_model"));
    let _claim = r.claim(&out)?;
    let splits = r.splits()?;
    // 6. Build it like any dfdx module, and train it with the stock trainer and ELBO.
    let dev = Dev::seed_from_u64(r.seed);
    let mut model: VampVae<f32, Dev> = VampVae::build(&dev);
    let config = r.config(r.epochs(10), Binarization::Dynamic, out.clone());
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
    save_image_grid(out.join("pseudo_inputs.png"), &pseudo, 28, 28, 10)?;

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
    println!("{}", common::write_json(&out, "summary.json", &summary)?);
    Ok(())
}
