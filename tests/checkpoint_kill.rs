//! `kill -9` while checkpoints are being written: a child process writes the
//! reference VAE's checkpoint (weights, Adam-sized extra tensors, metadata) over and
//! over, and is killed at a random moment, 24 times. Every time the checkpoint left
//! behind loads and describes its model (the write is atomic: a temporary file,
//! synced, then renamed), and the next claim of the directory removes the temporary
//! file of the interrupted write.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dfdx::prelude::*;
use latent::train::{
    load_checkpoint, read_checkpoint_meta, save_checkpoint_with, CheckpointMeta, Describe, RunDir,
};
use latent_models::{mlp_vae, MlpVae};
use rand::{Rng, SeedableRng};

type Model = MlpVae<Const<784>, usize, usize, f32, Cpu>;

fn model(seed: u64) -> Model {
    mlp_vae(&Cpu::seed_from_u64(seed), (Const, 400, 20)).unwrap()
}

/// Run by the test below in a child process (ignored otherwise): writes checkpoints
/// into `$LATENT_CHECKPOINT_CHILD` until killed, with a marker after the first.
#[test]
#[ignore = "the child process of checkpoints_survive_kill_9_mid_write"]
fn checkpoint_writer_child() {
    let Some(dir) = std::env::var_os("LATENT_CHECKPOINT_CHILD").map(PathBuf::from) else {
        return;
    };
    let m = model(1);
    let extra: Vec<(String, Vec<usize>, Vec<f32>)> = (0..4)
        .map(|i| {
            (
                format!("optimizer.extra.{i}"),
                vec![400, 784],
                vec![i as f32; 400 * 784],
            )
        })
        .collect();
    for round in 0u64.. {
        let mut meta = CheckpointMeta::new(Some(m.spec()));
        meta.crate_version = format!("round {round}");
        save_checkpoint_with(&m, &extra, &meta, dir.join("checkpoint.safetensors")).unwrap();
        if round == 0 {
            std::fs::write(dir.join("marker"), b"1").unwrap();
        }
    }
}

fn temporaries(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .count()
}

#[test]
fn checkpoints_survive_kill_9_mid_write() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let (mut valid, mut leftover) = (0, 0);
    let trials = 24;
    for _ in 0..trials {
        let dir = tempfile::tempdir().unwrap();
        let mut child = common::child_until_marker(
            "checkpoint_writer_child",
            "LATENT_CHECKPOINT_CHILD",
            dir.path(),
            Duration::from_secs(60),
        );
        // Aim at the write itself: wait until a temporary file exists (the tensors are
        // being written or synced), then a random few milliseconds; half the trials
        // kill at a random moment instead.
        if rng.gen_bool(0.5) {
            let seen = Instant::now();
            while temporaries(dir.path()) == 0 && seen.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_micros(200));
            }
            std::thread::sleep(Duration::from_micros(rng.gen_range(0..3000)));
        } else {
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..120)));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let path = dir.path().join("checkpoint.safetensors");
        let meta = read_checkpoint_meta(&path).unwrap().unwrap();
        assert!(meta.crate_version.starts_with("round "));
        let mut loaded = model(2);
        load_checkpoint(&mut loaded, &path).unwrap();
        assert_eq!(
            loaded.decoder.2.weight.as_vec(),
            model(1).decoder.2.weight.as_vec()
        );
        valid += 1;
        leftover += temporaries(dir.path());
        // Claiming the directory again removes what the interrupted write left.
        drop(RunDir::claim(dir.path(), true).unwrap());
        assert_eq!(temporaries(dir.path()), 0);
    }
    eprintln!(
        "kill -9 during checkpoint writes: {valid} of {trials} checkpoints valid, \
         {leftover} interrupted temporary files (removed by the next claim)"
    );
    assert_eq!(valid, trials);
}
