//! Normalizing flows: the change-of-variables density against exact answers.
//!
//! - a flow's density is normalized: the importance estimates `E_{y~q}[r(y)/q(y)]` of
//!   `∫ r = 1` (planar, `log q` from the forward pass) and `E_{y~r}[q(y)/r(y)]` of
//!   `∫ q = 1` (IAF, `log q` through the inverse) are 1 within 5 standard errors;
//! - an IAF step's `log_prob` through its inverse equals `log q` from the forward pass;
//! - on probabilistic PCA (exact `log p(x)` from statrs), a flow guide's importance
//!   sampled `log p̂(x)` converges to the exact value and its ELBO stays below it;
//! - a flow VAE's gradient reaches the flow's heads and training lowers its loss.

use dfdx::prelude::*;
use latent::distributions::{Distribution, Normal, Reparameterizable, StandardNormal};
use latent::flows::{Bijector, IafStep, Made, Planar, TransformedDistribution};
use latent::ops::{to_f64_vec, Events, PerExample};
use latent::{log_marginal_likelihood, Elbo, Error, LatentVariableModel, Result};
use latent_models::LinearGaussian;

/// The device the suite runs on: the CPU, or the GPU with `--features cuda`
/// (`scripts/cuda-check.sh`).
#[cfg(not(feature = "cuda"))]
type Dev = Cpu;
#[cfg(feature = "cuda")]
type Dev = dfdx::tensor::Cuda;

fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

fn rows<const N: usize>(dev: &Dev, row: [f64; N], n: usize) -> Events<Const<N>, f64, Dev> {
    dev.tensor_from_vec(row.repeat(n), (n, Const::<N>))
}

fn base(dev: &Dev, n: usize) -> Normal<Const<2>, f64, Dev> {
    Normal::new(
        rows(dev, [0.3, -0.2], n),
        rows(dev, [0.8f64.ln(), 1.1f64.ln()], n),
    )
    .unwrap()
}

fn planar(dev: &Dev, n: usize, u: [f64; 2], w: [f64; 2], b: f64) -> Planar<Const<2>, f64, Dev> {
    Planar::new(
        rows(dev, u, n),
        rows(dev, w, n),
        dev.tensor_from_vec(vec![b; n], (n,)),
    )
    .unwrap()
}

fn iaf(dev: &Dev, n: usize, seed: u64, reversed: bool) -> IafStep<Const<2>, f64, Dev> {
    let made = Made::new(&Dev::seed_from_u64(seed), Const::<2>, 6, 2).unwrap();
    IafStep::new(
        made,
        dev.tensor_from_vec([0.7, -1.2].repeat(n), (n, 2)),
        reversed,
    )
    .unwrap()
}

/// `E_{y~q}[r(y)/q(y)] = ∫ r = 1` for `r = N(0, 1.5² I)`, with `log q` from
/// `rsample_with_log_prob`: a sign error or a missing term in `log |det|` biases it.
fn integrates_to_one<F>(q: TransformedDistribution<Normal<Const<2>, f64, Dev>, F>)
where
    F: latent::flows::Bijector<Const<2>, f64, Dev, Tape = NoneTape>,
{
    let (y, log_q) = q.rsample_with_log_prob().unwrap();
    let r: PerExample<f64, Dev> = Normal::new(
        y.device().zeros_like(y.shape()),
        y.device().ones_like(y.shape()) * 1.5f64.ln(),
    )
    .unwrap()
    .log_prob(y)
    .unwrap();
    let ratios: Vec<f64> = to_f64_vec(&(r - log_q)).iter().map(|l| l.exp()).collect();
    let (m, se) = mean_se(&ratios);
    assert!((m - 1.0).abs() < 5.0 * se, "∫ r estimated as {m} ± {se}");
    assert!(se < 0.02, "the check is too weak: se {se}");
}

#[test]
fn planar_flow_density_is_normalized() {
    let dev = Dev::seed_from_u64(11);
    let n = 200_000;
    let steps = vec![
        planar(&dev, n, [1.5, -0.5], [0.7, 0.4], 0.2),
        planar(&dev, n, [-0.8, 1.0], [-0.3, 0.9], -0.4),
    ];
    integrates_to_one(TransformedDistribution::new(base(&dev, n), steps).unwrap());
}

/// `E_{y~r}[q(y)/r(y)] = ∫ q = 1` for a broad `r = N(0, 3² I)` (bounded ratios), with
/// `log q` through the IAF steps' inverse.
#[test]
fn iaf_flow_density_is_normalized() {
    let dev = Dev::seed_from_u64(12);
    let n = 200_000;
    let steps = vec![iaf(&dev, n, 1, false), iaf(&dev, n, 2, true)];
    let q = TransformedDistribution::new(base(&dev, n), steps).unwrap();
    let r: Normal<Const<2>, f64, Dev> =
        Normal::new(rows(&dev, [0.0, 0.0], n), rows(&dev, [3f64.ln(); 2], n)).unwrap();
    let y = r.sample();
    let log_r = r.log_prob(y.clone()).unwrap();
    let log_q = q.log_prob(y).unwrap();
    let ratios: Vec<f64> = to_f64_vec(&(log_q - log_r))
        .iter()
        .map(|l| l.exp())
        .collect();
    let (m, se) = mean_se(&ratios);
    assert!((m - 1.0).abs() < 5.0 * se, "∫ q estimated as {m} ± {se}");
    assert!(se < 0.02, "the check is too weak: se {se}");
}

#[test]
fn iaf_log_prob_through_the_inverse_equals_the_forward_log_q() {
    let dev = Dev::seed_from_u64(13);
    let q = || {
        TransformedDistribution::new(
            base(&dev, 64),
            vec![iaf(&dev, 64, 3, false), iaf(&dev, 64, 4, true)],
        )
        .unwrap()
    };
    let (y, log_q) = q().rsample_with_log_prob().unwrap();
    let by_inverse = q().log_prob(y).unwrap();
    for (a, b) in to_f64_vec(&log_q).iter().zip(to_f64_vec(&by_inverse)) {
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }
}

#[test]
fn planar_log_prob_is_unsupported_not_a_panic() {
    let dev = Dev::default();
    let q =
        TransformedDistribution::new(base(&dev, 2), planar(&dev, 2, [1.0, 0.0], [1.0, 1.0], 0.0))
            .unwrap();
    let y = rows(&dev, [0.0, 0.0], 2);
    assert!(matches!(q.log_prob(y), Err(Error::Unsupported { .. })));
    let wrong = planar(&dev, 3, [1.0, 0.0], [1.0, 1.0], 0.0);
    assert!(matches!(
        TransformedDistribution::new(base(&dev, 2), wrong),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn flow_mean_is_the_mean_of_its_draws() {
    // `mean` (no closed form) averages 64 draws: within 5 of its standard errors
    // (sd / 8) of the mean of 200,000 draws of the same non-trivial flow.
    let dev = Dev::seed_from_u64(14);
    let q = |n: usize| {
        TransformedDistribution::new(base(&dev, n), planar(&dev, n, [1.5, -0.5], [0.7, 0.4], 0.2))
            .unwrap()
    };
    let draws = to_f64_vec(&q(200_000).sample());
    for j in 0..2 {
        let col: Vec<f64> = draws.iter().skip(j).step_by(2).copied().collect();
        let (mean, se) = mean_se(&col);
        let sd = se * (col.len() as f64).sqrt();
        let m = to_f64_vec(&q(1).mean())[j];
        assert!(
            (m - mean).abs() < 5.0 * sd / 8.0 + 5.0 * se,
            "coordinate {j}: {m} vs {mean}"
        );
    }
}

// Probabilistic PCA (exact log p(x)) with a guide of a Normal and a planar step.
type Ppca = LinearGaussian<Const<4>, Const<2>, f64, Dev>;
const W: [f64; 8] = [1.0, 0.0, 0.0, 2.0, 1.0, 0.0, 0.0, -1.0];
const B: [f64; 4] = [0.5, -0.5, 0.0, 1.0];
const OBS: [f64; 4] = [1.2, -0.3, 0.8, 2.0];

struct FlowGuided(Ppca);

impl<T: Tape<f64, Dev> + 'static> LatentVariableModel<f64, Dev, T> for FlowGuided {
    type X = Const<4>;
    type Z = Const<2>;
    type Posterior =
        TransformedDistribution<Normal<Const<2>, f64, Dev, T>, Planar<Const<2>, f64, Dev, T>>;
    type Prior = StandardNormal<Const<2>, f64, Dev, T>;
    type Likelihood = <Ppca as LatentVariableModel<f64, Dev, T>>::Likelihood;

    fn guide(&self, x: Events<Const<4>, f64, Dev, T>) -> Result<Self::Posterior> {
        // Not amortized: one fixed q for the one observation, near its posterior.
        let n = x.shape().0;
        let dev = x.device().clone();
        let t = |e: Events<Const<2>, f64, Dev>| e.put_tape(T::default());
        let base = Normal::new(t(rows(&dev, [0.6, 0.4], n)), t(rows(&dev, [-0.5, -1.0], n)))?;
        let step = Planar::new(
            t(rows(&dev, [0.3, -0.2], n)),
            t(rows(&dev, [1.0, 0.5], n)),
            dev.tensor_from_vec(vec![0.1; n], (n,))
                .put_tape(T::default()),
        )?;
        TransformedDistribution::new(base, step)
    }
    fn prior(&self, batch: usize, device: &Dev) -> Result<Self::Prior> {
        LatentVariableModel::<f64, Dev, T>::prior(&self.0, batch, device)
    }
    fn likelihood(&self, z: Events<Const<2>, f64, Dev, T>) -> Result<Self::Likelihood> {
        LatentVariableModel::<f64, Dev, T>::likelihood(&self.0, z)
    }
}

#[test]
fn flow_guide_estimates_the_exact_log_likelihood_of_ppca() {
    let dev = Dev::seed_from_u64(15);
    let ppca: Ppca = LinearGaussian::new(&dev, (Const, Const), &W, &B, 0.7).unwrap();
    let exact = ppca.exact_log_marginal(&OBS).unwrap();
    let model = FlowGuided(ppca);
    let x = rows(&dev, OBS, 1);
    let ll = log_marginal_likelihood(&model, &x, 200_000, 10_000).unwrap();
    let (est, se) = (ll.log_px[0], ll.stderr[0]);
    assert!(se < 0.01, "se {se}");
    assert!(
        (est - exact).abs() < 5.0 * se + 1e-3,
        "IS {est} ± {se} vs exact {exact}"
    );
    // The ELBO (Monte Carlo KL through the flow's log q) is a lower bound, and strictly
    // below: q is not the posterior.
    let elbo = Elbo::new(20_000).unwrap().estimate(&model, x).unwrap();
    let e = to_f64_vec(&elbo.elbo)[0];
    assert!(e < exact - 0.01, "ELBO {e} vs log p(x) {exact}");
    assert!(e > exact - 5.0, "ELBO {e} implausibly far below {exact}");
}

#[test]
fn flow_vae_trains_and_its_flow_gets_gradients() {
    use latent::train::{fit, TrainConfig};
    use latent_models::{iaf_vae, planar_vae, IafVae, PlanarVae};
    let dev = Dev::seed_from_u64(16);
    let data = latent::data::embedded().unwrap().train.take(512);
    let config = TrainConfig {
        epochs: 3,
        batch_size: 64,
        threads: 1,
        binarization: latent::data::Binarization::Dynamic,
        ..Default::default()
    };
    let mut planar: PlanarVae<usize, usize, usize, 2, f32, Dev> =
        planar_vae(&dev, (784, 32, 4)).unwrap();
    let before = planar.guide.u[1].weight.as_vec();
    let report = fit(&mut planar, &Elbo::default(), &data, &data, &config, &dev).unwrap();
    assert_ne!(
        before,
        planar.guide.u[1].weight.as_vec(),
        "the flow's heads did not move"
    );
    let losses: Vec<f64> = report.epochs.iter().map(|e| e.train_loss).collect();
    assert!(losses[2] < losses[0], "{losses:?}");

    let mut iaf: IafVae<usize, usize, usize, 2, f32, Dev> =
        iaf_vae(&dev, (784, 32, 4), 8, 8).unwrap();
    let before = iaf.guide.steps[1].gate.weight.as_vec();
    let report = fit(&mut iaf, &Elbo::default(), &data, &data, &config, &dev).unwrap();
    assert_ne!(
        before,
        iaf.guide.steps[1].gate.weight.as_vec(),
        "the MADE did not move"
    );
    let losses: Vec<f64> = report.epochs.iter().map(|e| e.train_loss).collect();
    assert!(losses[2] < losses[0], "{losses:?}");
}

/// The MADE's masked products (the fused `linear` on the masked weights): the
/// gradients of `Σ y + Σ log|det|` of an IAF step with respect to `W₁`, `W_m` and `W_s`
/// equal central finite differences, and the masked-out entries get none.
#[test]
fn made_weight_gradients_match_finite_differences() {
    let dev = Dev::seed_from_u64(21);
    let made = Made::new(&Dev::seed_from_u64(5), Const::<3>, 6, 2).unwrap();
    let z = dev.tensor_from_vec(
        vec![
            0.3, -1.1, 0.8, 1.5, 0.2, -0.4, -0.9, 0.6, 0.1, 0.05, -0.3, 1.2,
        ],
        (4, Const::<3>),
    );
    let ctx = dev.tensor_from_vec(vec![0.7, -1.2, 0.4, 0.9, -0.5, 0.3, 1.1, -0.8], (4, 2));
    let value = |made: &Made<Const<3>, f64, Dev>, reversed: bool| -> f64 {
        let step = IafStep::new(made.clone(), ctx.clone(), reversed).unwrap();
        let (y, log_det) = step.forward(z.clone());
        y.sum::<(), _>().array() + log_det.sum::<(), _>().array()
    };
    for reversed in [false, true] {
        let step = IafStep::new(
            made.clone(),
            ctx.clone().put_tape(OwnedTape::default()),
            reversed,
        )
        .unwrap();
        let (y, log_det) = step.forward(z.leaky_trace());
        let g = (y.sum::<(), _>() + log_det.sum::<(), _>()).backward();
        for (name, which) in [("W1", 0), ("Wm", 1), ("Ws", 2)] {
            let auto = match which {
                0 => g.get(&made.input.weight).as_vec(),
                1 => g.get(&made.shift.weight).as_vec(),
                _ => g.get(&made.gate.weight).as_vec(),
            };
            let (mut zeros, mut nonzero) = (0, 0);
            for (i, a) in auto.iter().enumerate() {
                let at = |delta: f64| {
                    fn bump<S: Shape>(w: &mut Tensor<S, f64, Dev>, i: usize, delta: f64) {
                        let mut v = w.as_vec();
                        v[i] += delta;
                        w.copy_from(&v);
                    }
                    let mut m = made.clone();
                    match which {
                        0 => bump(&mut m.input.weight, i, delta),
                        1 => bump(&mut m.shift.weight, i, delta),
                        _ => bump(&mut m.gate.weight, i, delta),
                    }
                    value(&m, reversed)
                };
                let fd = (at(1e-6) - at(-1e-6)) / 2e-6;
                assert!(
                    (a - fd).abs() < 1e-6 * (1.0 + fd.abs()),
                    "{name}[{i}] (reversed {reversed}): autograd {a} vs finite differences {fd}"
                );
                if *a == 0.0 && fd.abs() < 1e-12 {
                    zeros += 1;
                } else {
                    nonzero += 1;
                }
            }
            assert!(
                zeros > 0 && nonzero > 0,
                "{name}: {zeros} masked, {nonzero} free"
            );
        }
    }
}
