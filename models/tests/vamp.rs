//! The VampPrior VAE: its prior against the formula summed by hand with statrs, the
//! pseudo-inputs' clamp and gradients, its settings, and a checkpoint round trip.

use dfdx::nn::modules::ReLU;
use dfdx::prelude::*;
use latent::flows::PlanarGuide;
use latent::heads::BernoulliHead;
use latent::nn::Linear;
use latent::ops::to_f64_vec;
use latent::train::{load_model, save_checkpoint_with, CheckpointMeta, Describe};
use latent::{AmortizedGuide, DiagonalNormalGuide, Distribution, Elbo, Error, LatentVariableModel};
use latent_models::{GaussianPart, MlpDecoder, MlpEncoder, PseudoInit, VampVae};
use statrs::distribution::{Continuous, Normal as StatrsNormal};

#[cfg(not(feature = "cuda"))]
type Dev = Cpu;
#[cfg(feature = "cuda")]
type Dev = dfdx::tensor::Cuda;

const X: usize = 6;
const H: usize = 5;
const Z: usize = 3;
const U: usize = 4;

type Guide = DiagonalNormalGuide<MlpEncoder<usize, usize, f64, Dev>, usize, usize, f64, Dev>;
type Model = VampVae<Guide, MlpDecoder<usize, usize, usize, f64, Dev>, usize, usize, f64, Dev>;

fn decoder(dev: &Dev) -> MlpDecoder<usize, usize, usize, f64, Dev> {
    (
        Linear::new(dev, Z, H).unwrap(),
        ReLU,
        Linear::new(dev, H, X).unwrap(),
    )
}

/// The model with `u` pseudo-inputs.
fn model_with(dev: &Dev, u: usize, init: &PseudoInit) -> latent::Result<Model> {
    let guide = DiagonalNormalGuide::new((Linear::new(dev, X, H)?, ReLU), H, Z, dev)?;
    VampVae::new(guide, decoder(dev), BernoulliHead, (u, X), init, dev)
}

fn model(dev: &Dev, init: &PseudoInit) -> latent::Result<Model> {
    model_with(dev, U, init)
}

/// `log p(z) = log (1/U) Σ_u Π_d N(z_d; μ_ud, σ_ud)` with `(μ_u, σ_u)` the guide's
/// Normal at `clamp(x_u, 0, 1)`, summed in f64 with statrs densities.
fn prior_by_hand(m: &Model, z: &[f64]) -> f64 {
    let dev = m.pseudo_inputs.device().clone();
    let clamped: Vec<f64> = to_f64_vec(&m.pseudo_inputs)
        .iter()
        .map(|v| v.clamp(0.0, 1.0))
        .collect();
    let q = m
        .guide
        .gaussian_part(dev.tensor_from_vec(clamped, (U, X)))
        .unwrap();
    let (loc, log_scale) = (to_f64_vec(&q.loc), to_f64_vec(&q.log_scale));
    let density: f64 = (0..U)
        .map(|u| {
            (0..Z)
                .map(|d| {
                    StatrsNormal::new(loc[u * Z + d], log_scale[u * Z + d].exp())
                        .unwrap()
                        .pdf(z[d])
                })
                .product::<f64>()
        })
        .sum();
    (density / U as f64).ln()
}

#[test]
fn prior_is_the_guides_mixture_over_clamped_pseudo_inputs() {
    let dev = Dev::seed_from_u64(3);
    let mut m = model(&dev, &PseudoInit::PAPER).unwrap();
    // Some pixels outside [0, 1], so the clamp matters.
    let mut v = to_f64_vec(&m.pseudo_inputs);
    v[0] = -0.7;
    v[7] = 1.9;
    v[13] = 0.6;
    m.pseudo_inputs.copy_from(&v);
    let zs = [0.3, -1.2, 0.8, -0.1, 0.05, 2.0];
    let z = dev.tensor_from_vec(zs.to_vec(), (2, Z));
    let prior = <Model as LatentVariableModel<f64, Dev, NoneTape>>::prior(&m, 2, &dev).unwrap();
    let got = to_f64_vec(&prior.log_prob(z).unwrap());
    for (b, got) in got.iter().enumerate() {
        let want = prior_by_hand(&m, &zs[b * Z..(b + 1) * Z]);
        assert!((got - want).abs() < 1e-10, "example {b}: {got} vs {want}");
    }
}

#[test]
fn gradients_reach_the_pseudo_inputs_inside_the_clamp_only() {
    let dev = Dev::seed_from_u64(4);
    let mut m = model(&dev, &PseudoInit::PAPER).unwrap();
    let mut v = to_f64_vec(&m.pseudo_inputs);
    v[0] = -0.5; // clamped below
    v[1] = 1.5; // clamped above
    m.pseudo_inputs.copy_from(&v);
    let x: Tensor<(usize, usize), f64, Dev> = dev.tensor_from_vec(
        (0..2 * X).map(|i| (i % 3 == 0) as u8 as f64).collect(),
        (2, X),
    );
    let grads = m.alloc_grads();
    let terms = Elbo::default().estimate(&m, x.traced(grads)).unwrap();
    let g = terms.loss().backward();
    let gp = g.get(&m.pseudo_inputs).as_vec();
    assert_eq!((gp[0], gp[1]), (0.0, 0.0), "clamped pixels get no gradient");
    let inside = gp[2..].iter().filter(|v| v.abs() > 1e-12).count();
    assert!(
        inside > U * X / 2,
        "only {inside} pixels inside [0, 1] got a gradient"
    );
    // The guide's encoder gets gradients from the posterior and from the prior.
    assert!(g
        .get(&m.guide.encoder.0.weight)
        .as_vec()
        .iter()
        .any(|v| v.abs() > 0.0));
}

#[test]
fn paper_initialization_and_data_initialization() {
    let dev = Dev::seed_from_u64(5);
    let m = model(&dev, &PseudoInit::PAPER).unwrap();
    let v = to_f64_vec(&m.pseudo_inputs);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let sd = (v.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt();
    // 24 draws of N(0.05, 0.01²): the mean within 4 standard errors, the sd within 50%.
    assert!(
        (mean - 0.05).abs() < 4.0 * 0.01 / (v.len() as f64).sqrt(),
        "mean {mean}"
    );
    assert!((sd - 0.01).abs() < 0.005, "sd {sd}");
    let data: Vec<f64> = (0..U * X).map(|i| (i % 5) as f64 / 4.0).collect();
    let m = model(&dev, &PseudoInit::Data(data.clone())).unwrap();
    assert_eq!(to_f64_vec(&m.pseudo_inputs), data);
    assert_eq!(m.pseudo_count(), U);
}

#[test]
fn bad_settings_are_refused() {
    let dev = Dev::seed_from_u64(6);
    let refused =
        |init: PseudoInit| matches!(model(&dev, &init), Err(Error::InvalidSetting { .. }));
    assert!(refused(PseudoInit::Data(vec![0.5; U * X - 1])));
    assert!(refused(PseudoInit::Data(vec![1.5; U * X])));
    assert!(refused(PseudoInit::Random {
        mean: 0.05,
        std: -1.0
    }));
    assert!(refused(PseudoInit::Random {
        mean: f64::NAN,
        std: 0.01
    }));
    let none = model_with(&dev, 0, &PseudoInit::PAPER);
    assert!(matches!(none, Err(Error::InvalidSetting { .. })));
}

/// With a planar guide the prior's components are the guide's base Normal, while the
/// posterior is the flow: the ELBO's KL is the Monte Carlo `log q(z|x) − log p(z)`.
#[test]
fn planar_guide_uses_its_base_normal_as_components() {
    let dev = Dev::seed_from_u64(7);
    let encoder = (Linear::new(&dev, X, H).unwrap(), ReLU);
    let guide: PlanarGuide<_, usize, usize, 2, f64, Dev> =
        PlanarGuide::new(encoder, H, Z, &dev).unwrap();
    let m = VampVae::<_, _, usize, usize, f64, Dev>::new(
        guide,
        decoder(&dev),
        BernoulliHead,
        (U, X),
        &PseudoInit::PAPER,
        &dev,
    )
    .unwrap();
    let u = m.pseudo_inputs.clone();
    let base = m.guide.base.posterior(u.clone()).unwrap();
    let part = m.guide.gaussian_part(u).unwrap();
    assert_eq!(to_f64_vec(&base.loc), to_f64_vec(&part.loc));
    assert_eq!(to_f64_vec(&base.log_scale), to_f64_vec(&part.log_scale));
    let x: Tensor<(usize, usize), f64, Dev> = dev.tensor_from_vec(vec![1.0; 2 * X], (2, X));
    let terms = Elbo::default().estimate(&m, x).unwrap();
    assert!(to_f64_vec(&terms.elbo)
        .iter()
        .all(|v| v.is_finite() && *v < 0.0));
    assert!(m.spec().parts["guide"].starts_with("planar"));
}

#[test]
fn checkpoint_round_trip_and_refusal() {
    let dev = Dev::seed_from_u64(8);
    let m = model(&dev, &PseudoInit::PAPER).unwrap();
    let dir = tempfile_dir();
    let path = dir.join("vamp.safetensors");
    save_checkpoint_with(&m, &[], &CheckpointMeta::new(Some(m.spec())), &path).unwrap();
    let mut other = model(&Dev::seed_from_u64(9), &PseudoInit::PAPER).unwrap();
    assert_ne!(
        to_f64_vec(&other.pseudo_inputs),
        to_f64_vec(&m.pseudo_inputs)
    );
    load_model(&mut other, &path).unwrap();
    assert_eq!(
        to_f64_vec(&other.pseudo_inputs),
        to_f64_vec(&m.pseudo_inputs)
    );
    assert_eq!(m.spec().sizes["u"], U);
    // A model with another number of pseudo-inputs is refused before any tensor.
    let mut wider = model_with(&dev, U + 1, &PseudoInit::PAPER).unwrap();
    let err = load_model(&mut wider, &path).unwrap_err();
    assert!(err.to_string().contains("size u"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("latent-vamp-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
