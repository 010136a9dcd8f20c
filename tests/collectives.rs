//! The agreement checks of training across processes, without MPI: a stand-in
//! communicator of two ranks plays rank 0, and "rank 1" mirrors it (the same data, the
//! same losses) except where a test makes it lie about its parameters or fail.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dfdx::prelude::*;
use latent::data::embedded;
use latent::distributed::{agree, check_agreement, install, parameter_checksum, Communicator};
use latent::train::{fit, TrainConfig};
use latent::{Elbo, Error, Result};
use latent_models::mlp_vae;

/// Rank 0 of two; rank 1 sends what rank 0 sends, but for its parameter checksum
/// (`flip` xor'ed in from the `honest`-th comparison on) and its status in `agree`
/// (`fails`).
struct Mirror {
    flip: u64,
    fails: bool,
    honest: usize,
    compared: AtomicUsize,
}

impl Mirror {
    fn new(flip: u64, fails: bool) -> Self {
        Self {
            flip,
            fails,
            honest: 0,
            compared: AtomicUsize::new(0),
        }
    }
}

impl Communicator for Mirror {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        2
    }
    fn all_reduce_sum_f32(&self, values: &mut [f32]) -> Result<()> {
        values.iter_mut().for_each(|v| *v *= 2.0);
        Ok(())
    }
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        values.iter_mut().for_each(|v| *v *= 2.0);
        Ok(())
    }
    fn all_gather_f64(&self, local: &[f64]) -> Result<Vec<Vec<f64>>> {
        Ok(vec![local.to_vec(), local.to_vec()])
    }
    fn all_gather_u64(&self, local: &[u64]) -> Result<Vec<Vec<u64>>> {
        let other = match local {
            // A status flag of `agree`.
            [0] | [1] if self.fails => vec![1],
            // A checksum (the replica counts are small numbers and pass unchanged).
            [c] if *c > 1 << 20 => {
                let n = self.compared.fetch_add(1, Ordering::SeqCst);
                vec![if n >= self.honest { c ^ self.flip } else { *c }]
            }
            _ => local.to_vec(),
        };
        Ok(vec![local.to_vec(), other])
    }
    fn broadcast_bytes(&self, _: &mut Vec<u8>) -> Result<()> {
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
    fn describe(&self) -> String {
        "two mirrored ranks".into()
    }
}

#[test]
fn a_rank_with_other_parameters_is_named() {
    let dev = Cpu::seed_from_u64(0);
    let model = mlp_vae::<usize, usize, usize, f32, Cpu>(&dev, (784, 16, 4)).unwrap();
    let sum = parameter_checksum(&model).unwrap();
    let honest = Mirror::new(0, false);
    assert_eq!(check_agreement(&honest, &model, 3).unwrap(), sum);
    let liar = Mirror::new(1, false);
    match check_agreement(&liar, &model, 3) {
        Err(Error::ReplicasDiverged {
            epoch: 3,
            ranks,
            checksums,
        }) => {
            assert_eq!(ranks, vec![1]);
            assert_eq!(checksums, vec![sum, sum ^ 1]);
        }
        other => panic!("expected a divergence, got {other:?}"),
    }
    // One changed weight changes the checksum.
    let mut other = model.clone();
    let mut w = other.decoder.0.weight.as_vec();
    w[0] += 1e-6;
    other.decoder.0.weight.copy_from(&w);
    assert_ne!(parameter_checksum(&other).unwrap(), sum);
}

#[test]
fn a_failure_on_one_rank_is_an_error_on_all() {
    let failing = Mirror::new(0, true);
    match agree(&failing, "in a test", Ok(5)) {
        Err(Error::PeerFailed { rank: 1, what }) => assert_eq!(what, "in a test"),
        other => panic!("expected rank 1's failure, got {other:?}"),
    }
    let own: Result<i32> = Err(Error::invalid("x", "mine"));
    assert!(matches!(
        agree(&failing, "in a test", own),
        Err(Error::InvalidSetting { .. })
    ));
    let fine = Mirror::new(0, false);
    assert_eq!(agree(&fine, "in a test", Ok(5)).unwrap(), 5);
}

/// The trainer compares what every rank was given (settings, training and test data:
/// three hashes) and then the parameters, at the start and after every epoch: a rank
/// that differs stops the run with the ranks named; with agreeing ranks it trains on and
/// rank 0 writes the run. (The one test of this binary that installs a world.)
#[test]
fn the_trainer_stops_when_ranks_disagree() {
    let s = embedded().unwrap();
    let (train, test) = (s.train.take(256), s.test.take(64));
    let dir = tempfile::tempdir().unwrap();
    // "Rank 1" answers the first `honest` hash comparisons truthfully, then lies.
    let run = |flip: u64, honest: usize, out: &std::path::Path| {
        install(Some(Arc::new(Mirror {
            honest,
            ..Mirror::new(flip, false)
        })));
        let dev = Cpu::seed_from_u64(1);
        let mut model = mlp_vae::<usize, usize, usize, f32, Cpu>(&dev, (784, 16, 4)).unwrap();
        let config = TrainConfig {
            epochs: 2,
            threads: 1,
            out_dir: Some(out.to_path_buf()),
            ..Default::default()
        };
        let result = fit(&mut model, &Elbo::default(), &train, &test, &config, &dev);
        install(None);
        result
    };
    // Other training data (the second hash).
    match run(1 << 40, 1, &dir.path().join("data")) {
        Err(Error::InvalidSetting { name, reason }) => {
            assert_eq!(name, "processes");
            assert!(
                reason.contains("[1]") && reason.contains("training data"),
                "{reason}"
            );
        }
        other => panic!("expected other training data, got {other:?}"),
    }
    // Other parameters at the start, after rank 0's weights were sent.
    assert!(matches!(
        run(1 << 40, 3, &dir.path().join("start")),
        Err(Error::ReplicasDiverged { epoch: 0, .. })
    ));
    // Other parameters after epoch 1.
    match run(1 << 40, 4, &dir.path().join("epoch")) {
        Err(Error::ReplicasDiverged {
            epoch: 1, ranks, ..
        }) => assert_eq!(ranks, vec![1]),
        other => panic!("expected a divergence after epoch 1, got {other:?}"),
    }
    let report = run(0, 0, &dir.path().join("honest")).unwrap();
    assert_eq!(report.epochs.len(), 2);
    assert!(dir.path().join("honest/checkpoint.safetensors").is_file());
}
