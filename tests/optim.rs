//! latent's Adam against dfdx's (bit for bit) and against Kingma & Ba's Algorithm 1
//! computed by hand in f64.

use dfdx::optim::{Adam as DfdxAdam, AdamConfig, Optimizer};
use dfdx::prelude::*;
use latent::ops::to_f64_vec;
use latent::train::optim::Adam;
use latent_models::{mlp_vae, MlpVae};

type Vae<E> = MlpVae<Const<784>, Const<64>, Const<4>, E, Cpu>;

/// Runs three steps of latent's and dfdx's Adam on the same model and gradients
/// (those of `Σ c ⊙ encoder(x)` for each step's own `x`: non-trivial for the encoder,
/// zero but allocated for the other tensors) and compares the parameters.
macro_rules! check_against_dfdx {
    ($e:ty, $threads:expr) => {
        check_against_dfdx!($e, $threads, None)
    };
    ($e:ty, $threads:expr, $wd:expr) => {{
        let dev = Cpu::seed_from_u64(0);
        let mut ours: Vae<$e> = mlp_vae(&dev, (Const, Const, Const)).unwrap();
        let mut theirs = ours.clone();
        let cfg = AdamConfig {
            lr: 3e-3,
            weight_decay: $wd,
            ..Default::default()
        };
        let mut a = Adam::new(&ours, cfg, $threads).unwrap();
        let mut b = DfdxAdam::new(&theirs, cfg);
        let grads = |model: &Vae<$e>, step: u64| {
            let dev = Cpu::seed_from_u64(100 + step);
            let x: Tensor<(usize, Const<784>), $e, Cpu> = dev.sample_uniform_like(&(8, Const));
            let c: Tensor<(usize, Const<64>), $e, Cpu> = dev.sample_normal_like(&(8, Const));
            let h = model.guide.encoder.forward(x.traced(model.alloc_grads()));
            (h * c).sum().backward()
        };
        for step in 0..3 {
            let mut g = grads(&ours, step);
            a.update(&mut ours, &mut g).unwrap();
            let g = grads(&theirs, step);
            b.update(&mut theirs, &g).unwrap();
        }
        assert_eq!(a.step(), 3);
        let w = to_f64_vec(&ours.guide.encoder.0.weight);
        assert_eq!(w, to_f64_vec(&theirs.guide.encoder.0.weight), "threads {}", $threads);
        assert_eq!(
            to_f64_vec(&ours.guide.encoder.0.bias),
            to_f64_vec(&theirs.guide.encoder.0.bias)
        );
        let before: Vae<$e> = mlp_vae(&Cpu::seed_from_u64(0), (Const, Const, Const)).unwrap();
        assert_ne!(w, to_f64_vec(&before.guide.encoder.0.weight), "the update moved nothing");
    }};
}

#[test]
fn equals_dfdx_adam_bit_for_bit() {
    check_against_dfdx!(f32, 1);
    check_against_dfdx!(f32, 2); // ~100k parameters: split across threads
    check_against_dfdx!(f64, 3);
}

/// With weight decay, L2 (`torch.optim.Adam(weight_decay=λ)`) and decoupled (AdamW),
/// the parameters still equal dfdx's bit for bit.
#[test]
fn weight_decay_equals_dfdx_bit_for_bit() {
    use dfdx::optim::WeightDecay;
    check_against_dfdx!(f32, 2, Some(WeightDecay::Decoupled(0.1)));
    check_against_dfdx!(f64, 1, Some(WeightDecay::L2(0.05)));
}

#[test]
fn follows_algorithm_1_of_kingma_and_ba() {
    // Two steps on one tensor, by hand in f64: m, v, bias corrections, update.
    let dev = Cpu::default();
    let mut p: Tensor<Rank1<3>, f64, Cpu> = dev.tensor([0.5, -1.0, 2.0]);
    let cfg = AdamConfig {
        lr: 0.1,
        betas: [0.9, 0.999],
        eps: 1e-8,
        weight_decay: None,
    };
    let mut opt = Adam::new(&p, cfg, 1).unwrap();
    let gs = [[0.3, -0.2, 1e-3], [-0.1, 0.4, 2.0]];
    let (mut m, mut v, mut want) = ([0.0; 3], [0.0; 3], [0.5, -1.0, 2.0]);
    for (t, g) in gs.iter().enumerate() {
        let t = t as i32 + 1;
        for i in 0..3 {
            m[i] = 0.9 * m[i] + 0.1 * g[i];
            v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
            let (mh, vh) = (
                m[i] / (1.0 - 0.9f64.powi(t)),
                v[i] / (1.0 - 0.999f64.powi(t)),
            );
            want[i] -= 0.1 * mh / (vh.sqrt() + 1e-8);
        }
        let mut grads = p.alloc_grads();
        let gt: Tensor<Rank1<3>, f64, Cpu> = dev.tensor(*g);
        grads = {
            // ∂(p · g)/∂p = g
            let l = (p.clone().traced(grads) * gt).sum();
            l.backward()
        };
        opt.update(&mut p, &mut grads).unwrap();
    }
    let got = to_f64_vec(&p);
    for i in 0..3 {
        assert!((got[i] - want[i]).abs() < 1e-12, "{got:?} vs {want:?}");
    }
    // The first step moves each coordinate by about lr (m̂/√v̂ = ±1): a sanity bound.
    assert!((got[2] - 2.0).abs() < 0.25);
}

#[test]
fn invalid_settings_are_typed_errors() {
    let dev = Cpu::default();
    let p: Tensor<Rank1<3>, f32, Cpu> = dev.zeros();
    for cfg in [
        AdamConfig {
            lr: 0.0,
            ..Default::default()
        },
        AdamConfig {
            betas: [1.0, 0.999],
            ..Default::default()
        },
        AdamConfig {
            eps: -1.0,
            ..Default::default()
        },
        AdamConfig {
            weight_decay: Some(dfdx::optim::WeightDecay::L2(-0.1)),
            ..Default::default()
        },
        AdamConfig {
            weight_decay: Some(dfdx::optim::WeightDecay::Decoupled(f64::NAN)),
            ..Default::default()
        },
    ] {
        assert!(matches!(
            Adam::new(&p, cfg, 1),
            Err(latent::Error::InvalidSetting { .. })
        ));
    }
}

#[test]
fn update_sum_adds_the_gradient_sets_in_the_same_pass_and_zeroes_them() {
    let dev = Cpu::default();
    let mut p: Tensor<Rank1<4>, f32, Cpu> = dev.tensor([0.5, -1.0, 2.0, 0.0]);
    let mut q = p.clone();
    let cfg = AdamConfig {
        lr: 0.05,
        ..Default::default()
    };
    let mut a = Adam::new(&p, cfg, 1).unwrap();
    let mut b = DfdxAdam::new(&q, cfg);
    // ∂(p · c)/∂p = c
    let grad = |p: &Tensor<Rank1<4>, f32, Cpu>, c: [f32; 4]| {
        let c: Tensor<Rank1<4>, f32, Cpu> = dev.tensor(c);
        (p.clone().traced(p.alloc_grads()) * c).sum().backward()
    };
    let (c0, c1) = ([0.3, -0.2, 1e-3, 0.0], [0.1, 0.4, -2.0, 0.25]);
    let mut g0 = grad(&p, c0);
    let mut more = [grad(&p, c1)];
    a.update_sum(&mut p, &mut g0, &mut more).unwrap();
    let summed: Vec<f32> = c0.iter().zip(&c1).map(|(x, y)| x + y).collect();
    let gq = grad(&q, [summed[0], summed[1], summed[2], summed[3]]);
    b.update(&mut q, &gq).unwrap();
    assert_eq!(to_f64_vec(&p), to_f64_vec(&q));
    assert_eq!(to_f64_vec(&g0.get(&p)), vec![0.0; 4]);
    assert_eq!(to_f64_vec(&more[0].get(&p)), vec![0.0; 4]);
}

/// A moment that decays into the subnormal range is stored as zero (see
/// `latent::train::optim`'s `flush`), where dfdx's Adam keeps the subnormal; the parameters
/// are unchanged by it beyond f32 rounding.
#[test]
fn subnormal_moments_are_flushed_to_zero() {
    let dev = Cpu::default();
    let mut ours: Tensor<Rank1<2>, f32, Cpu> = dev.tensor([0.5, -1.0]);
    let mut theirs = ours.clone();
    let cfg = AdamConfig::default();
    let mut a = Adam::new(&ours, cfg, 1).unwrap();
    let mut b = DfdxAdam::new(&theirs, cfg);
    // One gradient of 1e-36 on the first coordinate (m = 1e-37, normal), then zeros:
    // m = 1e-37 · 0.9^t is subnormal from t = 22 on (f32::MIN_POSITIVE ≈ 1.18e-38).
    for step in 0..30 {
        let g: Tensor<Rank1<2>, f32, Cpu> = dev.tensor(if step == 0 {
            [1e-36, 0.25]
        } else {
            [0.0, 0.25]
        });
        for (p, opt) in [(&mut ours, true), (&mut theirs, false)] {
            let l = (p.clone().traced(p.alloc_grads()) * g.clone()).sum();
            let mut grads = l.backward();
            if opt {
                a.update(p, &mut grads).unwrap();
            } else {
                b.update(p, &grads).unwrap();
            }
        }
    }
    let m = &a.moments().unwrap()[0].0;
    assert_eq!(m[0], 0.0, "the subnormal first moment is flushed");
    assert!(m[1] > 0.1, "a normal moment is kept: {}", m[1]);
    // dfdx keeps 1e-37 · 0.9^29 ≈ 4.7e-39, a subnormal.
    let theirs_m = 1e-37f32 * 0.9f32.powi(29);
    assert!(theirs_m > 0.0 && theirs_m < f32::MIN_POSITIVE);
    assert_eq!(to_f64_vec(&ours), to_f64_vec(&theirs));
}
