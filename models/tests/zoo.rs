//! The model zoo: β-VAE objective, CVAE conditioning and completion, the VQ-VAE
//! quantizer's gradients, EMA update and restarts, and the stable-Rust conv layers.

use dfdx::prelude::*;
use latent::data::{Conditioning, Dataset, LabelCondition, TopRowsCondition};
use latent::ops::to_f64_vec;
use latent::train::{Progress, Task, TrainConfig};
use latent::{ConditionalModel, Conditioned, Distribution, Elbo, Events, Objective};
use latent_models::layers::{Conv2d, DepthToSpace, Upsample2};
use latent_models::{
    mlp_vae, BetaVae, Capacity, CodeUsage, CodebookEma, CodebookUpdate, Cvae, DeadCodeRestart,
    MlpVae, VectorQuantizer, VqVaeTask,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// The device the suite runs on: the CPU, or the GPU with `--features cuda`
/// (`scripts/cuda-check.sh`).
#[cfg(not(feature = "cuda"))]
type Dev = Cpu;
#[cfg(feature = "cuda")]
type Dev = dfdx::tensor::Cuda;

fn images(dev: &Dev, n: usize, seed: u64) -> Tensor<(usize, Const<784>), f64, Dev> {
    let d2 = Dev::seed_from_u64(seed);
    let u: Tensor<(usize, Const<784>), f64, Dev> = d2.sample_uniform_like(&(n, Const));
    dev.tensor_from_vec(
        u.as_vec().iter().map(|v| (v > &0.5) as u8 as f64).collect(),
        (n, Const),
    )
}

/// β = 1 without capacity is exactly the ELBO objective for the same draws; β = 4 is
/// `rec − 4·KL`; the capacity objective is `rec − γ·|KL − C(step)|`.
#[test]
fn beta_vae_objectives_match_their_formulas() {
    let dev = Dev::seed_from_u64(3);
    let model: MlpVae<Const<784>, Const<64>, Const<8>, f64, Dev> =
        mlp_vae(&dev, (Const, Const, Const)).unwrap();
    let x = images(&dev, 16, 9);

    // Same draws: the model and data are moved onto a freshly seeded device.
    let elbo_terms = |seed| {
        let d = Dev::seed_from_u64(seed);
        let m: MlpVae<Const<784>, Const<64>, Const<8>, f64, Dev> = model.clone().to_device(&d);
        Elbo::default()
            .estimate(&m, x.clone().to_device(&d))
            .unwrap()
    };
    let objective = |o: &BetaVae, seed| {
        let d = Dev::seed_from_u64(seed);
        let m: MlpVae<Const<784>, Const<64>, Const<8>, f64, Dev> = model.clone().to_device(&d);
        to_f64_vec(&o.objective(&m, x.clone().to_device(&d)).unwrap())
    };
    let t = elbo_terms(5);
    let (elbo, rec, kl) = (
        to_f64_vec(&t.elbo),
        to_f64_vec(&t.reconstruction),
        to_f64_vec(&t.kl),
    );

    let b1 = objective(&BetaVae::new(1.0).unwrap(), 5);
    let b4 = objective(&BetaVae::new(4.0).unwrap(), 5);
    let cap = Capacity {
        gamma: 100.0,
        c_max: 25.0,
        steps: 1000,
    };
    let bc = BetaVae::with_capacity(cap).unwrap().scheduled(400, 1.0);
    assert!((cap.target(400) - 10.0).abs() < 1e-12);
    let capped = objective(&bc, 5);
    for i in 0..16 {
        assert!(
            (b1[i] - elbo[i]).abs() < 1e-9,
            "β=1: {} vs ELBO {}",
            b1[i],
            elbo[i]
        );
        assert!((b4[i] - (rec[i] - 4.0 * kl[i])).abs() < 1e-9);
        let want = rec[i] - 100.0 * (kl[i] - 10.0).abs();
        assert!((capped[i] - want).abs() < 1e-7, "{} vs {want}", capped[i]);
    }
    // A different draw gives a different objective: the equality above is not vacuous.
    let other = objective(&BetaVae::new(1.0).unwrap(), 6);
    assert!(other.iter().zip(&b1).any(|(a, b)| (a - b).abs() > 1e-6));
}

/// KL warm-up: the weight rises linearly to 1 and scales the ELBO's β.
#[test]
fn kl_warmup_schedules_beta() {
    let config = TrainConfig {
        kl_warmup_steps: 200,
        ..Default::default()
    };
    assert_eq!(config.kl_weight(0), 0.0);
    assert!((config.kl_weight(50) - 0.25).abs() < 1e-15);
    assert_eq!(config.kl_weight(200), 1.0);
    assert_eq!(config.kl_weight(10_000), 1.0);
    assert_eq!(TrainConfig::default().kl_weight(0), 1.0);
    let e = Elbo::default().with_beta(4.0).unwrap().scheduled(50, 0.25);
    assert_eq!(e.beta(), 1.0);
}

fn one_hot(dev: &Dev, labels: &[usize]) -> Tensor<(usize, Const<10>), f64, Dev> {
    let mut v = vec![0.0; labels.len() * 10];
    for (i, &l) in labels.iter().enumerate() {
        v[i * 10 + l] = 1.0;
    }
    dev.tensor_from_vec(v, (labels.len(), Const))
}

/// The CVAE at run-time sizes is the same model as at compile-time sizes: built from
/// the same seed, it has the same conditional ELBO terms to the last bit, and a
/// condition of the wrong width is a typed error rather than a panic.
#[test]
fn cvae_at_run_time_sizes_equals_the_compiled_one() {
    let data = latent::data::embedded().unwrap();
    let idx: Vec<usize> = (0..8).collect();
    let fixed: Cvae<Const<784>, Const<10>, Const<32>, Const<4>, f64, Dev> =
        Cvae::new(&Dev::seed_from_u64(2), (Const, Const, Const, Const)).unwrap();
    let dynamic: Cvae<usize, usize, usize, usize, f64, Dev> =
        Cvae::new(&Dev::seed_from_u64(2), (784, 10, 32, 4)).unwrap();
    let elbo = |f: &dyn Fn(&Dev) -> latent::ElboTerms<f64, Dev, NoneTape>| {
        let terms = f(&Dev::seed_from_u64(9));
        (to_f64_vec(&terms.elbo), to_f64_vec(&terms.kl))
    };
    let a = elbo(&|dev: &Dev| {
        let (x, y): (Events<Const<784>, f64, Dev>, Events<Const<10>, f64, Dev>) =
            LabelCondition.tensors(&data.test, &idx, None, dev).unwrap();
        Elbo::default()
            .estimate(&Conditioned::new(&fixed, y), x)
            .unwrap()
    });
    let b = elbo(&|dev: &Dev| {
        let x: Events<usize, f64, Dev> = data.test.batch(dev, &idx, None).unwrap();
        let (_, y): (Events<Const<784>, f64, Dev>, Events<Const<10>, f64, Dev>) =
            LabelCondition.tensors(&data.test, &idx, None, dev).unwrap();
        let y: Events<usize, f64, Dev> = y.realize();
        Elbo::default()
            .estimate(&Conditioned::new(&dynamic, y), x)
            .unwrap()
    });
    assert_eq!(a, b);
    let dev = Dev::default();
    let x: Events<usize, f64, Dev> = data.test.batch(&dev, &idx, None).unwrap();
    let y: Events<usize, f64, Dev> = dev.zeros_like(&(8, 9));
    assert!(matches!(
        Elbo::default().estimate(&Conditioned::new(&dynamic, y), x),
        Err(latent::Error::ShapeMismatch { .. })
    ));
}

/// The decoded image depends on the label: same z and label give the same image,
/// another label another image.
#[test]
fn cvae_label_changes_the_decoded_image() {
    let dev = Dev::seed_from_u64(4);
    let model: Cvae<Const<784>, Const<10>, Const<64>, Const<4>, f64, Dev> =
        Cvae::new(&dev, (Const, Const, Const, Const)).unwrap();
    let z: Tensor<(usize, Const<4>), f64, Dev> = dev.sample_normal_like(&(3, Const));
    let decode = |labels: &[usize]| {
        let lik = ConditionalModel::<f64, Dev, NoneTape>::likelihood(
            &model,
            z.clone(),
            one_hot(&dev, labels),
        )
        .unwrap();
        to_f64_vec(&lik.mean())
    };
    let a = decode(&[0, 0, 0]);
    let b = decode(&[0, 0, 0]);
    let c = decode(&[3, 7, 9]);
    assert_eq!(a, b);
    for img in 0..3 {
        let d = (0..784)
            .map(|p| (a[img * 784 + p] - c[img * 784 + p]).abs())
            .fold(0.0, f64::max);
        assert!(
            d > 1e-3,
            "image {img}: label changed nothing (max diff {d})"
        );
    }
}

/// Completion: x is exactly the bottom 14 rows, y the top 14, and the reconstruction
/// term is the Bernoulli log-likelihood of the 392 bottom pixels only.
#[test]
fn cvae_completion_counts_only_the_bottom_half() {
    let dev = Dev::seed_from_u64(5);
    let mut pixels = vec![0u8; 2 * 784];
    for (i, p) in pixels.iter_mut().enumerate() {
        let (img, r) = (i / 784, (i % 784) / 28);
        // Identical bottom halves, different top halves.
        *p = if r < 14 {
            (img * 200 + i % 7) as u8
        } else {
            ((i % 784) % 2 * 255) as u8
        };
    }
    let data = Dataset {
        images: pixels,
        labels: vec![0, 1],
        rows: 28,
        cols: 28,
        values: None,
    };
    let (x, y) = Conditioning::<Const<392>, Const<392>>::split::<f64>(
        &TopRowsCondition { rows: 14 },
        &data,
        &[0, 1],
        None,
    )
    .unwrap();
    assert_eq!(x.len(), 2 * 392);
    assert_eq!(&x[..392], &x[392..], "bottom halves are the same");
    assert_ne!(&y[..392], &y[392..], "top halves differ");
    for p in 0..392 {
        assert_eq!(x[p], data.images[14 * 28 + p] as f64 / 255.0);
        assert_eq!(y[392 + p], data.images[784 + p] as f64 / 255.0);
    }

    let model: Cvae<Const<392>, Const<392>, Const<64>, Const<4>, f64, Dev> =
        Cvae::new(&dev, (Const, Const, Const, Const)).unwrap();
    let xt = dev.tensor_from_vec(x.clone(), (2, Const::<392>));
    let yt = dev.tensor_from_vec(y, (2, Const::<392>));
    let z: Tensor<(usize, Const<4>), f64, Dev> = dev.sample_normal_like(&(2, Const));
    let lik =
        ConditionalModel::<f64, Dev, NoneTape>::likelihood(&model, z.clone(), yt.clone()).unwrap();
    let mu = to_f64_vec(
        &ConditionalModel::<f64, Dev, NoneTape>::likelihood(&model, z, yt.clone())
            .unwrap()
            .mean(),
    );
    let lp = to_f64_vec(&lik.log_prob(xt.clone()).unwrap());
    for b in 0..2 {
        let want: f64 = (0..392)
            .map(|p| {
                let (xv, m) = (x[b * 392 + p], mu[b * 392 + p]);
                xv * m.ln() + (1.0 - xv) * (1.0 - m).ln()
            })
            .sum();
        assert!((lp[b] - want).abs() < 1e-8, "{} vs {want}", lp[b]);
    }
    // Through the adapter, the ELBO's reconstruction term has the same support.
    let bound = Conditioned::new(&model, yt);
    let t = Elbo::default().estimate(&bound, xt).unwrap();
    assert_eq!(to_f64_vec(&t.reconstruction).len(), 2);
}

fn quantizer(dev: &Dev) -> VectorQuantizer<Const<3>, Const<2>, f64, Dev> {
    let mut q = VectorQuantizer::new(dev, Const, Const).unwrap();
    // Codes (0,0), (1,1), (−2,1).
    q.codebook.copy_from(&[0.0, 0.0, 1.0, 1.0, -2.0, 1.0]);
    q
}

/// Straight-through (eq. 3): the gradient reaching z_e is the gradient of the loss at
/// z_q, checked by central differences of the loss around z_q.
#[test]
fn straight_through_gradient_is_the_gradient_at_z_q() {
    let dev = Dev::default();
    let q = quantizer(&dev);
    let z_host = [0.2, -0.1, 0.8, 1.3, -1.6, 0.7, 0.45, 0.6];
    let z: Tensor<(usize, Const<2>), f64, Dev> = dev.tensor_from_vec(z_host.to_vec(), (4, Const));
    let w = [1.0, -2.0, 0.5, 3.0, -1.0, 2.0, 0.7, 0.3];
    let f = |v: &[f64]| -> f64 { v.iter().zip(&w).map(|(a, b)| b * a * a * a).sum() };

    let out = q.quantize(z.leaky_trace()).unwrap();
    assert_eq!(out.indices, vec![0, 1, 2, 1]);
    let zq = to_f64_vec(&out.z_q);
    assert_eq!(zq, vec![0.0, 0.0, 1.0, 1.0, -2.0, 1.0, 1.0, 1.0]);
    let wt = dev.tensor_from_vec(w.to_vec(), (4, Const::<2>));
    let loss = (out.z_q.powi(3) * wt).sum::<(), _>()
        + out.codebook_loss.sum::<(), _>() * 0.0
        + out.commitment_loss.sum::<(), _>() * 0.0;
    let g = loss.backward();
    let grad = g.get(&z).as_vec();
    let h = 1e-6;
    for i in 0..8 {
        let (mut up, mut dn) = (zq.clone(), zq.clone());
        up[i] += h;
        dn[i] -= h;
        let fd = (f(&up) - f(&dn)) / (2.0 * h);
        assert!(
            (grad[i] - fd).abs() < 1e-6,
            "coordinate {i}: autodiff {} vs FD at z_q {fd}",
            grad[i]
        );
        // …and not the gradient at z_e (they differ for every coordinate here).
        assert!((grad[i] - 3.0 * w[i] * z_host[i] * z_host[i]).abs() > 1e-3);
    }
}

/// The codebook gets gradient only from the codebook term, the encoder output only
/// from the reconstruction and commitment terms, each with its closed form.
#[test]
fn codebook_and_encoder_gradients_come_from_their_terms() {
    let dev = Dev::default();
    let z_host = [0.2, -0.1, 0.8, 1.3, 0.45, 0.6];
    let grads_for = |a: f64, b: f64, c: f64| {
        let q = quantizer(&dev);
        let z: Tensor<(usize, Const<2>), f64, Dev> =
            dev.tensor_from_vec(z_host.to_vec(), (3, Const));
        let out = q.quantize(z.leaky_trace()).unwrap();
        let loss = out.z_q.square().sum::<(), _>() * a
            + out.codebook_loss.sum::<(), _>() * b
            + out.commitment_loss.sum::<(), _>() * c;
        let g = loss.backward();
        (g.get(&z).as_vec(), g.get(&q.codebook).as_vec())
    };
    // Assignments: rows 0 → code 0 (0,0); rows 1, 2 → code 1 (1,1).
    let e = [0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
    let (gz, ge) = grads_for(1.0, 0.0, 0.0);
    assert!(
        ge.iter().all(|v| *v == 0.0),
        "reconstruction reached the codebook: {ge:?}"
    );
    for i in 0..6 {
        assert!((gz[i] - 2.0 * e[i]).abs() < 1e-12);
    }
    let (gz, ge) = grads_for(0.0, 1.0, 0.0);
    assert!(
        gz.iter().all(|v| *v == 0.0),
        "codebook term reached the encoder: {gz:?}"
    );
    // d/de_k Σ_{j→k} ‖e_k − z_j‖² = 2 Σ_{j→k} (e_k − z_j).
    let want = [
        2.0 * (0.0 - 0.2),
        2.0 * (0.0 + 0.1),
        2.0 * ((1.0 - 0.8) + (1.0 - 0.45)),
        2.0 * ((1.0 - 1.3) + (1.0 - 0.6)),
        0.0,
        0.0,
    ];
    for i in 0..6 {
        assert!(
            (ge[i] - want[i]).abs() < 1e-12,
            "{i}: {} vs {}",
            ge[i],
            want[i]
        );
    }
    let (gz, ge) = grads_for(0.0, 0.0, 1.0);
    assert!(
        ge.iter().all(|v| *v == 0.0),
        "commitment reached the codebook: {ge:?}"
    );
    for i in 0..6 {
        assert!((gz[i] - 2.0 * (z_host[i] - e[i])).abs() < 1e-12);
    }
}

/// One EMA step by hand: K = 2 codes in 1-D, γ = 0.5, ε = 0.1.
#[test]
fn ema_update_matches_its_formula() {
    let mut ema = CodebookEma::new(2, 1, 0.5, 0.1).unwrap();
    let book = [5.0, 7.0];
    // Vectors 1, 3 → code 0; nothing → code 1.
    let out = ema.update(&book, &[1.0, 3.0], &[0, 0]).unwrap();
    // N = (0.5·0 + 0.5·2, 0) = (1, 0); m_0 = 0.5·4 = 2; Σ N = 1;
    // Ñ_0 = (1 + 0.1)/(1 + 0.2)·1 = 11/12; e_0 = 2 / (11/12) = 24/11. Code 1 unused: kept.
    assert_eq!(ema.counts, vec![1.0, 0.0]);
    assert_eq!(ema.sums, vec![2.0, 0.0]);
    assert!((out[0] - 24.0 / 11.0).abs() < 1e-12, "{}", out[0]);
    assert_eq!(out[1], 7.0);
    // Second step: vector 2 → code 1.
    let out = ema.update(&out, &[2.0], &[1]).unwrap();
    // N = (0.5, 0.5), m = (1, 1), Σ N = 1, Ñ_k = 0.6/1.2 = 0.5, e = (2, 2).
    assert!(
        (out[0] - 2.0).abs() < 1e-12 && (out[1] - 2.0).abs() < 1e-12,
        "{out:?}"
    );
    assert!(CodebookEma::new(2, 1, 1.0, 0.1).is_err());
    assert!(CodebookEma::new(2, 1, 0.5, 0.0).is_err());
}

/// A code nobody uses is restarted onto an encoder output of the batch, through the
/// VQ-VAE task's update; perplexity follows its formula.
#[test]
fn dead_code_is_restarted() {
    let mut r = DeadCodeRestart::new(3, 0.5, 0.0).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let z = [0.1, 0.2, 0.3, 0.4];
    let restarts = r.step(&z, &[0, 0], &mut rng);
    let dead: Vec<usize> = restarts.iter().map(|(i, _)| *i).collect();
    assert_eq!(dead, vec![1, 2]);
    for (_, v) in &restarts {
        assert!(
            v == &[0.1, 0.2] || v == &[0.3, 0.4],
            "{v:?} is not a batch vector"
        );
    }

    // Through the task: an MLP VQ-VAE whose batch uses few of its 64 codes.
    let dev = Dev::seed_from_u64(2);
    let mut model = latent_models::mlp_vq_vae::<32, 16, 4, _, f64, Dev>(&dev, Const::<64>).unwrap();
    let data = latent::data::embedded().unwrap().test.take(8);
    let idx: Vec<usize> = (0..8).collect();
    let mut task = VqVaeTask::<Const<784>>::new(0.25, CodebookUpdate::Loss, 1)
        .unwrap()
        .with_restarts(DeadCodeRestart::new(64, 0.5, 0.0).unwrap());
    let before = to_f64_vec(&model.quantizer.codebook);
    let grads = model.alloc_grads();
    let progress = Progress {
        step: 0,
        epoch: 1,
        kl_weight: 1.0,
    };
    let batch = latent::train::Batch {
        data: &data,
        indices: &idx,
        binarize: None,
        device: &dev,
    };
    let loss = task.loss(&model, batch, grads, progress).unwrap();
    assert!(loss.array().is_finite());
    task.after_update(&mut model, progress).unwrap();
    let after = to_f64_vec(&model.quantizer.codebook);
    assert!(task.restarts > 0);
    let changed = (0..64)
        .filter(|k| before[k * 4..(k + 1) * 4] != after[k * 4..(k + 1) * 4])
        .count();
    assert_eq!(changed, task.restarts);

    let u = CodeUsage::of(&[0, 1, 2, 3, 0, 1, 2, 3], 8);
    assert!((u.perplexity - 4.0).abs() < 1e-12 && u.used_fraction == 0.5);
    assert!((CodeUsage::of(&[5, 5, 5], 8).perplexity - 1.0).abs() < 1e-12);
}

/// `conv` on `b` random `H×W` images against the textbook sum over taps and channels
/// (zero padding); its gradients are finite.
fn check_conv_against_direct<
    const I: usize,
    const O: usize,
    const K: usize,
    const S: usize,
    const P: usize,
    const H: usize,
    const W: usize,
>(
    conv: &Conv2d<I, O, K, S, P, H, W, f64, Dev>,
    dev: &Dev,
    b: usize,
) {
    let (h, w, ci, co, k, s, p) = (H, W, I, O, K, S, P);
    let x: Tensor<(usize, Const<I>), f64, Dev> = dev.sample_normal_like(&(b * h * w, Const));
    let y = to_f64_vec(&conv.forward(x.clone()));
    let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    assert_eq!(y.len(), b * ho * wo * co);
    let (xv, wv, bv) = (x.as_vec(), conv.weight.as_vec(), conv.bias.as_vec());
    for bi in 0..b {
        for i in 0..ho {
            for j in 0..wo {
                for o in 0..co {
                    let mut acc = bv[o];
                    for di in 0..k {
                        for dj in 0..k {
                            let (yy, xx) = (
                                (i * s + di) as isize - p as isize,
                                (j * s + dj) as isize - p as isize,
                            );
                            if yy < 0 || xx < 0 || yy >= h as isize || xx >= w as isize {
                                continue;
                            }
                            for c in 0..ci {
                                let xin = xv[(bi * h * w + yy as usize * w + xx as usize) * ci + c];
                                acc += xin * wv[((di * k + dj) * ci + c) * co + o];
                            }
                        }
                    }
                    let got = y[((bi * ho + i) * wo + j) * co + o];
                    assert!(
                        (got - acc).abs() < 1e-12,
                        "({bi},{i},{j},{o}): {got} vs {acc}"
                    );
                }
            }
        }
    }
    // Gradients flow back to every input (the gather's scatter-add, or the shifted
    // sum's): finite everywhere.
    let g = conv.forward(x.leaky_trace()).sum::<(), _>().backward();
    assert!(g.get(&x).as_vec().iter().all(|v| v.is_finite()));
}

/// The convolutions equal a direct convolution: im2col (zero padding, stride 2, more
/// output than input channels) and shift-and-add (stride 1, fewer output channels), and
/// upsampling repeats each pixel into a 2×2 block.
#[test]
fn conv_layers_match_direct_computation() {
    let dev = Dev::seed_from_u64(8);
    let strided: Conv2d<2, 3, 4, 2, 1, 6, 5, f64, Dev> = BuildModule::build(&dev);
    check_conv_against_direct(&strided, &dev, 2);
    let narrowing: Conv2d<5, 2, 3, 1, 1, 4, 6, f64, Dev> = BuildModule::build(&dev);
    check_conv_against_direct(&narrowing, &dev, 3);

    // Depth-to-space as torch.nn.functional.pixel_shuffle(x, 2) on a 1×2 map of 4
    // channels: out[2h + i, 2w + j] = in[2i + j, h, w] (channels-last rows here).
    let d2s = DepthToSpace::<1, 1, 2>;
    let t: Tensor<(usize, Const<4>), f64, Dev> =
        dev.tensor_from_vec((0..8).map(f64::from).collect(), (2, Const));
    let out = to_f64_vec(&Module::<Tensor<(usize, Const<4>), f64, Dev>>::forward(
        &d2s, t,
    ));
    assert_eq!(out, vec![0., 1., 4., 5., 2., 3., 6., 7.]);

    let up = Upsample2::<2, 3>;
    let t: Tensor<(usize, Const<1>), f64, Dev> =
        dev.tensor_from_vec((0..6).map(f64::from).collect(), (6, Const));
    let u = to_f64_vec(&Module::<Tensor<(usize, Const<1>), f64, Dev>>::forward(
        &up, t,
    ));
    assert_eq!(
        u,
        vec![
            0., 0., 1., 1., 2., 2., 0., 0., 1., 1., 2., 2., 3., 3., 4., 4., 5., 5., 3., 3., 4., 4.,
            5., 5.
        ]
    );
}

/// The learned conditional prior p(z | y): the KL stays in closed form (Normal ‖ Normal),
/// the prior depends on y, and a training step moves the prior network.
#[test]
fn cvae_with_a_learned_conditional_prior_trains() {
    use latent::heads::BernoulliHead;
    use latent::train::{fit_task, ConditionalTask};
    use latent::{KlEstimator, LatentVariableModel};
    use latent_models::LearnedConditionalPrior;

    type Prior = LearnedConditionalPrior<Const<10>, Const<16>, Const<4>, f64, Dev>;
    type Model = Cvae<Const<784>, Const<10>, Const<32>, Const<4>, f64, Dev, Prior>;
    let dev = Dev::seed_from_u64(11);
    let mut model: Model = Cvae::with_heads(
        BuildModule::build(&dev),
        BernoulliHead,
        (Const, Const, Const, Const),
        &dev,
    )
    .unwrap();
    let x = images(&dev, 6, 3);
    let y = one_hot(&dev, &[0, 1, 2, 3, 4, 5]);
    let bound = Conditioned::new(&model, y.clone());
    let t = Elbo::default()
        .with_kl(KlEstimator::Analytic)
        .estimate(&bound, x)
        .unwrap();
    assert!(to_f64_vec(&t.elbo).iter().all(|v| v.is_finite()));
    let prior = LatentVariableModel::<f64, Dev, NoneTape>::prior(&bound, 6, &dev).unwrap();
    let means = to_f64_vec(&prior.mean());
    assert!(means[..4] != means[4..8], "p(z | y) ignores y");

    let data = latent::data::embedded().unwrap();
    let before = model.prior.loc.weight.as_vec();
    let config = TrainConfig {
        epochs: 1,
        ..Default::default()
    };
    let mut task = ConditionalTask::new(Elbo::default(), latent::data::LabelCondition);
    let report = fit_task(
        &mut model,
        &mut task,
        &data.train.take(256),
        &data.test.take(64),
        &config,
        &dev,
    )
    .unwrap();
    assert!(report.epochs[0].test_elbo.is_finite());
    assert_ne!(before, model.prior.loc.weight.as_vec());
}

/// The MLP VQ-VAE learns with the codebook loss (no EMA): the reconstruction term
/// improves by far, the codebook moves, and more than a couple of codes are in use.
#[test]
fn mlp_vq_vae_learns_with_the_codebook_loss() {
    use latent::data::Binarization;
    use latent::train::{fit_task, prepare_test};
    use latent_models::code_usage;

    let dev = Dev::seed_from_u64(5);
    let mut model = latent_models::mlp_vq_vae::<64, 64, 8, _, f64, Dev>(&dev, 32usize).unwrap();
    let data = latent::data::embedded().unwrap();
    let (train, test) = (data.train.take(1024), data.test.take(200));
    let test_bin = prepare_test(&test, Binarization::Dynamic, 0);
    let mut task = VqVaeTask::<Const<784>>::new(0.25, CodebookUpdate::Loss, 0).unwrap();
    let before = task.evaluate(&model, &test_bin, &dev).unwrap();
    let book = model.quantizer.codebook.as_vec();
    let config = TrainConfig {
        epochs: 4,
        batch_size: 64,
        binarization: Binarization::Dynamic,
        ..Default::default()
    };
    fit_task(&mut model, &mut task, &train, &test, &config, &dev).unwrap();
    let after = task.evaluate(&model, &test_bin, &dev).unwrap();
    assert!(
        after.reconstruction > before.reconstruction + 100.0,
        "log p(x|z_q): {} → {}",
        before.reconstruction,
        after.reconstruction
    );
    assert_ne!(book, model.quantizer.codebook.as_vec());
    let (usage, _) = code_usage(&model, &test_bin, Const::<784>, &dev).unwrap();
    assert!(usage.perplexity > 2.0, "perplexity {}", usage.perplexity);
}

/// The nearest code by brute force over squared distances, against
/// `VectorQuantizer::nearest` (one affine map), on 200 random vectors and 64 codes.
#[test]
fn nearest_code_matches_brute_force_distances() {
    let dev = Dev::seed_from_u64(12);
    // A codebook size chosen at run time.
    let q = VectorQuantizer::<usize, Const<5>, f64, Dev>::new(&dev, 64, Const).unwrap();
    let z: Tensor<(usize, Const<5>), f64, Dev> = dev.sample_normal_like(&(200, Const));
    let got = q.nearest(&z).unwrap();
    let (zs, book) = (to_f64_vec(&z), to_f64_vec(&q.codebook));
    for (r, &k) in got.iter().enumerate() {
        let d = |k: usize| -> f64 {
            (0..5)
                .map(|j| (zs[r * 5 + j] - book[k * 5 + j]).powi(2))
                .sum()
        };
        let best = (0..64).map(d).fold(f64::INFINITY, f64::min);
        assert!(
            (d(k) - best).abs() < 1e-12,
            "row {r}: code {k} at {} vs {best}",
            d(k)
        );
    }
}

/// The conv VQ-VAE on 1, 2 and 3 replicas: the same loss and gradients (to f32
/// summation tolerance; the VQ-VAE's loss draws no noise), and after the EMA update
/// the same codebook (the replicas' codes are absorbed in batch order).
#[test]
fn vq_vae_replica_gradients_and_ema_equal_the_whole_batch() {
    use latent::train::DataParallel;
    use latent_models::{conv_vq_vae, CodebookEma, ConvVqVae};
    type Vq = ConvVqVae<8, Const<16>, f32, Dev>;
    let data = latent::data::embedded().unwrap().test.take(11);
    let data = latent::train::prepare_test(&data, latent::data::Binarization::Dynamic, 0);
    let idx: Vec<usize> = (0..11).collect();
    let progress = Progress {
        step: 0,
        epoch: 1,
        kl_weight: 1.0,
    };
    let run = |threads: usize| {
        let dev = Dev::seed_from_u64(3);
        let mut model: Vq = conv_vq_vae(&dev, Const).unwrap();
        let ema = CodebookEma::new(16, 8, 0.9, 1e-5).unwrap();
        let mut task = VqVaeTask::<Const<784>>::new(0.25, CodebookUpdate::Ema(ema), 0).unwrap();
        let mut dp = DataParallel::new(&model, threads, 0).unwrap();
        let (loss, g) = dp
            .gradients(
                &model,
                &mut task,
                &data,
                &idx,
                None::<&mut StdRng>,
                &dev,
                model.alloc_grads(),
                progress,
            )
            .unwrap();
        let grad = to_f64_vec(&g.get(&model.encoder.1.weight));
        task.after_update(&mut model, progress).unwrap();
        (loss, grad, to_f64_vec(&model.quantizer.codebook))
    };
    let (l1, g1, c1) = run(1);
    assert!(
        g1.iter().any(|v| v.abs() > 1e-6),
        "the gradient is not trivially zero"
    );
    for threads in [2, 3] {
        let (l, g, c) = run(threads);
        assert!(
            (l - l1).abs() <= 1e-5 * l1.abs(),
            "{threads}: loss {l} vs {l1}"
        );
        for (a, b) in g.iter().zip(&g1) {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{threads}: ∂W {a} vs {b}"
            );
        }
        for (a, b) in c.iter().zip(&c1) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{threads}: codebook {a} vs {b}"
            );
        }
    }
}

#[test]
fn full_covariance_vae_trains_and_its_correlations_get_gradients() {
    use latent::train::{fit, TrainConfig};
    use latent_models::{mlp_full_covariance_vae, MlpFullCovarianceVae};
    let dev = Cpu::seed_from_u64(21);
    let data = latent::data::embedded().unwrap().train.take(512);
    let mut m: MlpFullCovarianceVae<usize, usize, usize, f32, Cpu> =
        mlp_full_covariance_vae(&dev, (784, 32, 4)).unwrap();
    let before = m.guide.below.weight.as_vec();
    let config = TrainConfig {
        epochs: 3,
        batch_size: 64,
        threads: 1,
        binarization: latent::data::Binarization::Dynamic,
        ..Default::default()
    };
    let report = fit(
        &mut m,
        &latent::Elbo::default(),
        &data,
        &data,
        &config,
        &dev,
    )
    .unwrap();
    // The below-diagonal head (the posterior's correlations) is trained.
    let after = m.guide.below.weight.as_vec();
    let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert!(
        moved > after.len() / 2,
        "{moved} of {} weights moved",
        after.len()
    );
    // And the ELBO improves.
    let elbos: Vec<f64> = report.epochs.iter().map(|e| e.test_elbo).collect();
    assert!(elbos[2] > elbos[0] + 1.0, "{elbos:?}");
}

/// The SBN VAE learns with every discrete estimator: a few hundred steps on 512
/// embedded images raise its test ELBO well above the untrained model's, and the
/// importance-sampled log-likelihood stays above the ELBO (a bound).
#[test]
fn sbn_vae_trains_with_each_discrete_estimator() {
    use latent::train::{fit, prepare_test};
    use latent::{log_marginal_likelihood, AnyObjective, Concrete, Nvil, Vimco};
    use latent_models::SbnVae;
    let data = latent::data::embedded().unwrap();
    let (train, test) = (data.train.take(512), data.test.take(100));
    let test = prepare_test(&test, latent::data::Binarization::Dynamic, 1);
    let config = TrainConfig {
        epochs: 8,
        batch_size: 32,
        threads: 1,
        ..Default::default()
    };
    let x: Events<Const<784>, f32, Dev> = test
        .batch(&Dev::default(), &(0..100).collect::<Vec<_>>(), None)
        .unwrap();
    let untrained = {
        let m: SbnVae<Const<784>, usize, f32, Dev> =
            SbnVae::new(&Dev::seed_from_u64(1), Const, 32, 16).unwrap();
        let e = Elbo::default().estimate(&m, x.clone()).unwrap();
        to_f64_vec(&e.elbo).iter().sum::<f64>() / 100.0
    };
    for objective in [
        AnyObjective::Elbo(Elbo::default()),
        AnyObjective::Nvil(Nvil::default()),
        AnyObjective::Vimco(Vimco::new(4).unwrap()),
        AnyObjective::Concrete(Concrete::new(1.0, 0.5, 1e-3).unwrap()),
    ] {
        let dev = Dev::seed_from_u64(1);
        let mut m: SbnVae<Const<784>, usize, f32, Dev> = SbnVae::new(&dev, Const, 32, 16).unwrap();
        fit(&mut m, &objective, &train, &test, &config, &dev).unwrap();
        let e = Elbo::default().estimate(&m, x.clone()).unwrap();
        let elbo = to_f64_vec(&e.elbo).iter().sum::<f64>() / 100.0;
        assert!(
            elbo > untrained + 100.0,
            "{}: test ELBO {elbo} vs untrained {untrained}",
            objective.describe()
        );
        let ll = log_marginal_likelihood(&m, &x, 200, 50).unwrap();
        let mean_ll = ll.log_px.iter().sum::<f64>() / 100.0;
        assert!(
            mean_ll > elbo,
            "{}: log p(x) {mean_ll} ≤ ELBO {elbo}",
            objective.describe()
        );
    }
}

/// The GMVAE trains through the enumerated ELBO; its enumerated ELBO is below its
/// importance-sampled log-likelihood, and its clusters are a distribution per image.
#[test]
fn gmvae_trains_and_its_enumerated_bound_holds() {
    use latent::inference::enumerate::{enumerated_log_marginal_likelihood, EnumeratedElbo};
    use latent::train::{fit_task, prepare_test, EnumeratedTask};
    use latent_models::GmVae;
    let data = latent::data::embedded().unwrap();
    let (train, test) = (data.train.take(512), data.test.take(50));
    let test = prepare_test(&test, latent::data::Binarization::Dynamic, 1);
    let dev = Dev::seed_from_u64(2);
    let mut m: GmVae<Const<784>, usize, usize, usize, f32, Dev> =
        GmVae::new(&dev, (Const, 5, 64, 4)).unwrap();
    let x: Events<Const<784>, f32, Dev> = test
        .batch(&dev, &(0..50).collect::<Vec<_>>(), None)
        .unwrap();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let before = mean(&to_f64_vec(
        &EnumeratedElbo::default()
            .estimate(&m, x.clone())
            .unwrap()
            .elbo,
    ));
    let mut task = EnumeratedTask::new(EnumeratedElbo::default(), 5).unwrap();
    let config = TrainConfig {
        epochs: 4,
        batch_size: 32,
        threads: 1,
        ..Default::default()
    };
    fit_task(&mut m, &mut task, &train, &test, &config, &dev).unwrap();
    let after = mean(&to_f64_vec(
        &EnumeratedElbo::new(Elbo::new(20).unwrap())
            .estimate(&m, x.clone())
            .unwrap()
            .elbo,
    ));
    assert!(after > before + 100.0, "ELBO {before} → {after}");
    let ll = enumerated_log_marginal_likelihood(&m, &x, 100, 20).unwrap();
    assert!(
        mean(&ll.log_px) > after,
        "log p(x) {} ≤ ELBO {after}",
        mean(&ll.log_px)
    );
    for p in m.cluster_probs(x).unwrap() {
        assert_eq!(p.len(), 5);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-5);
    }
}
