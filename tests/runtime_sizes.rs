//! Event sizes chosen at run time: the families and KL divergences take any dfdx
//! `Dim` as their event size, so `usize` (a width known only when the program runs,
//! e.g. a CSV's column count) works through the same code as `Const<N>`. The values are
//! checked against statrs and closed forms, and a width that disagrees is a typed
//! error, not a panic inside dfdx.
#![allow(clippy::needless_range_loop)] // parallel arrays are indexed together

use dfdx::prelude::*;
use latent::distributions::{
    Bernoulli, Categorical, Distribution, Entropy, Laplace, MixtureOfDiagNormals, Normal,
    Reparameterizable, StandardNormal,
};
use latent::ops::to_f64_vec;
use latent::{Error, KlDivergence};
use statrs::distribution::{Continuous, Discrete};

/// The device the suite runs on: the CPU, or the GPU with `--features cuda`
/// (`scripts/cuda-check.sh`).
#[cfg(not(feature = "cuda"))]
type Dev = Cpu;
#[cfg(feature = "cuda")]
type Dev = dfdx::tensor::Cuda;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Seven coordinates, a number no model in the crate compiles in.
const W: usize = 7;

fn values(n: usize, scale: f64, shift: f64) -> Vec<f64> {
    (0..n)
        .map(|i| ((i * 37 % 11) as f64 / 11.0 - 0.5) * scale + shift)
        .collect()
}

#[test]
fn normal_with_a_run_time_width_matches_statrs() {
    let dev = Dev::default();
    let (loc, sd, x) = (
        values(2 * W, 4.0, 0.3),
        values(2 * W, 1.0, 1.2),
        values(2 * W, 6.0, -0.1),
    );
    let q: Normal<usize, f64, Dev> = Normal::from_host(&dev, W, &loc, &sd).unwrap();
    assert_eq!(q.loc.shape(), &(2, W));
    let lp = to_f64_vec(&q.log_prob(dev.tensor_from_vec(x.clone(), (2, W))).unwrap());
    for b in 0..2 {
        let expected: f64 = (0..W)
            .map(|i| {
                let k = b * W + i;
                statrs::distribution::Normal::new(loc[k], sd[k])
                    .unwrap()
                    .ln_pdf(x[k])
            })
            .sum();
        assert!(close(lp[b], expected), "{} vs {expected}", lp[b]);
    }
}

#[test]
fn run_time_width_gives_the_same_values_as_the_compiled_one() {
    let dev = Dev::seed_from_u64(3);
    let (loc, sd) = (values(3 * W, 2.0, 0.0), values(3 * W, 0.5, 1.0));
    let x = values(3 * W, 3.0, 0.2);
    let dynamic: Normal<usize, f64, Dev> = Normal::from_host(&dev, W, &loc, &sd).unwrap();
    let fixed: Normal<Const<W>, f64, Dev> = Normal::from_host(&dev, Const, &loc, &sd).unwrap();
    let a = to_f64_vec(
        &dynamic
            .log_prob(dev.tensor_from_vec(x.clone(), (3, W)))
            .unwrap(),
    );
    let b = to_f64_vec(
        &fixed
            .log_prob(dev.tensor_from_vec(x, (3, Const::<W>)))
            .unwrap(),
    );
    assert_eq!(a, b);
}

#[test]
fn kl_and_entropy_with_a_run_time_width_match_the_closed_forms() {
    let dev = Dev::default();
    let (loc, sd) = (values(2 * W, 3.0, 0.5), values(2 * W, 0.8, 1.0));
    let q: Normal<usize, f64, Dev> = Normal::from_host(&dev, W, &loc, &sd).unwrap();
    let p = StandardNormal::<usize, f64, Dev>::new(2, W, &dev);
    let kl = to_f64_vec(&q.fork().kl_divergence(p).unwrap());
    let h = to_f64_vec(&q.entropy());
    for b in 0..2 {
        // KL(N(μ, σ²) ‖ N(0, 1)) = ½ Σ (μ² + σ² − 1 − ln σ²)  (Kingma & Welling 2014, App. B)
        let (mut expected_kl, mut expected_h) = (0.0, 0.0);
        for i in 0..W {
            let (m, s) = (loc[b * W + i], sd[b * W + i]);
            expected_kl += 0.5 * (m * m + s * s - 1.0 - (s * s).ln());
            expected_h += statrs::statistics::Distribution::entropy(
                &statrs::distribution::Normal::new(m, s).unwrap(),
            )
            .unwrap();
        }
        assert!(close(kl[b], expected_kl), "{} vs {expected_kl}", kl[b]);
        assert!(close(h[b], expected_h), "{} vs {expected_h}", h[b]);
    }
}

#[test]
fn rsample_gradients_reach_run_time_parameters() {
    let dev = Dev::seed_from_u64(1);
    let loc: Tensor<(usize, usize), f64, Dev> = dev.tensor_from_vec(values(W, 1.0, 0.0), (1, W));
    let log_scale: Tensor<(usize, usize), f64, Dev> = dev.zeros_like(&(1, W));
    let q = Normal::new(loc.leaky_trace(), log_scale.retaped()).unwrap();
    // d/dμ Σ z = 1 for every coordinate, since z = μ + σ ε.
    let g = q.rsample().sum().backward();
    assert!(g
        .get(&loc)
        .as_vec()
        .iter()
        .all(|&v| (v - 1.0).abs() < 1e-12));
}

#[test]
fn discrete_and_mixture_families_take_run_time_widths() {
    let dev = Dev::default();
    // Categorical over 5 classes, one-hot events.
    let probs = [0.1, 0.2, 0.3, 0.15, 0.25];
    let c: Categorical<usize, f64, Dev> = Categorical::from_probs(&dev, 5, &probs).unwrap();
    let mut onehot = vec![0.0; 5];
    onehot[2] = 1.0;
    let lp = to_f64_vec(&c.log_prob(dev.tensor_from_vec(onehot, (1, 5))).unwrap())[0];
    let expected = statrs::distribution::Categorical::new(&probs)
        .unwrap()
        .ln_pmf(2);
    assert!(close(lp, expected), "{lp} vs {expected}");

    // Bernoulli over W pixels.
    let logits = values(W, 4.0, 0.0);
    let x: Vec<f64> = (0..W).map(|i| (i % 2) as f64).collect();
    let bern = Bernoulli::new(dev.tensor_from_vec(logits.clone(), (1, W)));
    let lp = to_f64_vec(
        &bern
            .log_prob(dev.tensor_from_vec(x.clone(), (1, W)))
            .unwrap(),
    )[0];
    let expected: f64 = (0..W)
        .map(|i| {
            let p = 1.0 / (1.0 + (-logits[i]).exp());
            statrs::distribution::Bernoulli::new(p)
                .unwrap()
                .ln_pmf(x[i] as u64)
        })
        .sum();
    assert!(close(lp, expected), "{lp} vs {expected}");

    // A mixture of 3 Normals over W coordinates with one component carrying all the
    // weight is that component.
    let (k, loc, sd) = (3usize, values(3 * W, 2.0, 0.0), values(3 * W, 0.5, 1.0));
    let logits = dev.tensor_from_vec(vec![0.0, 80.0, 0.0], (k,));
    let mix = MixtureOfDiagNormals::<usize, usize, f64, Dev>::shared(
        1,
        logits,
        dev.tensor_from_vec(loc.clone(), (k, W)),
        dev.tensor_from_vec(sd.iter().map(|s| s.ln()).collect(), (k, W)),
    )
    .unwrap();
    let x = values(W, 1.0, 0.1);
    let lp = to_f64_vec(
        &mix.log_prob(dev.tensor_from_vec(x.clone(), (1, W)))
            .unwrap(),
    )[0];
    let expected: f64 = (0..W)
        .map(|i| {
            statrs::distribution::Normal::new(loc[W + i], sd[W + i])
                .unwrap()
                .ln_pdf(x[i])
        })
        .sum();
    assert!((lp - expected).abs() < 1e-9, "{lp} vs {expected}");

    let l: Laplace<usize, f64, Dev> = Laplace::from_host(&dev, W, &loc[..W], &sd[..W]).unwrap();
    assert_eq!(l.sample().shape(), &(1, W));
}

#[test]
fn a_width_that_disagrees_is_a_typed_error() {
    let dev = Dev::default();
    let q: Normal<usize, f64, Dev> =
        Normal::from_host(&dev, W, &values(W, 1.0, 0.0), &values(W, 0.1, 1.0)).unwrap();
    let x: Tensor<(usize, usize), f64, Dev> = dev.zeros_like(&(1, W - 2));
    assert!(matches!(
        q.fork().log_prob(x),
        Err(Error::ShapeMismatch { .. })
    ));
    let p = StandardNormal::<usize, f64, Dev>::new(1, W + 1, &dev);
    assert!(matches!(
        q.fork().kl_divergence(p),
        Err(Error::ShapeMismatch { .. })
    ));
    let loc: Tensor<(usize, usize), f64, Dev> = dev.zeros_like(&(1, W));
    let log_scale: Tensor<(usize, usize), f64, Dev> = dev.zeros_like(&(1, W + 1));
    assert!(matches!(
        Normal::new(loc, log_scale),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        Normal::<usize, f64, Dev>::from_host(&dev, 0, &[], &[]),
        Err(Error::NotAMultiple { multiple_of: 0, .. })
    ));
    // The shapes travel as numbers: (batch, width) expected and found.
    match q.fork().log_prob(dev.zeros_like(&(1, W - 2))) {
        Err(Error::ShapeMismatch {
            expected, found, ..
        }) => {
            assert_eq!((expected, found), (vec![1, W], vec![1, W - 2]));
        }
        other => panic!("expected a shape mismatch, got {:?}", other.err()),
    }
}

/// A tabular model whose width is only known at run time: 13 real-valued columns
/// driven by 2 latent factors, `x = A z + b + 0.1 ε`. A VAE `13-32-2` with a learned
/// per-column Gaussian likelihood, built and trained at `usize` sizes with the stock
/// ELBO and Adam, must beat the best independent-columns Gaussian on held-out rows and
/// may not beat the true generating density by more than the sampling noise (Gibbs'
/// inequality: `E_p[log q] ≤ E_p[log p]`); it comes within 3 nats of it.
#[test]
fn a_tabular_vae_of_run_time_width_learns_the_correlations() {
    use dfdx::nn::modules::ReLU;
    use latent::heads::{LearnedGaussianHead, StandardNormalPrior};
    use latent::nn::Linear;
    use latent::train::optim::Adam;
    use latent::Elbo;
    use latent_models::Vae;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal as Eps;

    let (cols, latent, hidden) = (13usize, 2usize, 32usize);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let a: Vec<f64> = (0..cols * latent)
        .map(|_| rng.sample::<f64, _>(Eps))
        .collect();
    let b: Vec<f64> = (0..cols).map(|j| j as f64 * 0.1 - 0.6).collect();
    let noise = 0.1;
    let draw = |rng: &mut rand::rngs::StdRng, n: usize| -> Vec<f64> {
        let mut out = Vec::with_capacity(n * cols);
        for _ in 0..n {
            let z: Vec<f64> = (0..latent).map(|_| rng.sample(Eps)).collect();
            for j in 0..cols {
                let signal: f64 = (0..latent).map(|k| a[j * latent + k] * z[k]).sum();
                out.push(signal + b[j] + noise * rng.sample::<f64, _>(Eps));
            }
        }
        out
    };
    let (train, test) = (draw(&mut rng, 2000), draw(&mut rng, 500));

    // Baselines on the test rows, nats per row: the best independent Gaussian per
    // column (fitted on the training rows) and the true density N(b, AAᵀ + σ²I).
    let n_train = (train.len() / cols) as f64;
    let mut independent = 0.0;
    for j in 0..cols {
        let m = train.iter().skip(j).step_by(cols).sum::<f64>() / n_train;
        let v = train
            .iter()
            .skip(j)
            .step_by(cols)
            .map(|x| (x - m).powi(2))
            .sum::<f64>()
            / n_train;
        let d = statrs::distribution::Normal::new(m, v.sqrt()).unwrap();
        independent += test
            .iter()
            .skip(j)
            .step_by(cols)
            .map(|&x| d.ln_pdf(x))
            .sum::<f64>();
    }
    let n_test = (test.len() / cols) as f64;
    independent /= n_test;
    let am = nalgebra::DMatrix::from_row_slice(cols, latent, &a);
    let cov = &am * am.transpose() + nalgebra::DMatrix::identity(cols, cols) * noise * noise;
    let truth =
        statrs::distribution::MultivariateNormal::new(b.clone(), cov.as_slice().to_vec()).unwrap();
    let true_ll: f64 = test
        .chunks(cols)
        .map(|row| truth.ln_pdf(&nalgebra::DVector::from_row_slice(row)))
        .sum::<f64>()
        / n_test;

    let dev = Dev::seed_from_u64(3);
    let mut model = Vae::with_heads(
        (
            Linear::<usize, usize, f64, Dev>::new(&dev, cols, hidden).unwrap(),
            ReLU,
        ),
        (
            Linear::<usize, usize, f64, Dev>::new(&dev, latent, hidden).unwrap(),
            ReLU,
            Linear::<usize, usize, f64, Dev>::new(&dev, hidden, cols).unwrap(),
        ),
        LearnedGaussianHead::<usize, f64, Dev>::new(&dev, cols).unwrap(),
        StandardNormalPrior,
        (hidden, latent),
        &dev,
    )
    .unwrap();
    let cfg = dfdx::optim::AdamConfig {
        lr: 5e-3,
        ..Default::default()
    };
    let mut opt = Adam::new(&model, cfg, 1).unwrap();
    let mut grads = model.alloc_grads();
    let elbo = Elbo::default();
    for _epoch in 0..60 {
        for chunk in train.chunks(100 * cols) {
            let x = dev.tensor_from_vec(chunk.to_vec(), (chunk.len() / cols, cols));
            let terms = elbo.estimate(&model, x.traced(grads)).unwrap();
            grads = terms.loss().backward();
            opt.update(&mut model, &mut grads).unwrap();
        }
    }
    let x = dev.tensor_from_vec(test.clone(), (test.len() / cols, cols));
    let test_elbo = to_f64_vec(&elbo.estimate(&model, x).unwrap().elbo)
        .iter()
        .sum::<f64>()
        / n_test;
    eprintln!("ELBO {test_elbo:.2}, independent {independent:.2}, true {true_ll:.2}");
    // Seen: ELBO 2.84, independent −23.62, true 3.80 nats per row.
    assert!(
        test_elbo > independent + 5.0 && test_elbo > true_ll - 3.0,
        "ELBO {test_elbo:.2} vs independent columns {independent:.2} (true {true_ll:.2})"
    );
    assert!(
        test_elbo < true_ll + 1.0,
        "ELBO {test_elbo:.2} above the true log-density {true_ll:.2}"
    );
}
