//! What each model of the zoo says about itself in its checkpoints ([`Describe`]):
//! kind, sizes and parts, checked by [`latent::train::load_model`].

use dfdx::prelude::*;
use latent::nn::Linear;
use latent::train::{Describe, ModelSpec, Named};
use latent::Real;

use crate::flow_vae::DecoderWidth;
use crate::{Cvae, GatedDecoder, GatedVae, GmVae, LinearGaussian, MlpVae, SbnVae, VqVae};

/// `kind = "vae"`, sizes `x`, `h`, `z`, parts `likelihood`, `prior`, `encoder = "mlp"`,
/// and `input` when the encoder reads a transform of `x`.
impl<X: Dim, H: Dim, Z: Dim, E: Real, D: Device<E>, Lik: Named, Pri: Named> Describe
    for MlpVae<X, H, Z, E, D, Lik, Pri>
{
    fn spec(&self) -> ModelSpec {
        let first: &Linear<X, H, E, D> = &self.guide.encoder.0;
        let spec = ModelSpec::new("vae")
            .size("x", first.inputs().size())
            .size("h", first.outputs().size())
            .size("z", self.guide.loc.outputs().size())
            .part("encoder", "mlp")
            .part("likelihood", self.likelihood.name())
            .part("prior", self.prior.name());
        // Recorded only when set, so that specs (and checkpoints) of models that read x
        // as it is are unchanged.
        match self.input {
            crate::InputTransform::Identity => spec,
            other => spec.part("input", other.name()),
        }
    }
}

/// `kind = "cvae"`, sizes `x`, `y`, `h`, `z`, parts `likelihood`, `prior`.
impl<X: Dim, Y: Dim, H: Dim, Z: Dim, E: Real, D: Device<E>, Pri: Named, Lik: Named> Describe
    for Cvae<X, Y, H, Z, E, D, Pri, Lik>
{
    fn spec(&self) -> ModelSpec {
        let joint = &self.guide.encoder;
        ModelSpec::new("cvae")
            .size("x", joint.a.inputs().size())
            .size("y", joint.b.inputs().size())
            .size("h", joint.a.outputs().size())
            .size("z", self.guide.loc.outputs().size())
            .part("likelihood", self.likelihood.name())
            .part("prior", self.prior.name())
    }
}

/// `kind = "vq-vae"`, sizes `k` (codes) and `dm` (code dimension), part
/// `likelihood`. The networks around the codebook are not described: loading checks
/// their tensors' names and shapes.
impl<Enc, Dec, K: Dim, DM: Dim, E: Real, D: Device<E>, Lik: Named> Describe
    for VqVae<Enc, Dec, K, DM, E, D, Lik>
{
    fn spec(&self) -> ModelSpec {
        let (k, dm) = *self.quantizer.codebook.shape();
        ModelSpec::new("vq-vae")
            .size("k", k.size())
            .size("dm", dm.size())
            .part("likelihood", self.likelihood.name())
    }
}

/// `kind = "linear-gaussian"`, sizes `x`, `z`.
impl<X: Dim, Z: Dim, E: Real, D: Device<E>> Describe for LinearGaussian<X, Z, E, D> {
    fn spec(&self) -> ModelSpec {
        ModelSpec::new("linear-gaussian")
            .size("x", self.decoder.outputs().size())
            .size("z", self.decoder.inputs().size())
    }
}

/// `kind = "vae"`, sizes `x`, `h`, `z`, parts `likelihood`, `prior`, `encoder = "gated"`.
impl<X: Dim, H: Dim, Z: Dim, E: Real, D: Device<E>, Lik: Named, Pri: Named> Describe
    for GatedVae<X, H, Z, E, D, Lik, Pri>
{
    fn spec(&self) -> ModelSpec {
        let first = &self.guide.encoder.0;
        ModelSpec::new("vae")
            .size("x", first.inputs().size())
            .size("h", first.outputs().size())
            .size("z", self.guide.loc.outputs().size())
            .part("encoder", "gated")
            .part("likelihood", self.likelihood.name())
            .part("prior", self.prior.name())
    }
}

/// `kind = "sbn-vae"`, sizes `x`, `z` (binary latents) and `baseline_h` (the baseline
/// network's hidden units).
impl<X: Dim, Z: Dim, E: Real, D: Device<E>> Describe for SbnVae<X, Z, E, D> {
    fn spec(&self) -> ModelSpec {
        ModelSpec::new("sbn-vae")
            .size("x", self.encoder.inputs().size())
            .size("z", self.encoder.outputs().size())
            .size("baseline_h", self.baseline.0.outputs())
    }
}

/// `kind = "gmvae"`, sizes `x`, `k` (clusters), `h`, `z`.
impl<X: Dim, K: Dim, H: Dim, Z: Dim, E: Real, D: Device<E>> Describe for GmVae<X, K, H, Z, E, D> {
    fn spec(&self) -> ModelSpec {
        ModelSpec::new("gmvae")
            .size("x", self.cluster.0.inputs().size())
            .size("k", self.clusters().size())
            .size("h", self.cluster.0.outputs().size())
            .size("z", self.guide.loc.outputs().size())
    }
}

impl<X: Dim, H: Dim, Z: Dim, E: Dtype, D: Storage<E>> DecoderWidth for GatedDecoder<X, H, Z, E, D> {
    fn output_width(&self) -> usize {
        self.2.weight.shape().0.size()
    }
}
