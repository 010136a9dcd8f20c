//! Swappable likelihood and prior heads of the VAE.

use dfdx::prelude::*;
use latent::data::embedded;
use latent::distributions::Distribution;
use latent::eval::evaluate;
use latent::heads::{
    ContinuousBernoulliHead, FixedGaussianHead, LearnedGaussianHead, LikelihoodHead, MixturePrior,
    StandardNormalPrior,
};
use latent::ops::to_f64_vec;
use latent::train::{fit, TrainConfig};
use latent::{Elbo, Error, KlEstimator};
use latent_models::{mlp_vae_with_heads, MlpVae};
use statrs::distribution::Continuous;

/// The device the suite runs on: the CPU, or the GPU with `--features cuda`
/// (`scripts/cuda-check.sh`).
#[cfg(not(feature = "cuda"))]
type Dev = Cpu;
#[cfg(feature = "cuda")]
type Dev = dfdx::tensor::Cuda;

#[test]
fn gaussian_heads_give_the_stated_densities() {
    let dev = Dev::default();
    let out = || dev.tensor_from_vec(vec![0.1, -0.3, 0.7, 1.5], (1, Const::<4>));
    let x = || dev.tensor_from_vec(vec![0.0, 0.2, 0.9, 1.0], (1, Const::<4>));
    let expected = |sigma: f64| -> f64 {
        [(0.1, 0.0), (-0.3, 0.2), (0.7, 0.9), (1.5, 1.0)]
            .iter()
            .map(|&(m, v)| {
                statrs::distribution::Normal::new(m, sigma)
                    .unwrap()
                    .ln_pdf(v)
            })
            .sum()
    };
    let fixed = FixedGaussianHead::new(0.3).unwrap();
    let lp = to_f64_vec(
        &LikelihoodHead::<Const<4>, f64, Dev, NoneTape>::distribution(&fixed, out())
            .unwrap()
            .log_prob(x())
            .unwrap(),
    )[0];
    assert!((lp - expected(0.3)).abs() < 1e-10);
    assert!(matches!(
        FixedGaussianHead::new(0.0),
        Err(Error::InvalidSetting { .. })
    ));

    let mut shared: LearnedGaussianHead<Const<1>, f64, Dev> = BuildModule::build(&dev);
    shared.log_scale.copy_from(&[0.5f64.ln()]);
    let lp = to_f64_vec(
        &LikelihoodHead::<Const<4>, f64, Dev, NoneTape>::distribution(&shared, out())
            .unwrap()
            .log_prob(x())
            .unwrap(),
    )[0];
    assert!((lp - expected(0.5)).abs() < 1e-10);

    let per_pixel: LearnedGaussianHead<Const<4>, f64, Dev> = BuildModule::build(&dev);
    let lp = to_f64_vec(
        &LikelihoodHead::<Const<4>, f64, Dev, NoneTape>::distribution(&per_pixel, out())
            .unwrap()
            .log_prob(x())
            .unwrap(),
    )[0];
    assert!((lp - expected(1.0)).abs() < 1e-10, "initialized to σ = 1");

    // Three scales (chosen at run time) for four pixels: a typed error.
    let wrong = LearnedGaussianHead::<usize, f64, Dev>::new(&dev, 3).unwrap();
    let out_rt = dev.tensor_from_vec(vec![0.1, -0.3, 0.7, 1.5], (1, 4usize));
    assert!(matches!(
        LikelihoodHead::<usize, f64, Dev, NoneTape>::distribution(&wrong, out_rt),
        Err(Error::ShapeMismatch { .. })
    ));
}

/// These models take their sizes at run time (`usize`), as the `vae` example does.
type RtVae<L, P> = MlpVae<usize, usize, usize, f32, Dev, L, P>;
type CbVae = RtVae<ContinuousBernoulliHead, StandardNormalPrior>;
type MixVae = RtVae<latent::heads::BernoulliHead, MixturePrior<usize, usize, f32, Dev>>;

/// An MLP VAE `784-256-10` with the given heads, sizes chosen at run time.
fn rt_vae<L, P>(dev: &Dev, likelihood: L, prior: P) -> RtVae<L, P> {
    mlp_vae_with_heads(dev, (784, 256, 10), likelihood, prior).unwrap()
}

/// A VAE with a learned mixture prior has no closed-form KL: Analytic is refused, Auto
/// falls back to Monte Carlo, and it trains (the prior's parameters move).
#[test]
fn mixture_prior_trains_with_the_monte_carlo_kl() {
    let dev = Dev::seed_from_u64(0);
    let prior = MixturePrior::new(&dev, 5, 10).unwrap();
    let mut model: MixVae = rt_vae(&dev, latent::heads::BernoulliHead, prior);
    let data = embedded().unwrap();
    let x = data
        .test
        .batch::<usize, f32, Dev>(&dev, &[0, 1, 2], None)
        .unwrap();
    let analytic = Elbo::new(1).unwrap().with_kl(KlEstimator::Analytic);
    assert!(matches!(
        analytic.estimate(&model, x),
        Err(Error::InvalidSetting { .. })
    ));
    let before_loc = model.prior.loc.as_vec();
    let train = data.train.take(1024);
    let test = data.test.take(200);
    let b = evaluate(&model, &Elbo::default(), &test, &dev, 200).unwrap();
    let config = TrainConfig {
        epochs: 2,
        ..Default::default()
    };
    fit(&mut model, &Elbo::default(), &train, &test, &config, &dev).unwrap();
    let a = evaluate(&model, &Elbo::default(), &test, &dev, 200).unwrap();
    assert!(a.elbo > b.elbo + 100.0, "ELBO {} → {}", b.elbo, a.elbo);
    assert!(a.kl > 0.0, "MC KL estimate {}", a.kl);
    assert_ne!(model.prior.loc.as_vec(), before_loc, "the prior is learned");
}

/// With the continuous Bernoulli on grey-level pixels the ELBO is a bound on a proper
/// log-density, which can be positive; one epoch improves it.
#[test]
fn continuous_bernoulli_vae_trains_on_grey_pixels() {
    let dev = Dev::seed_from_u64(1);
    let mut model: CbVae = rt_vae(&dev, ContinuousBernoulliHead, StandardNormalPrior);
    let data = embedded().unwrap();
    let test = data.test.take(300);
    let b = evaluate(&model, &Elbo::default(), &test, &dev, 300).unwrap();
    let config = TrainConfig {
        epochs: 1,
        ..Default::default()
    };
    fit(
        &mut model,
        &Elbo::default(),
        &data.train,
        &test,
        &config,
        &dev,
    )
    .unwrap();
    let a = evaluate(&model, &Elbo::default(), &test, &dev, 300).unwrap();
    assert!(
        a.elbo.is_finite() && a.elbo > b.elbo + 100.0,
        "ELBO {} → {}",
        b.elbo,
        a.elbo
    );
}
