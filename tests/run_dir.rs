//! Run directories: one run at a time, no silent mixing with an earlier run, no stale
//! temporary files, files with the user's permissions.

use latent::train::run_dir::{RunDir, GENERATED_DIR, LOCK_FILE};
use latent::Error;

#[test]
fn a_claim_locks_nests_and_releases() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let claim = RunDir::claim(&out, false).unwrap();
    assert!(claim.owns_lock());
    let lock = std::fs::read_to_string(out.join(LOCK_FILE)).unwrap();
    assert_eq!(lock.trim(), std::process::id().to_string());
    // The same process claiming again (the trainer inside an example) nests.
    let inner = RunDir::claim(&out, false).unwrap();
    assert!(!inner.owns_lock());
    drop(inner);
    assert!(
        out.join(LOCK_FILE).exists(),
        "a nested claim leaves the lock"
    );
    drop(claim);
    assert!(!out.join(LOCK_FILE).exists(), "the owner removes the lock");
}

#[test]
fn a_live_holder_is_refused_and_a_dead_one_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    // Process 1 (init) is alive in every Linux process namespace.
    std::fs::write(dir.path().join(LOCK_FILE), "1\n").unwrap();
    match RunDir::claim(dir.path(), true) {
        Err(Error::RunDirBusy { pid, .. }) => assert_eq!(pid, 1),
        other => panic!("expected RunDirBusy, got {other:?}"),
    }
    // A pid no process can have (above the kernel's pid_max): stale, taken over.
    std::fs::write(dir.path().join(LOCK_FILE), "4294967295\n").unwrap();
    let claim = RunDir::claim(dir.path(), false).unwrap();
    assert!(claim.owns_lock());
}

#[test]
fn an_earlier_run_is_kept_unless_overwrite_and_stale_temporaries_go() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    std::fs::write(out.join("summary.json"), "{}").unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    std::fs::write(out.join(".checkpoint-abc.tmp"), "half").unwrap();
    match RunDir::claim(out, false) {
        Err(Error::RunDirOccupied { .. }) => {}
        other => panic!("expected RunDirOccupied, got {other:?}"),
    }
    assert!(
        out.join("summary.json").exists(),
        "nothing removed when refused"
    );
    assert!(
        !out.join(LOCK_FILE).exists(),
        "a refused claim leaves no lock"
    );
    let claim = RunDir::claim(out, true).unwrap();
    assert!(
        !out.join("summary.json").exists(),
        "the earlier run's output is gone"
    );
    assert!(
        !out.join(".checkpoint-abc.tmp").exists(),
        "stale temporary removed"
    );
    assert!(
        out.join("notes.txt").exists(),
        "files the toolkit did not write stay"
    );
    drop(claim);
}

#[cfg(target_os = "linux")]
#[test]
fn checkpoints_get_the_permissions_of_the_umask() {
    use dfdx::prelude::*;
    use std::os::unix::fs::PermissionsExt;
    let umask = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Umask:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(|m| u32::from_str_radix(m, 8).unwrap())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dev = Cpu::default();
    let layer: latent::nn::Linear<Const<3>, Const<2>, f32, Cpu> =
        latent::nn::Linear::new(&dev, Const, Const).unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    latent::train::save_checkpoint(&layer, &path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666 & !umask, "mode {mode:o} with umask {umask:o}");
}

/// A write that fails half-way (a full disk, simulated by the writer's error after
/// part of the content) leaves the earlier file as it was and no temporary file; a
/// write that succeeds replaces it whole.
#[test]
fn a_failed_atomic_write_leaves_the_earlier_file_whole() {
    use latent::train::run_dir::write_atomically;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("summary.json");
    std::fs::write(&path, b"{\"old\": true}\n").unwrap();
    let failed = write_atomically(&path, |w| {
        std::io::Write::write_all(w, b"{\"new\": ").unwrap();
        Err(latent::Error::io(
            dir.path(),
            std::io::Error::other("no space left on device"),
        ))
    });
    assert!(matches!(failed, Err(latent::Error::Io { .. })));
    assert_eq!(std::fs::read(&path).unwrap(), b"{\"old\": true}\n");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["summary.json".to_string()]);
    write_atomically(&path, |w| {
        std::io::Write::write_all(w, b"{\"new\": true}\n").map_err(|e| latent::Error::io(&path, e))
    })
    .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"{\"new\": true}\n");
}

/// What `generate` wrote from a run (its `generated/` directory) belongs to that run:
/// it alone marks an earlier run, and `overwrite` removes it with the run, leaving the
/// user's own files there.
#[test]
fn generated_pictures_go_with_their_run() {
    let dir = tempfile::tempdir().unwrap();
    let generated = dir.path().join(GENERATED_DIR);
    std::fs::create_dir_all(&generated).unwrap();
    std::fs::write(generated.join("samples.png"), b"old").unwrap();
    match RunDir::claim(dir.path(), false) {
        Err(Error::RunDirOccupied { .. }) => {}
        other => panic!("expected RunDirOccupied, got {other:?}"),
    }
    drop(RunDir::claim(dir.path(), true).unwrap());
    assert!(!generated.exists(), "an emptied generated/ goes");
    std::fs::create_dir_all(&generated).unwrap();
    std::fs::write(generated.join("latents.csv"), b"old").unwrap();
    std::fs::write(generated.join("notes.txt"), b"mine").unwrap();
    drop(RunDir::claim(dir.path(), true).unwrap());
    assert!(!generated.join("latents.csv").exists());
    assert_eq!(std::fs::read(generated.join("notes.txt")).unwrap(), b"mine");
}
