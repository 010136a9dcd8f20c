//! Training across processes with MPI (the `mpi` feature): `mpirun -np 2` runs this
//! test binary's `mpi_worker` entry on two ranks, and the tests compare what the ranks
//! trained with the same run in one process.
//!
//! - The VAE, 2 ranks × 1 thread against one process with 2 threads: the same loss
//!   trajectory and the same parameters, bit for bit (same split of each batch, same
//!   random streams, a sum of two operands either way), on every rank.
//! - The VQ-VAE (no noise in its loss) with a global batch of 128 (64 per rank) against
//!   one process with 1 thread and batch 128: the same loss trajectory to f32
//!   summation tolerance, identical parameters on both ranks.
//! - A rank killed by `kill -9` after an epoch: the job ends with an error instead of
//!   waiting forever, and the last checkpoint, written by rank 0, stays whole.
//!
//! Needs `mpirun` (Open MPI: `apt-get install libopenmpi-dev openmpi-bin`).

use std::path::Path;
use std::process::Command;

use dfdx::prelude::*;
use latent::data::{Binarization, Dataset};
use latent::distributed::{parameter_checksum, world, Mpi};
use latent::train::{fit, fit_task, EpochCallback, TrainConfig, TrainReport};
use latent::Elbo;
use latent_models::{conv_vq_vae, mlp_vae, CodebookEma, CodebookUpdate, ConvVqVae, VqVaeTask};

type Dev = Cpu;
const SCENARIO: &str = "LATENT_MPI_SCENARIO";
const OUT: &str = "LATENT_MPI_OUT";

fn data(n_train: usize, n_test: usize) -> (Dataset, Dataset) {
    let s = latent::data::embedded().unwrap();
    (s.train.take(n_train), s.test.take(n_test))
}

/// One of the scenarios, as a rank of an MPI job or as the single process it is
/// compared with; `out` is the run directory.
fn run(scenario: &str, out: &Path) -> TrainReport {
    let dev = Dev::seed_from_u64(7);
    match scenario {
        "vae" | "vae-killed" => {
            let (train, test) = data(1024, 256);
            let mut model = mlp_vae::<usize, usize, usize, f32, Dev>(&dev, (784, 64, 8)).unwrap();
            let killed = scenario == "vae-killed";
            let config = TrainConfig {
                epochs: if killed { 5 } else { 3 },
                binarization: Binarization::Dynamic,
                seed: 11,
                out_dir: Some(out.to_path_buf()),
                overwrite: true,
                // 2 ranks × 1 thread here, 1 process × 2 threads in the comparison.
                threads: if world().size() > 1 { 1 } else { 2 },
                on_epoch: killed.then(|| {
                    EpochCallback::new(|m| {
                        if world().rank() == 1 && m.epoch == 2 {
                            let pid = std::process::id().to_string();
                            let _ = Command::new("kill").args(["-9", &pid]).status();
                        }
                        Ok(())
                    })
                }),
                ..Default::default()
            };
            fit(&mut model, &Elbo::default(), &train, &test, &config, &dev).unwrap()
        }
        "vq" => {
            let (train, test) = data(512, 128);
            let mut model: ConvVqVae<8, Const<16>, f32, Dev> = conv_vq_vae(&dev, Const).unwrap();
            let ema = CodebookEma::new(16, 8, 0.9, 1e-5).unwrap();
            let mut task = VqVaeTask::<Const<784>>::new(0.25, CodebookUpdate::Ema(ema), 0).unwrap();
            let config = TrainConfig {
                epochs: 4,
                threads: 1,
                out_dir: Some(out.to_path_buf()),
                overwrite: true,
                ..Default::default()
            };
            fit_task(&mut model, &mut task, &train, &test, &config, &dev).unwrap()
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// Where rank 0 writes its report for a run into `out`: beside it, in a file, as the
/// several-kilobyte JSON line on stdout could be cut by the other rank's output, which
/// `mpirun` forwards in chunks (a CI run lost the report that way).
fn report_path(out: &Path) -> std::path::PathBuf {
    out.with_extension("report.json")
}

/// Not a test of its own: the entry point of each rank when `mpirun` starts this binary
/// with `LATENT_MPI_SCENARIO` set (it returns at once otherwise). Prints every rank's
/// parameter checksum; rank 0 writes its report to [`report_path`].
#[test]
fn mpi_worker() {
    let Ok(scenario) = std::env::var(SCENARIO) else {
        return;
    };
    let out = std::env::var(OUT).unwrap();
    let mpi = Mpi::init().unwrap();
    let report = run(&scenario, Path::new(&out));
    let w = world();
    println!(
        "LATENT_CHECKSUM {} {:016x}",
        w.rank(),
        report.parameter_checksum
    );
    if w.rank() == 0 {
        let json = serde_json::to_string(&report).unwrap();
        std::fs::write(report_path(Path::new(&out)), json).unwrap();
    }
    drop(mpi);
}

/// What `mpirun -np 2` of `scenario` gave: its exit status, each rank's printed
/// checksum, rank 0's report (from [`report_path`]) and the output.
fn mpirun(scenario: &str, out: &Path) -> (bool, Vec<String>, Option<TrainReport>, String) {
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("mpirun")
        .args(["-np", "2", "--oversubscribe", "-x", SCENARIO, "-x", OUT])
        .arg(&exe)
        .args(["--exact", "mpi_worker", "--nocapture", "--test-threads=1"])
        .env(SCENARIO, scenario)
        .env(OUT, out)
        // Containers and CI often run as root, which Open MPI refuses unless told.
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()
        .expect("mpirun (apt-get install libopenmpi-dev openmpi-bin)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let text = format!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let mut sums = vec![String::new(); 2];
    // The harness's own lines may share a line with ours: find the markers anywhere.
    for line in stdout.lines() {
        if let Some((_, rest)) = line.split_once("LATENT_CHECKSUM ") {
            let mut parts = rest.split_whitespace();
            let rank: usize = parts.next().unwrap().parse().unwrap();
            sums[rank] = parts.next().unwrap().to_string();
        }
    }
    let report = std::fs::read_to_string(report_path(out))
        .ok()
        .map(|json| serde_json::from_str(&json).unwrap());
    (output.status.success(), sums, report, text)
}

fn losses(r: &TrainReport) -> Vec<f64> {
    r.epochs.iter().map(|m| m.train_loss).collect()
}

#[test]
fn two_vae_ranks_train_what_one_process_with_two_threads_does() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, sums, report, text) = mpirun("vae", &tmp.path().join("mpi"));
    assert!(ok, "mpirun failed:\n{text}");
    let report = report.expect("rank 0's report");
    assert_eq!(sums[0], sums[1], "ranks differ:\n{text}");
    let one = run("vae", &tmp.path().join("one"));
    assert_eq!(losses(&report), losses(&one), "loss trajectories");
    assert_eq!(sums[0], format!("{:016x}", one.parameter_checksum));
    // Rank 0 wrote the run: its checkpoint holds the parameters every rank has.
    let mut model =
        mlp_vae::<usize, usize, usize, f32, Dev>(&Dev::default(), (784, 64, 8)).unwrap();
    latent::train::load_checkpoint(&mut model, tmp.path().join("mpi/checkpoint.safetensors"))
        .unwrap();
    assert_eq!(parameter_checksum(&model).unwrap(), one.parameter_checksum);
    assert!(
        losses(&one)[2] < losses(&one)[0],
        "it trains: {:?}",
        losses(&one)
    );
}

#[test]
fn two_vq_vae_ranks_of_batch_64_train_as_one_of_batch_128() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, sums, report, text) = mpirun("vq", &tmp.path().join("mpi"));
    assert!(ok, "mpirun failed:\n{text}");
    let report = report.expect("rank 0's report");
    assert_eq!(sums[0], sums[1], "ranks differ:\n{text}");
    let one = run("vq", &tmp.path().join("one"));
    let (a, b) = (losses(&report), losses(&one));
    assert_eq!(a.len(), 4);
    for (x, y) in a.iter().zip(&b) {
        // f32 sums in another order: a few ulps of the gradient, amplified by 8 Adam steps.
        assert!((x - y).abs() <= 1e-4 * y.abs(), "losses {a:?} vs {b:?}");
    }
    for (x, y) in report.epochs.iter().zip(&one.epochs) {
        let (u, v) = (x.test_elbo, y.test_elbo);
        assert!((u - v).abs() <= 1e-4 * v.abs(), "test bound {u} vs {v}");
    }
    assert!(b[3] < b[0], "it trains: {b:?}");
}

#[test]
fn a_killed_rank_ends_the_job_and_leaves_the_checkpoint_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("mpi");
    let start = std::time::Instant::now();
    let (ok, _, report, text) = mpirun("vae-killed", &out);
    assert!(!ok, "the job should fail when a rank dies:\n{text}");
    assert!(report.is_none(), "rank 0 should not finish:\n{text}");
    assert!(
        start.elapsed().as_secs() < 120,
        "took {:?}",
        start.elapsed()
    );
    let meta = latent::train::read_checkpoint_meta(out.join("checkpoint.safetensors"))
        .unwrap()
        .unwrap();
    assert_eq!(meta.training.unwrap().epoch, 2);
    let mut model =
        mlp_vae::<usize, usize, usize, f32, Dev>(&Dev::default(), (784, 64, 8)).unwrap();
    latent::train::load_checkpoint(&mut model, out.join("checkpoint.safetensors")).unwrap();
}
