//! The trainer's knobs: learning-rate schedules against PyTorch's formulas, gradient
//! clipping by the global norm, AdamW against its closed form, the per-epoch callback,
//! and their settings' checks.

use std::sync::{Arc, Mutex};

use dfdx::optim::{AdamConfig, WeightDecay};
use dfdx::prelude::*;
use latent::data::embedded;
use latent::ops::to_f64_vec;
use latent::train::optim::Adam;
use latent::train::{fit, EpochCallback, LrSchedule, TrainConfig};
use latent::{Elbo, Error};
use latent_models::{mlp_vae, MlpVae};

#[test]
fn schedules_follow_pytorch() {
    // torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.1), base lr 1:
    // [1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01].
    let s = LrSchedule::Step {
        every: 3,
        gamma: 0.1,
    };
    let got: Vec<f64> = (0..8).map(|t| s.lr_at(1.0, t, 100, 0)).collect();
    let want = [1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01];
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-15, "{got:?}");
    }
    // CosineAnnealingLR(T_max=10, eta_min=0.1), base 1: t = 0, 5, 10, 20 →
    // 1, 0.55, 0.1, 0.1 (held after T); t = 2.5 of 10 → 0.1 + 0.9·(1 + cos(π/4))/2.
    let c = LrSchedule::Cosine { min_lr: 0.1 };
    for (t, w) in [(0, 1.0), (5, 0.55), (10, 0.1), (20, 0.1)] {
        assert!((c.lr_at(1.0, t, 10, 0) - w).abs() < 1e-12, "t = {t}");
    }
    let quarter = 0.1 + 0.9 * (1.0 + std::f64::consts::FRAC_PI_4.cos()) / 2.0;
    assert!((c.lr_at(1.0, 25, 100, 0) - quarter).abs() < 1e-12);
    // Linear warm-up over 4 steps multiplies any schedule: 0.25, 0.5, 0.75, 1, 1.
    let w: Vec<f64> = (0..5)
        .map(|t| LrSchedule::Constant.lr_at(2.0, t, 100, 4))
        .collect();
    assert_eq!(w, vec![0.5, 1.0, 1.5, 2.0, 2.0]);
    // Settings out of range are typed errors.
    assert!(LrSchedule::Step {
        every: 0,
        gamma: 0.5
    }
    .check(1.0)
    .is_err());
    assert!(LrSchedule::Step {
        every: 2,
        gamma: 1.5
    }
    .check(1.0)
    .is_err());
    assert!(LrSchedule::Cosine { min_lr: 2.0 }.check(1.0).is_err());
    assert!(LrSchedule::Cosine { min_lr: 0.0 }.check(1.0).is_ok());
}

/// One parameter vector θ = (1, 2, −1) with the loss `c · θ`, c = (3, 4, 0): the
/// gradient is c, of norm 5.
fn one_step(cfg: AdamConfig, scale: Option<f64>) -> (f64, Vec<f64>, Vec<f64>) {
    let dev = Cpu::default();
    let mut p: Tensor<Rank1<3>, f64, Cpu> = dev.tensor([1.0, 2.0, -1.0]);
    let mut opt = Adam::new(&p, cfg, 1).unwrap();
    let c: Tensor<Rank1<3>, f64, Cpu> = dev.tensor([3.0, 4.0, 0.0]);
    let mut g = (p.clone().traced(p.alloc_grads()) * c).sum().backward();
    let norm = opt.gradient_norm(&p, &mut g, &mut []).unwrap();
    let scale = scale.map_or(1.0, |max| (max / (norm + 1e-6)).min(1.0));
    opt.update_sum_scaled(&mut p, &mut g, &mut [], scale)
        .unwrap();
    let m = opt.moments().unwrap()[0].0.clone();
    (norm, m, to_f64_vec(&p))
}

#[test]
fn clipping_scales_the_gradient_to_the_global_norm() {
    let cfg = AdamConfig {
        lr: 0.1,
        ..Default::default()
    };
    let (norm, m, _) = one_step(cfg, None);
    assert!((norm - 5.0).abs() < 1e-12);
    // First moment after one step: (1 − β₁) g = 0.1 · (3, 4, 0).
    for (a, b) in m.iter().zip([0.3, 0.4, 0.0]) {
        assert!((a - b).abs() < 1e-12);
    }
    // Clipped to norm 1: g · 1/(5 + 1e-6), as torch.nn.utils.clip_grad_norm_.
    let (_, m, _) = one_step(cfg, Some(1.0));
    let k = 1.0 / (5.0 + 1e-6);
    for (a, b) in m.iter().zip([0.3 * k, 0.4 * k, 0.0]) {
        assert!((a - b).abs() < 1e-12, "{m:?}");
    }
    // A norm below the maximum is left alone.
    let (_, m, _) = one_step(cfg, Some(10.0));
    assert!((m[0] - 0.3).abs() < 1e-12);
}

#[test]
fn adamw_decays_the_weights_after_the_adam_step() {
    // One step, lr 0.1, λ 0.5: θ₁ = θ₀ − lr·m̂/(√v̂ + ε) − lr·λ·θ₀ with m̂ = g, v̂ = g²
    // (bias-corrected first step), i.e. θ₀ − 0.1·sign(g)·|g|/(|g| + ε) − 0.05·θ₀
    // (torch.optim.AdamW(lr=0.1, weight_decay=0.5)).
    let cfg = AdamConfig {
        lr: 0.1,
        weight_decay: Some(WeightDecay::Decoupled(0.5)),
        ..Default::default()
    };
    let (_, _, p) = one_step(cfg, None);
    let eps = cfg.eps;
    let want = [
        1.0 - 0.1 * 3.0 / (3.0 + eps) - 0.05,
        2.0 - 0.1 * 4.0 / (4.0 + eps) - 0.1,
        -1.0 + 0.05,
    ];
    for (a, b) in p.iter().zip(want) {
        assert!((a - b).abs() < 1e-12, "{p:?}");
    }
}

#[test]
fn the_trainer_calls_back_each_epoch_and_checks_its_knobs() {
    let dev = Cpu::seed_from_u64(0);
    let mut model: MlpVae<Const<784>, usize, usize, f32, Cpu> =
        mlp_vae(&dev, (Const, 32, 4)).unwrap();
    let s = embedded().unwrap();
    let (train, test) = (s.train.take(200), s.test.take(50));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let config = TrainConfig {
        epochs: 3,
        batch_size: 50,
        lr_schedule: LrSchedule::Cosine { min_lr: 1e-5 },
        warmup_steps: 2,
        grad_clip: Some(5.0),
        weight_decay: Some(1e-4),
        on_epoch: Some(EpochCallback::new(move |m| {
            log.lock().unwrap().push((m.epoch, m.train_loss));
            Ok(())
        })),
        ..TrainConfig::default()
    };
    let report = fit(&mut model, &Elbo::default(), &train, &test, &config, &dev).unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(seen[2].1, report.epochs[2].train_loss);
    assert!(report.epochs.iter().all(|e| e.train_loss.is_finite()));
    // A callback's error ends training with it.
    let failing = TrainConfig {
        on_epoch: Some(EpochCallback::new(|_| {
            Err(Error::invalid("callback", "stop"))
        })),
        ..config.clone()
    };
    assert!(matches!(
        fit(&mut model, &Elbo::default(), &train, &test, &failing, &dev),
        Err(Error::InvalidSetting { name, .. }) if name == "callback"
    ));
    for bad in [
        TrainConfig {
            grad_clip: Some(0.0),
            ..config.clone()
        },
        TrainConfig {
            weight_decay: Some(-1.0),
            ..config.clone()
        },
        TrainConfig {
            lr_schedule: LrSchedule::Step {
                every: 0,
                gamma: 0.5,
            },
            ..config.clone()
        },
    ] {
        assert!(matches!(
            fit(&mut model, &Elbo::default(), &train, &test, &bad, &dev),
            Err(Error::InvalidSetting { .. })
        ));
    }
}
