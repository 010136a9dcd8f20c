//! The estimators on probabilistic PCA, whose log-likelihood, posterior and ELBO are
//! known exactly (in f64).

use dfdx::prelude::*;
use latent::ops::to_f64_vec;
use latent::{log_marginal_likelihood, log_weights, Elbo, ImportanceWeighted, KlEstimator};
use latent_models::LinearGaussian;
use statrs::distribution::Continuous;

/// The device the suite runs on: the CPU, or the GPU with `--features cuda`
/// (`scripts/cuda-check.sh`).
#[cfg(not(feature = "cuda"))]
type Dev = Cpu;
#[cfg(feature = "cuda")]
type Dev = dfdx::tensor::Cuda;
type Ppca = LinearGaussian<Const<4>, Const<2>, f64, Dev>;

// W has orthogonal columns, so the exact posterior is a diagonal Normal.
const W: [f64; 8] = [1.0, 0.0, 0.0, 2.0, 1.0, 0.0, 0.0, -1.0];
const B: [f64; 4] = [0.5, -0.5, 0.0, 1.0];
const SIGMA: f64 = 0.7;
const OBS: [f64; 4] = [1.2, -0.3, 0.8, 2.0];

fn model(dev: &Dev) -> Ppca {
    LinearGaussian::new(dev, (Const, Const), &W, &B, SIGMA).unwrap()
}

fn obs_batch(dev: &Dev, n: usize) -> Tensor<(usize, Const<4>), f64, Dev> {
    dev.tensor_from_vec(OBS.repeat(n), (n, Const::<4>))
}

fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

#[test]
fn exact_marginal_and_posterior_match_statrs_and_bayes() {
    let dev = Dev::default();
    let m = model(&dev);
    // C = W Wᵀ + σ² I.
    let mut cov = vec![0.0; 16];
    for i in 0..4 {
        for j in 0..4 {
            cov[i * 4 + j] = (0..2).map(|a| W[i * 2 + a] * W[j * 2 + a]).sum::<f64>();
        }
        cov[i * 4 + i] += SIGMA * SIGMA;
    }
    let mvn = statrs::distribution::MultivariateNormal::new(B.to_vec(), cov).unwrap();
    let expected = mvn.ln_pdf(&nalgebra::DVector::from_vec(OBS.to_vec()));
    let got = m.exact_log_marginal(&OBS).unwrap();
    assert!((got - expected).abs() < 1e-10, "{got} vs statrs {expected}");

    // Bayes: log p(x) = log p(x|z) + log p(z) − log p(z|x) at any z, here the posterior mean.
    let (mean, pcov) = m.exact_posterior(&OBS).unwrap();
    let lik = (0..4)
        .map(|i| {
            let loc = B[i] + (0..2).map(|a| W[i * 2 + a] * mean[a]).sum::<f64>();
            statrs::distribution::Normal::new(loc, SIGMA)
                .unwrap()
                .ln_pdf(OBS[i])
        })
        .sum::<f64>();
    let prior: f64 = mean
        .iter()
        .map(|z| {
            statrs::distribution::Normal::new(0.0, 1.0)
                .unwrap()
                .ln_pdf(*z)
        })
        .sum();
    let post = statrs::distribution::MultivariateNormal::new(mean.clone(), pcov)
        .unwrap()
        .ln_pdf(&nalgebra::DVector::from_vec(mean.clone()));
    assert!((lik + prior - post - got).abs() < 1e-10);
}

/// With the guide set to the exact posterior, every importance weight is p(x), so the
/// ELBO (with its Monte Carlo KL) equals log p(x) for every single draw.
#[test]
fn elbo_with_the_exact_posterior_equals_log_px_for_every_draw() {
    let dev = Dev::seed_from_u64(3);
    let mut m = model(&dev);
    m.set_guide_to_posterior().unwrap();
    let log_px = m.exact_log_marginal(&OBS).unwrap();

    let lw = to_f64_vec(&log_weights(&m, obs_batch(&dev, 3), 50).unwrap());
    assert_eq!(lw.len(), 150);
    for l in lw {
        assert!(
            (l - log_px).abs() < 1e-9,
            "log w = {l}, log p(x) = {log_px}"
        );
    }
    let elbo = Elbo::new(1).unwrap().with_kl(KlEstimator::MonteCarlo);
    let terms = elbo.estimate(&m, obs_batch(&dev, 100)).unwrap();
    for e in to_f64_vec(&terms.elbo) {
        assert!((e - log_px).abs() < 1e-9, "ELBO {e} vs log p(x) {log_px}");
    }
    // And the closed-form ELBO of the exact posterior is log p(x) too.
    let exact = to_f64_vec(&m.exact_elbo(obs_batch(&dev, 1)).unwrap())[0];
    assert!((exact - log_px).abs() < 1e-9, "exact ELBO {exact}");
    // A non-orthogonal W has no diagonal posterior: refused with a typed error.
    let mut skew = Ppca::new(
        &dev,
        (Const, Const),
        &[1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0],
        &B,
        SIGMA,
    )
    .unwrap();
    assert!(matches!(
        skew.set_guide_to_posterior(),
        Err(latent::Error::InvalidSetting { .. })
    ));
}

/// Burda et al. 2015, Theorem 1: ELBO ≤ IWAE_k ≤ IWAE_k' ≤ log p(x) for k < k', in
/// expectation, for an imperfect guide (here the prior). Each gap is required to be
/// positive by more than 3 standard errors of the difference of the means.
#[test]
fn importance_weighted_bounds_are_ordered() {
    let dev = Dev::seed_from_u64(5);
    let m = model(&dev);
    let log_px = m.exact_log_marginal(&OBS).unwrap();
    let reps = 4000;
    let estimate = |k: usize| {
        let v = to_f64_vec(
            &ImportanceWeighted::new(k)
                .unwrap()
                .estimate(&m, obs_batch(&dev, reps))
                .unwrap(),
        );
        mean_se(&v)
    };
    let elbo = {
        let t = Elbo::new(1)
            .unwrap()
            .estimate(&m, obs_batch(&dev, reps))
            .unwrap();
        mean_se(&to_f64_vec(&t.elbo))
    };
    // The exact ELBO of this guide, for reference.
    let exact_elbo = to_f64_vec(&m.exact_elbo(obs_batch(&dev, 1)).unwrap())[0];
    assert!(
        (elbo.0 - exact_elbo).abs() < 5.0 * elbo.1,
        "MC ELBO {elbo:?} vs exact {exact_elbo}"
    );

    let chain = [elbo, estimate(2), estimate(10), estimate(100)];
    for pair in chain.windows(2) {
        let ((a, sa), (b, sb)) = (pair[0], pair[1]);
        let se = (sa * sa + sb * sb).sqrt();
        assert!(
            b - a > 3.0 * se,
            "not increasing: {a} ± {sa} then {b} ± {sb}"
        );
    }
    let (last, se) = chain[3];
    assert!(
        last < log_px + 3.0 * se,
        "IWAE_100 {last} above log p(x) {log_px}"
    );
}

/// The importance-sampled log p(x) converges: at k = 5000 it is within 3 of its own
/// standard errors of the exact value, and the error shrinks from k = 50.
#[test]
fn is_estimate_converges_to_log_px() {
    let dev = Dev::seed_from_u64(9);
    let m = model(&dev);
    let log_px = m.exact_log_marginal(&OBS).unwrap();
    let x = obs_batch(&dev, 1);
    let ll = log_marginal_likelihood(&m, &x, 5000, 512).unwrap();
    let (est, se) = (ll.log_px[0], ll.stderr[0]);
    assert!(se > 0.0 && se < 0.1, "stderr {se}");
    assert!(
        (est - log_px).abs() < 3.0 * se,
        "IS {est} ± {se} vs exact {log_px}"
    );

    // Over 200 repetitions the mean absolute error at k = 50 exceeds that at k = 5000.
    let small = log_marginal_likelihood(&m, &obs_batch(&dev, 200), 50, 50).unwrap();
    let big = log_marginal_likelihood(&m, &obs_batch(&dev, 200), 5000, 1000).unwrap();
    let mae = |v: &[f64]| v.iter().map(|e| (e - log_px).abs()).sum::<f64>() / v.len() as f64;
    assert!(
        mae(&big.log_px) < 0.5 * mae(&small.log_px),
        "{} vs {}",
        mae(&big.log_px),
        mae(&small.log_px)
    );
}

/// Streaming in chunks gives the same estimate as one pass over the same draws.
#[test]
fn chunked_and_unchunked_estimates_agree() {
    let x = obs_batch(&Dev::default(), 7);
    let run = |chunk: usize| {
        let dev = Dev::seed_from_u64(21);
        let x = dev.tensor_from_vec(x.as_vec(), (7, Const::<4>));
        let m = Ppca::new(&dev, (Const, Const), &W, &B, SIGMA).unwrap();
        log_marginal_likelihood(&m, &x, 1000, chunk).unwrap()
    };
    let whole = run(1000);
    for chunk in [1, 7, 100, 333] {
        let part = run(chunk);
        for i in 0..7 {
            assert!(
                (part.log_px[i] - whole.log_px[i]).abs() < 1e-12,
                "chunk {chunk}"
            );
            assert!(
                (part.stderr[i] - whole.stderr[i]).abs() < 1e-10,
                "chunk {chunk}"
            );
        }
    }
    // Different draws give different estimates (the comparison above is not vacuous).
    let other = {
        let dev = Dev::seed_from_u64(22);
        let x = dev.tensor_from_vec(x.as_vec(), (7, Const::<4>));
        let m = Ppca::new(&dev, (Const, Const), &W, &B, SIGMA).unwrap();
        log_marginal_likelihood(&m, &x, 1000, 1000).unwrap()
    };
    assert!((other.log_px[0] - whole.log_px[0]).abs() > 1e-9);
}

/// The reparameterized ELBO gradient (one sample, closed-form KL) is unbiased: its mean
/// over many draws matches the gradient of the exact ELBO within standard error.
#[test]
fn elbo_gradient_is_unbiased() {
    let dev = Dev::seed_from_u64(13);
    let mut m = model(&dev);
    // An imperfect guide with non-trivial parameters.
    m.encoder
        .weight
        .copy_from(&[0.3, -0.1, 0.2, 0.0, 0.1, 0.4, -0.2, 0.1]);
    m.encoder.bias.copy_from(&[0.1, -0.2]);
    m.guide_log_scale.copy_from(&[-0.5, -0.3]);

    let grad_of = |g: &Gradients<f64, Dev>, m: &Ppca| -> Vec<f64> {
        let mut out = Vec::new();
        out.extend(to_f64_vec(&g.get(&m.encoder.weight)));
        out.extend(to_f64_vec(&g.get(&m.encoder.bias)));
        out.extend(to_f64_vec(&g.get(&m.guide_log_scale)));
        out.extend(to_f64_vec(&g.get(&m.decoder.weight)));
        out
    };

    let exact = {
        let g = m.alloc_grads();
        let e = m.exact_elbo(obs_batch(&dev, 1).traced(g)).unwrap();
        grad_of(&e.sum::<(), _>().backward(), &m)
    };
    // 40 groups, each the mean gradient over a batch of 250 independent draws.
    let groups: Vec<Vec<f64>> = (0..40)
        .map(|_| {
            let g = m.alloc_grads();
            let t = Elbo::new(1)
                .unwrap()
                .estimate(&m, obs_batch(&dev, 250).traced(g))
                .unwrap();
            grad_of(&t.objective.mean::<(), _>().backward(), &m)
        })
        .collect();
    let mut nonzero = 0;
    for (p, &ex) in exact.iter().enumerate() {
        let v: Vec<f64> = groups.iter().map(|g| g[p]).collect();
        let (mean, se) = mean_se(&v);
        assert!(
            (mean - ex).abs() < 4.0 * se + 1e-12,
            "parameter {p}: MC {mean} ± {se}, exact {ex}"
        );
        if ex.abs() > 1e-3 {
            nonzero += 1;
        }
    }
    assert!(nonzero >= 10, "the check must involve non-zero gradients");
}

/// The same probabilistic PCA with its sizes chosen at run time: with the guide set to
/// the exact posterior, every log importance weight and the (Monte Carlo KL) ELBO equal the exact
/// `log p(x)` (closed form), as for the compiled sizes.
#[test]
fn run_time_sized_ppca_is_exact_with_the_exact_posterior() {
    let dev = Dev::seed_from_u64(5);
    let mut m: LinearGaussian<usize, usize, f64, Dev> =
        LinearGaussian::new(&dev, (4, 2), &W, &B, SIGMA).unwrap();
    m.set_guide_to_posterior().unwrap();
    let log_px = m.exact_log_marginal(&OBS).unwrap();
    assert!((log_px - model(&dev).exact_log_marginal(&OBS).unwrap()).abs() < 1e-12);
    let x = dev.tensor_from_vec(OBS.repeat(3), (3, 4usize));
    for l in to_f64_vec(&log_weights(&m, x.clone(), 20).unwrap()) {
        assert!(
            (l - log_px).abs() < 1e-9,
            "log w = {l}, log p(x) = {log_px}"
        );
    }
    // With the Monte Carlo KL the ELBO of the exact posterior is log p(x) for every draw.
    let elbo = Elbo::new(1).unwrap().with_kl(KlEstimator::MonteCarlo);
    for e in to_f64_vec(&elbo.estimate(&m, x).unwrap().elbo) {
        assert!((e - log_px).abs() < 1e-9, "ELBO {e} vs log p(x) {log_px}");
    }
    assert!(matches!(
        LinearGaussian::<usize, usize, f64, Dev>::new(&dev, (4, 2), &W[..6], &B, SIGMA),
        Err(latent::Error::ShapeMismatch { .. })
    ));
}
