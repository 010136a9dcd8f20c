//! A checkpoint opened from Python: `docs/python/decode.py` (numpy only) decodes
//! latents of the reference-sized VAE to the same Bernoulli means as
//! `latent::eval::explore::decode`, within 1e-5. Needs `python3` with numpy; without numpy
//! it is installed into a throwaway virtual environment under the target directory,
//! and without Python (or without network for pip) the test prints why it skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dfdx::prelude::*;
use latent::eval::explore::decode;
use latent::train::{save_checkpoint_with, CheckpointMeta, Describe};
use latent_models::{mlp_vae, MlpVae};

/// A Python with numpy, or why there is none.
fn python_with_numpy() -> Result<PathBuf, String> {
    let has_numpy = |py: &Path| {
        Command::new(py)
            .args(["-c", "import numpy"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let system = PathBuf::from("python3");
    if Command::new(&system).arg("--version").output().is_err() {
        return Err("no python3 on PATH".into());
    }
    if has_numpy(&system) {
        return Ok(system);
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-interop-venv");
    let py = venv.join("bin/python");
    if has_numpy(&py) {
        return Ok(py);
    }
    let made = Command::new(&system)
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    let installed = made
        && Command::new(&py)
            .args(["-m", "pip", "install", "-q", "numpy"])
            .status()
            .is_ok_and(|s| s.success());
    if installed && has_numpy(&py) {
        Ok(py)
    } else {
        Err("numpy could not be installed into a virtual environment (no network?)".into())
    }
}

#[test]
fn numpy_decodes_a_checkpoint_as_latent_does() {
    let python = match python_with_numpy() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let dev = Cpu::seed_from_u64(4);
    let model: MlpVae<Const<784>, usize, usize, f32, Cpu> =
        mlp_vae(&dev, (Const, 400, 20)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    save_checkpoint_with(&model, &[], &CheckpointMeta::new(Some(model.spec())), &path).unwrap();

    let z: Vec<f64> = (0..5 * 20)
        .map(|i| ((i * 37) % 17) as f64 / 4.0 - 2.0)
        .collect();
    let ours: Vec<f32> = decode(&model, &z, 20, &dev).unwrap().as_vec();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/python/decode.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        serde_json::to_string(&z).unwrap().as_bytes(),
    )
    .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{} failed", script.display());
    let theirs: Vec<Vec<f64>> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((theirs.len(), theirs[0].len()), (5, 784));
    let worst = theirs
        .iter()
        .flatten()
        .zip(&ours)
        .map(|(a, &b)| (a - b as f64).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-5, "numpy and latent differ by {worst}");
    // Not a constant picture: the decoder depends on z.
    assert!(theirs[0] != theirs[1]);
}
