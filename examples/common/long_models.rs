//! The models of the long run, built from their names and sizes and opened again from
//! their checkpoints: what `long_run` trains and `evaluate` evaluates. A checkpoint
//! describes its model ([`latent::train::ModelSpec`]: kind `vae`, `flow-vae`,
//! `vamp-vae` or `hierarchical-vamp-vae`, sizes `x`, `h`, `z` or `z1` and `z2`, and `u`
//! (the pseudo-inputs), parts
//! `encoder = "gated"` and `guide`), so `evaluate` needs no flag but the file.

use std::path::Path;

use dfdx::prelude::*;
use latent::data::{Binarization, Dataset};
use latent::eval::{evaluate, test_nll, EvalOptions, EvalReport, NllReport};
use latent::flows::{IafGuide, PlanarGuide};
use latent::heads::{BernoulliHead, StandardNormalPrior};
use latent::train::{load_model_as, prepare_test, Describe, ModelSpec, ThreadSafe};
use latent::{DiagonalNormalGuide, Elbo, Error, LatentVariableModel, Result};
use latent_models::{gated_networks, gated_vae, FlowVae, HierarchicalVampVae, PseudoInit, VampVae};

pub type Dev = AutoDevice;

/// Planar steps of the `planar` guide; IAF steps of the `iaf` guide.
pub const PLANAR_STEPS: usize = 8;
pub const IAF_STEPS: usize = 2;

/// `--guide`: the family of `q(z|x)`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuideArg {
    /// A diagonal Normal (the paper's).
    Gaussian,
    /// A diagonal Normal and two IAF steps (context: the encoder's last layer).
    Iaf,
    /// A diagonal Normal and eight planar steps.
    Planar,
}

/// `--prior`: the prior `p(z)`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriorArg {
    /// `N(0, I)`.
    Standard,
    /// A VampPrior (Tomczak & Welling 2018): the guide's Gaussian part averaged over
    /// `--pseudo-inputs` learned pseudo-inputs (for a flow guide, its base Normal).
    Vamp,
}

/// `--model`: one stochastic layer or two.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelArg {
    /// One stochastic layer of `--latent-dim` dimensions.
    Vae,
    /// Two stochastic layers, `z1` (`--latent-dim`) under `z2` (`--top-latent-dim`),
    /// with a VampPrior on `z2` (`latent_models::HierarchicalVampVae`; Tomczak & Welling
    /// 2018's best configuration): needs `--prior vamp` and the Gaussian guide.
    Hvae,
}

/// A long-run model's kind, guide, prior and sizes `(x, h, z)` (for the `hvae`, `z` is
/// `z1`, and `top` is `z2`), and its pseudo-inputs `U` (0 without a VampPrior): what
/// its checkpoint records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongModel {
    pub model: ModelArg,
    pub top: usize,
    pub guide: GuideArg,
    pub prior: PriorArg,
    pub sizes: (usize, usize, usize),
    pub pseudo_inputs: usize,
}

/// What to do with a built model: a generic function over the model's type, which a
/// closure cannot be.
pub trait WithModel {
    /// The result.
    type Out;
    /// Runs on `model`, whose description (for its checkpoints) is `spec`.
    fn with<M>(self, model: M, spec: ModelSpec, device: &Dev) -> Result<Self::Out>
    where
        M: TensorCollection<f32, Dev>
            + LatentVariableModel<f32, Dev, OwnedTape<f32, Dev>, X = usize, Z = usize>
            + LatentVariableModel<f32, Dev, NoneTape, X = usize, Z = usize>
            + Describe
            + ThreadSafe;
}

impl LongModel {
    /// The model's name in the summaries.
    pub fn describe(&self) -> String {
        let (x, h, z) = self.sizes;
        let prior = match self.prior {
            PriorArg::Standard => "N(0, I)".to_string(),
            PriorArg::Vamp => format!("VampPrior with {} pseudo-inputs", self.pseudo_inputs),
        };
        match self.model {
            ModelArg::Vae => format!(
                "VAE {x}-{h}-{h}-{z} (gated), guide {:?}, prior {prior}",
                self.guide
            ),
            ModelArg::Hvae => format!(
                "two-level VAE {x}-{h}-{h}-({z}, {}) (gated), prior on z2 {prior}",
                self.top
            ),
        }
    }

    /// Builds the model on `device` (layers initialized as PyTorch's, pseudo-inputs as
    /// `init` says) and hands it to `job` with its description.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for a size of 0 or a bad initialization; `job`'s errors.
    pub fn build<W: WithModel>(&self, device: &Dev, init: &PseudoInit, job: W) -> Result<W::Out> {
        let (x, h, z) = self.sizes;
        if [x, h, z].contains(&0) {
            return Err(Error::invalid("hidden / latent-dim", "must be at least 1"));
        }
        let name = clap::ValueEnum::to_possible_value(&self.guide)
            .map_or_else(String::new, |v| v.get_name().to_string());
        let spec = |m: &dyn Describe| {
            m.spec()
                .size("h", h)
                .part("encoder", "gated")
                .part("guide", name.clone())
        };
        if self.model == ModelArg::Hvae {
            if self.prior != PriorArg::Vamp || self.guide != GuideArg::Gaussian {
                return Err(Error::invalid(
                    "--model hvae",
                    "has a VampPrior on z2 and Gaussian layers: pass --prior vamp and the gaussian guide",
                ));
            }
            let model =
                HierarchicalVampVae::new(device, (x, h, z, self.top), self.pseudo_inputs, init)?;
            let s = spec(&model);
            return job.with(model, s, device);
        }
        let (encoder, decoder) = gated_networks(device, (x, h, z))?;
        let u = (self.pseudo_inputs, x);
        macro_rules! finish {
            ($guide:expr) => {
                match self.prior {
                    PriorArg::Standard => {
                        let model =
                            FlowVae::new($guide, decoder, BernoulliHead, StandardNormalPrior);
                        let s = spec(&model);
                        job.with(model, s, device)
                    }
                    PriorArg::Vamp => {
                        let model = VampVae::new($guide, decoder, BernoulliHead, u, init, device)?;
                        let s = spec(&model);
                        job.with(model, s, device)
                    }
                }
            };
        }
        match self.guide {
            GuideArg::Gaussian => {
                if self.prior == PriorArg::Standard {
                    // The paper's model as `GatedVae` (its checkpoints' layout).
                    let model = gated_vae(device, (x, h, z))?;
                    let s = spec(&model);
                    return job.with(model, s, device);
                }
                let guide: DiagonalNormalGuide<_, usize, usize, f32, Dev> =
                    DiagonalNormalGuide::new(encoder, h, z, device)?;
                finish!(guide)
            }
            GuideArg::Iaf => {
                let guide: IafGuide<_, usize, usize, IAF_STEPS, f32, Dev> =
                    IafGuide::new(encoder, (h, z), h, h, device)?;
                finish!(guide)
            }
            GuideArg::Planar => {
                let guide: PlanarGuide<_, usize, usize, PLANAR_STEPS, f32, Dev> =
                    PlanarGuide::new(encoder, h, z, device)?;
                finish!(guide)
            }
        }
    }

    /// The long-run model a checkpoint's description names.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when `spec` is not a long-run model's.
    pub fn from_spec(path: &Path, spec: &ModelSpec) -> Result<Self> {
        let bad = |why: String| Error::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("not a long-run model: {why}"),
        };
        if spec.parts.get("encoder").map(String::as_str) != Some("gated") {
            return Err(bad(format!(
                "it describes a {:?} model without the gated encoder (parts {:?})",
                spec.kind, spec.parts
            )));
        }
        let guide = spec
            .parts
            .get("guide")
            .and_then(|g| <GuideArg as clap::ValueEnum>::from_str(g, false).ok())
            .ok_or_else(|| bad(format!("guide {:?}", spec.parts.get("guide"))))?;
        let size = |n: &str| {
            spec.sizes
                .get(n)
                .copied()
                .ok_or_else(|| bad(format!("no size {n}")))
        };
        if spec.kind == "hierarchical-vamp-vae" {
            return Ok(Self {
                model: ModelArg::Hvae,
                top: size("z2")?,
                guide,
                prior: PriorArg::Vamp,
                sizes: (size("x")?, size("h")?, size("z1")?),
                pseudo_inputs: size("u")?,
            });
        }
        let (prior, pseudo_inputs) = match spec.kind.as_str() {
            "vamp-vae" => (PriorArg::Vamp, size("u")?),
            _ => (PriorArg::Standard, 0),
        };
        Ok(Self {
            model: ModelArg::Vae,
            top: 0,
            guide,
            prior,
            sizes: (size("x")?, size("h")?, size("z")?),
            pseudo_inputs,
        })
    }
}

/// A checkpoint's figures on the test set.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub elbo: EvalReport,
    pub nll: NllReport,
}

/// Opens the long-run checkpoint at `path` on a device seeded with `seed` (`None`: the
/// run's own seed, from the checkpoint), binarizes `test` with it, and returns the model,
/// the seed and its test ELBO (every image) and importance-sampled NLL (`options`). The
/// same file, data, seed, options and thread count give the same figures bit for bit on
/// the CPU: `long_run` evaluates its best checkpoint this way.
///
/// # Errors
/// Checkpoint errors (unreadable, not a long-run model, a description that does not
/// match its tensors); evaluation errors.
pub fn evaluate_checkpoint(
    path: &Path,
    test: &Dataset,
    seed: Option<u64>,
    options: &EvalOptions,
) -> Result<(LongModel, u64, Evaluation)> {
    let meta = latent::train::read_checkpoint_meta(path)?.ok_or_else(|| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: "the file does not describe its model (no metadata)".into(),
    })?;
    let seed = seed.unwrap_or_else(|| meta.training.as_ref().map_or(0, |t| t.config.seed));
    let spec = meta.model.ok_or_else(|| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: "the checkpoint does not describe its model".into(),
    })?;
    let long = LongModel::from_spec(path, &spec)?;
    let device = Dev::seed_from_u64(seed);
    let test = prepare_test(test, Binarization::Dynamic, seed);
    let job = Evaluate {
        path,
        test: &test,
        options,
    };
    // The pseudo-inputs' initial values are overwritten by the checkpoint's.
    Ok((long, seed, long.build(&device, &PseudoInit::PAPER, job)?))
}

struct Evaluate<'a> {
    path: &'a Path,
    test: &'a Dataset,
    options: &'a EvalOptions,
}

impl WithModel for Evaluate<'_> {
    type Out = Evaluation;

    fn with<M>(self, mut model: M, spec: ModelSpec, device: &Dev) -> Result<Evaluation>
    where
        M: TensorCollection<f32, Dev>
            + LatentVariableModel<f32, Dev, OwnedTape<f32, Dev>, X = usize, Z = usize>
            + LatentVariableModel<f32, Dev, NoneTape, X = usize, Z = usize>
            + Describe
            + ThreadSafe,
    {
        load_model_as(&mut model, &spec, self.path)?;
        let elbo = evaluate(&model, &Elbo::default(), self.test, device, 500)?;
        let nll = test_nll(&model, self.test, device, self.options)?;
        Ok(Evaluation { elbo, nll })
    }
}
