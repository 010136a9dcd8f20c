//! The VAE with a VampPrior (Tomczak & Welling 2018), written only with `latent`'s
//! public traits: steps 1–5 of the `custom_model` walkthrough, shared with `generate`
//! (which opens its runs again).

#![allow(dead_code)] // each example uses the part it needs

use dfdx::prelude::*;
// 1. The prelude has the traits (`LatentVariableModel`, `Distribution`, …), the families
//    (`Normal`, `Bernoulli`, `MixtureOfDiagNormals`, …) and the estimators.
use latent::prelude::*;
use latent::train::{Describe, ModelSpec};
use latent_models::{MlpDecoder, MlpEncoder};

pub const X: usize = 784;
pub const H: usize = 400;
pub const Z: usize = 20;
/// The number of pseudo-inputs `U` (the paper uses 500 on MNIST).
pub const U: usize = 100;

// 2. The model is a plain struct of dfdx modules and tensors. We reuse the crate's
//    `DiagonalNormalGuide` (encoder + two linear heads → N(μ, σ²)) and the MLP pieces;
//    the pseudo-inputs are a trainable `(U, 784)` tensor of logits, squashed into
//    [0, 1] by a sigmoid so that they live where images do.
pub struct VampVae<E: Dtype, D: Storage<E>> {
    pub guide: DiagonalNormalGuide<MlpEncoder<Const<X>, Const<H>, E, D>, Const<H>, Const<Z>, E, D>,
    pub decoder: MlpDecoder<Const<X>, Const<H>, Const<Z>, E, D>,
    pub pseudo_inputs: Tensor<Rank2<U, X>, E, D>,
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
        let u = self.pseudo_inputs.retaped().sigmoid();
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

// What the checkpoints say this model is, so that `generate` can open them again and
// `load_model` can refuse a checkpoint of another model.
impl<E: Dtype, D: Storage<E>> Describe for VampVae<E, D> {
    fn spec(&self) -> ModelSpec {
        ModelSpec::new("vamp-vae")
            .size("x", X)
            .size("h", H)
            .size("z", Z)
            .size("u", U)
            .part("likelihood", "bernoulli")
            .part("prior", format!("vampprior(u={U})"))
    }
}
