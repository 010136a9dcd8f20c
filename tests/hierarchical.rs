//! The two-layer hierarchical VAE and its chain distributions.

use dfdx::prelude::*;
use latent::distributions::{ConditionalChain, Distribution, Normal, Reparameterizable};
use latent::ops::to_f64_vec;
use latent::train::{fit, TrainConfig};
use latent::{AmortizedGuide, Elbo, LatentVariableModel};
use latent_models::{HierarchicalVae, NormalNet};
use statrs::distribution::Continuous;

/// The device the suite runs on: the CPU, or the GPU with `--features cuda`
/// (`scripts/cuda-check.sh`).
#[cfg(not(feature = "cuda"))]
type Dev = Cpu;
#[cfg(feature = "cuda")]
type Dev = dfdx::tensor::Cuda;

fn net(dev: &Dev) -> NormalNet<f64, Dev> {
    let m: HierarchicalVae<f64, Dev> = HierarchicalVae::new(dev, (3, 5, 1, 1)).unwrap();
    m.q_z2
}

fn chain(
    dev: &Dev,
    net: &NormalNet<f64, Dev>,
    n: usize,
    first_block_first: bool,
) -> ConditionalChain<Normal<usize, f64, Dev>, NormalNet<f64, Dev>> {
    let first = Normal::from_host(dev, 1, &vec![0.4; n], &vec![1.3; n]).unwrap();
    ConditionalChain::new(first, net.clone(), 1, first_block_first)
}

/// `∫∫ p(z_a) p(z_b|z_a) = 1` by the trapezoid rule on a grid, in both layouts.
#[test]
fn chain_density_integrates_to_one() {
    let dev = Dev::seed_from_u64(3);
    let net = net(&dev);
    let (lo, hi, m) = (-20.0, 20.0, 801);
    let h = (hi - lo) / (m - 1) as f64;
    for first_block_first in [true, false] {
        let grid: Vec<f64> = (0..m * m)
            .flat_map(|k| [lo + (k / m) as f64 * h, lo + (k % m) as f64 * h])
            .collect();
        let z = dev.tensor_from_vec(grid, (m * m, 2usize));
        let lp = to_f64_vec(
            &chain(&dev, &net, m * m, first_block_first)
                .log_prob(z)
                .unwrap(),
        );
        let w = |i: usize| if i == 0 || i == m - 1 { 0.5 } else { 1.0 };
        let total: f64 = (0..m * m)
            .map(|k| w(k / m) * w(k % m) * lp[k].exp())
            .sum::<f64>()
            * h
            * h;
        assert!((total - 1.0).abs() < 1e-4, "∫ p = {total}");
    }
}

/// `log_prob` equals the two Normal log-densities of statrs, with the network's μ, σ
/// at `z_a`, and `rsample_with_log_prob`'s `log q` at its own draw.
#[test]
fn chain_log_prob_matches_statrs_and_the_draws() {
    let dev = Dev::seed_from_u64(4);
    let net = net(&dev);
    let (z, lq) = chain(&dev, &net, 16, false)
        .rsample_with_log_prob()
        .unwrap();
    let zs = to_f64_vec(&z);
    let lp = to_f64_vec(&chain(&dev, &net, 16, false).log_prob(z).unwrap());
    let za: Tensor<(usize, usize), f64, Dev> =
        dev.tensor_from_vec(zs.chunks(2).map(|r| r[1]).collect(), (16, 1usize));
    let cond = net.posterior(za).unwrap();
    let (mu, ls) = (to_f64_vec(&cond.loc), to_f64_vec(&cond.log_scale));
    for (i, (a, b)) in to_f64_vec(&lq).iter().zip(&lp).enumerate() {
        let (zb, za) = (zs[2 * i], zs[2 * i + 1]);
        let want = statrs::distribution::Normal::new(0.4, 1.3)
            .unwrap()
            .ln_pdf(za)
            + statrs::distribution::Normal::new(mu[i], ls[i].exp())
                .unwrap()
                .ln_pdf(zb);
        assert!((b - want).abs() < 1e-10, "{b} vs statrs {want}");
        assert!((a - want).abs() < 1e-10, "{a} vs statrs {want}");
    }
}

#[test]
fn hierarchical_vae_trains_and_reports_each_layer() {
    let dev = Cpu::seed_from_u64(5);
    let data = latent::data::embedded().unwrap().train;
    let mut model: HierarchicalVae<f32, Cpu> = HierarchicalVae::new(&dev, (784, 64, 8, 4)).unwrap();
    let config = TrainConfig {
        epochs: 4,
        batch_size: 64,
        threads: 1,
        kl_warmup_steps: 16,
        binarization: latent::data::Binarization::Dynamic,
        ..Default::default()
    };
    let report = fit(&mut model, &Elbo::default(), &data, &data, &config, &dev).unwrap();
    let losses: Vec<f64> = report.epochs.iter().map(|e| e.train_loss).collect();
    assert!(losses[3] < losses[0], "{losses:?}");
    // The latents carry information: a model whose encoder got no gradient from the
    // reconstructions (as with dfdx's overwriting `slice`) stays at the ~390 nats of
    // independent pixels.
    let rec = -report.epochs[3].test_reconstruction;
    assert!(
        rec < 330.0,
        "reconstruction {rec} nats: the latents are not used"
    );
    let test = latent::train::prepare_test(&data, latent::data::Binarization::Dynamic, 0);
    let layers = model.layer_report(&test, &dev, 128).unwrap();
    let full = latent::eval::evaluate(&model, &Elbo::default(), &test, &dev, 128).unwrap();
    // Both are Monte Carlo estimates of the same KL (one draw per image, 512 images).
    let sum = layers.kl[0] + layers.kl[1];
    assert!(
        (sum - full.kl).abs() < 0.05 * full.kl.abs() + 1.0,
        "{layers:?} vs {}",
        full.kl
    );
    assert_eq!(layers.widths, [8, 4]);
    assert!(layers.active_units[0] <= 8 && layers.active_units[1] <= 4);
    // The latent row is [z1, z2]: the likelihood sees z1 only.
    let z = LatentVariableModel::<f32, Cpu, NoneTape>::prior(&model, 3, &dev)
        .unwrap()
        .sample();
    assert_eq!(z.shape(), &(3, 12));
    assert!(model.likelihood(z).is_ok());
}

/// `ops::columns` adds its gradient into the input's, where dfdx 0.13's `slice`
/// overwrites it: two consumers of the same columns both count.
#[test]
fn columns_accumulate_gradients_where_dfdx_slice_overwrites() {
    let dev = Dev::default();
    let a: Tensor<(usize, usize), f64, Dev> =
        dev.tensor_from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], (2, 3));
    let t = a.leaky_trace();
    let one = latent::ops::columns(t.with_empty_tape(), 0..2)
        .unwrap()
        .sum::<(), _>();
    let two = latent::ops::columns(t, 1..3).unwrap().sum::<(), _>() * 10.0;
    let g = (one + two).backward();
    assert_eq!(g.get(&a).as_vec(), vec![1.0, 11.0, 10.0, 1.0, 11.0, 10.0]);
    // dfdx's slice: the second slice's backward assigns over the first one's gradient.
    let t = a.leaky_trace();
    let one = t.with_empty_tape().slice((.., 0..2)).sum::<(), _>();
    let two = t.slice((.., 1..3)).sum::<(), _>() * 10.0;
    let g = (one + two).backward();
    assert_ne!(
        g.get(&a).as_vec(),
        vec![1.0, 11.0, 10.0, 1.0, 11.0, 10.0],
        "dfdx fixed slice: columns can go"
    );
}
