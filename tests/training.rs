//! End-to-end: the ELBO estimator on the MLP VAE, training on the embedded data,
//! checkpoints and the non-finite-loss stop.

use dfdx::prelude::*;
use latent::data::{embedded, Binarization};
use latent::eval::evaluate;
use latent::ops::to_f64_vec;
use latent::train::{fit, load_checkpoint, prepare_test, save_checkpoint, TrainConfig};
use latent::{Elbo, Error, KlEstimator};
use latent_models::{mlp_vae, MlpVae};

/// The device the suite runs on: the CPU, or the GPU with `--features cuda`
/// (`scripts/cuda-check.sh`).
#[cfg(not(feature = "cuda"))]
type Dev = Cpu;
#[cfg(feature = "cuda")]
type Dev = dfdx::tensor::Cuda;
type Small = MlpVae<Const<784>, Const<256>, Const<10>, f32, Dev>;

/// The closed-form KL the ELBO uses equals the Monte Carlo KL on the same model and
/// data, within 5 standard errors; and L samples are drawn as one batch.
#[test]
fn elbo_analytic_and_monte_carlo_kl_agree() {
    let dev = Dev::seed_from_u64(1);
    let model: MlpVae<Const<784>, Const<256>, Const<10>, f64, Dev> =
        mlp_vae(&dev, (Const, Const, Const)).unwrap();
    let data = embedded().unwrap().test.take(50);
    let idx: Vec<usize> = (0..50).collect();
    let x = data
        .batch::<Const<784>, f64, Dev>(&dev, &idx, None)
        .unwrap();

    let analytic = Elbo::new(1).unwrap().with_kl(KlEstimator::Analytic);
    let a = analytic.estimate(&model, x.clone()).unwrap();
    let a_kl = to_f64_vec(&a.kl);

    let l = 2000;
    let mc = Elbo::new(l).unwrap().with_kl(KlEstimator::MonteCarlo);
    let m = mc.estimate(&model, x).unwrap();
    let m_kl = to_f64_vec(&m.kl);
    // Var[log q − log p] under q for this near-prior guide is O(Z); bound the SE per
    // example by the standard error of a 2000-sample mean with a generous variance.
    for (b, (ak, mk)) in a_kl.iter().zip(&m_kl).enumerate() {
        let se = (2.0 * 10.0f64 / l as f64).sqrt();
        assert!(
            (ak - mk).abs() < 5.0 * se,
            "example {b}: analytic {ak}, MC {mk}"
        );
    }
    // The ELBO is reconstruction − KL, and all are per-example vectors.
    let (e, r, k) = (to_f64_vec(&a.elbo), to_f64_vec(&a.reconstruction), a_kl);
    assert_eq!(e.len(), 50);
    for i in 0..50 {
        assert!((e[i] - (r[i] - k[i])).abs() < 1e-9);
        assert!(k[i] >= 0.0);
    }
}

#[test]
fn invalid_settings_are_typed_errors() {
    assert!(matches!(Elbo::new(0), Err(Error::InvalidSetting { .. })));
    assert!(matches!(
        Elbo::new(1).unwrap().with_beta(-1.0),
        Err(Error::InvalidSetting { .. })
    ));
    assert!(matches!(
        Elbo::new(1).unwrap().with_beta(f64::NAN),
        Err(Error::InvalidSetting { .. })
    ));
    for config in [
        TrainConfig {
            epochs: 0,
            ..Default::default()
        },
        TrainConfig {
            batch_size: 0,
            ..Default::default()
        },
        TrainConfig {
            lr: 0.0,
            ..Default::default()
        },
        TrainConfig {
            lr: f64::INFINITY,
            ..Default::default()
        },
    ] {
        assert!(matches!(
            config.validated(),
            Err(Error::InvalidSetting { .. })
        ));
    }
}

/// One epoch on the embedded 4,000 images lifts the test ELBO far above the untrained
/// model's (≈ −545 nats: 784·ln 2 for logits near 0, plus the KL).
#[test]
fn one_epoch_on_embedded_data_improves_the_test_elbo() {
    let dev = Dev::seed_from_u64(0);
    let splits = embedded().unwrap();
    let mut model: Small = mlp_vae(&dev, (Const, Const, Const)).unwrap();
    let elbo = Elbo::default();
    let test = prepare_test(&splits.test, Binarization::None, 0);
    let before = evaluate(&model, &elbo, &test, &dev, 500).unwrap();
    let config = TrainConfig {
        epochs: 1,
        ..Default::default()
    };
    let report = fit(
        &mut model,
        &elbo,
        &splits.train,
        &splits.test,
        &config,
        &dev,
    )
    .unwrap();
    let after = evaluate(&model, &elbo, &test, &dev, 500).unwrap();
    assert!(before.elbo < -500.0, "untrained ELBO {}", before.elbo);
    assert!(
        after.elbo > before.elbo + 150.0,
        "ELBO {} → {}",
        before.elbo,
        after.elbo
    );
    assert_eq!(report.epochs.len(), 1);
    assert!((report.epochs[0].test_elbo - after.elbo).abs() < 2.0);
    assert!(report.train_images_per_s > 0.0);
}

/// Checkpoints round-trip; a training run whose loss becomes non-finite stops with a
/// typed error naming epoch and step, and leaves the last good checkpoint untouched.
#[test]
fn checkpoints_round_trip_and_survive_a_diverging_run() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::seed_from_u64(0);
    let splits = embedded().unwrap();
    let train = splits.train.take(512);
    let test = splits.test.take(128);
    let mut model: Small = mlp_vae(&dev, (Const, Const, Const)).unwrap();
    let elbo = Elbo::default();
    let config = TrainConfig {
        epochs: 1,
        out_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let report = fit(&mut model, &elbo, &train, &test, &config, &dev).unwrap();
    let ckpt = dir.path().join("checkpoint.safetensors");
    let good = std::fs::read(&ckpt).unwrap();
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 1);
    assert!(metrics.contains("\"test_elbo\""));
    // The log reads back as the report's epochs, and its chart is beside it: a PNG of
    // the size the charts draw.
    let logged = latent::train::MetricsLog::read(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(logged, report.epochs);
    let png = std::fs::read(dir.path().join("curves.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 1000);

    // Load into a fresh model: same test ELBO under the same ε.
    let mut fresh: Small = mlp_vae(&Dev::seed_from_u64(99), (Const, Const, Const)).unwrap();
    load_checkpoint::<f32, Dev, _>(&mut fresh, &ckpt).unwrap();
    let eval_dev = |s| Dev::seed_from_u64(s);
    let a = evaluate(&model, &elbo, &test, &eval_dev(5), 128).unwrap();
    let b = evaluate(&fresh, &elbo, &test, &eval_dev(5), 128).unwrap();
    assert_eq!(a, b);

    // A second run into the same directory is refused before it touches anything, so
    // the earlier run's checkpoint stays as it was.
    let err = fit(&mut model, &elbo, &train, &test, &config, &dev).unwrap_err();
    assert!(matches!(err, Error::RunDirOccupied { .. }), "{err}");
    assert_eq!(std::fs::read(&ckpt).unwrap(), good);

    // An absurd learning rate makes the loss blow up within the epoch: a typed error
    // naming epoch and step, no checkpoint of the diverged model, no leftovers.
    let other = tempfile::tempdir().unwrap();
    let diverging = TrainConfig {
        lr: 1e30,
        out_dir: Some(other.path().to_path_buf()),
        ..config.clone()
    };
    let err = fit(&mut model, &elbo, &train, &test, &diverging, &dev).unwrap_err();
    match err {
        Error::NonFinite { epoch, step, .. } => {
            assert!(epoch == 1 && step >= 2, "epoch {epoch}, step {step}")
        }
        other => panic!("expected NonFinite, got {other}"),
    }
    assert!(!other.path().join("checkpoint.safetensors").exists());
    let leftovers: Vec<_> = std::fs::read_dir(other.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.ends_with(".tmp") || n.starts_with(".latent.lock")
        })
        .collect();
    assert!(leftovers.is_empty());

    // Corrupt and missing checkpoints are typed errors.
    std::fs::write(&ckpt, b"not a checkpoint").unwrap();
    assert!(matches!(
        load_checkpoint::<f32, Dev, _>(&mut fresh, &ckpt),
        Err(Error::Checkpoint { .. })
    ));
    assert!(matches!(
        load_checkpoint::<f32, Dev, _>(&mut fresh, dir.path().join("none")),
        Err(Error::Checkpoint { .. })
    ));
    // Saving into a directory that does not exist fails cleanly.
    assert!(matches!(
        save_checkpoint::<f32, Dev, _>(&model, dir.path().join("no/such/dir/c.safetensors")),
        Err(Error::Checkpoint { .. })
    ));
}

/// A task whose evaluation fails with a non-finite ELBO, as an evaluation that knows no
/// epoch reports it.
#[derive(Clone)]
struct FailingEvaluation(latent::train::ObjectiveTask<Elbo>);

impl latent::train::Task<f32, Dev, Small> for FailingEvaluation {
    fn loss(
        &mut self,
        model: &Small,
        batch: latent::train::Batch<'_, Dev>,
        grads: Gradients<f32, Dev>,
        progress: latent::train::Progress,
    ) -> latent::Result<Tensor<(), f32, Dev, OwnedTape<f32, Dev>>> {
        self.0.loss(model, batch, grads, progress)
    }
    fn evaluate(
        &mut self,
        _: &Small,
        _: &latent::data::Dataset,
        _: &Dev,
    ) -> latent::Result<latent::eval::EvalReport> {
        Err(Error::NonFinite {
            what: "test ELBO".into(),
            epoch: 0,
            step: 0,
            value: f64::NAN,
        })
    }
    fn describe(&self) -> String {
        "failing evaluation".into()
    }
}

/// A non-finite evaluation after an epoch names that epoch and its last step, not
/// "epoch 0, step 0".
#[test]
fn a_failed_evaluation_names_the_epoch_it_followed() {
    let dev = Dev::seed_from_u64(0);
    let data = embedded().unwrap();
    let train = data.train.take(256);
    let mut model: Small = mlp_vae(&dev, (Const, Const, Const)).unwrap();
    let mut task = FailingEvaluation(latent::train::ObjectiveTask::new(Elbo::default()));
    let config = TrainConfig {
        epochs: 1,
        batch_size: 64,
        ..Default::default()
    };
    let err = latent::train::fit_task(&mut model, &mut task, &train, &data.test, &config, &dev)
        .unwrap_err();
    match err {
        Error::NonFinite {
            epoch, step, what, ..
        } => {
            assert_eq!((epoch, step), (1, 4), "{what}");
            assert!(what.contains("evaluation after the epoch"), "{what}");
        }
        other => panic!("expected NonFinite, got {other}"),
    }
}

/// A guide whose `log σ` head has run off to −700 (σ = 0 in f32 without a bound) still
/// gives a finite ELBO and finite gradients: `log σ` is clamped to −20.
#[test]
fn a_collapsing_log_sigma_stays_finite() {
    let dev = Dev::seed_from_u64(2);
    let mut model: Small = mlp_vae(&dev, (Const, Const, Const)).unwrap();
    model.guide.log_scale.bias = dev.tensor([-700.0f32; 10]);
    let data = embedded().unwrap().test.take(8);
    let idx: Vec<usize> = (0..8).collect();
    let x = data
        .batch::<Const<784>, f32, Dev>(&dev, &idx, None)
        .unwrap();
    let q = latent::LatentVariableModel::<f32, Dev, NoneTape>::guide(&model, x.clone()).unwrap();
    let ls = to_f64_vec(&q.log_scale);
    assert!(
        ls.iter()
            .all(|&v| (v + latent::inference::guide::LOG_SCALE_BOUND).abs() < 1e-3),
        "{ls:?}"
    );
    let grads = model.alloc_grads();
    let e = Elbo::default().estimate(&model, x.traced(grads)).unwrap();
    let loss = -e.objective.mean();
    assert!(to_f64_vec(&loss)[0].is_finite());
    let g = loss.backward();
    assert!(to_f64_vec(&g.get(&model.decoder.0.weight))
        .iter()
        .all(|v| v.is_finite()));
}

/// Settings whose activations cannot fit are refused before training, saying how much
/// they would need: `batch · draws · X · 4` values of 4 bytes at least.
#[test]
fn settings_beyond_the_memory_limit_are_refused_up_front() {
    let dev = Dev::seed_from_u64(0);
    let mut model: Small = mlp_vae(&dev, (Const, Const, Const)).unwrap();
    let s = embedded().unwrap();
    let (train, test) = (s.train.take(64), s.test.take(16));
    let config = TrainConfig {
        epochs: 1,
        batch_size: 32,
        memory_limit: Some(100 << 20),
        ..TrainConfig::default()
    };
    // IWAE with k = 1000: 32 · 1000 · 784 · 16 bytes ≈ 383 MiB > 100 MiB.
    let iwae = latent::ImportanceWeighted::new(1000).unwrap();
    match fit(&mut model, &iwae, &train, &test, &config, &dev) {
        Err(Error::MemoryLimit { needed, limit, .. }) => {
            assert_eq!(needed, 32 * 1000 * 784 * 16);
            assert_eq!(limit, 100 << 20);
        }
        other => panic!("expected a memory refusal, got {other:?}"),
    }
    // The same with k = 5 (2 MiB) trains.
    let iwae = latent::ImportanceWeighted::new(5).unwrap();
    fit(&mut model, &iwae, &train, &test, &config, &dev).unwrap();
    // The default limit (half the available memory) refuses a billion samples.
    let config = TrainConfig {
        memory_limit: None,
        ..config
    };
    let huge = Elbo::new(1_000_000_000).unwrap();
    assert!(matches!(
        fit(&mut model, &huge, &train, &test, &config, &dev),
        Err(Error::MemoryLimit { .. })
    ));
}
