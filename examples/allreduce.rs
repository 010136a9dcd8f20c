//! Times the all-reduce a training step across processes adds: the sum of a gradient of
//! `--params` f32 values (default 652,824, the reference 784-400-20 VAE's 2.61 MB) over
//! the ranks of `mpirun -np N`, as [`latent::train::DataParallel::gradients`] calls it.
//!
//! ```text
//! cargo build --release --features mpi --example allreduce
//! mpirun -np 2 target/release/examples/allreduce
//! ```
//!
//! Prints (rank 0) the median and minimum time of `--reps` all-reduces after `--warmup`
//! untimed ones, and the bus bandwidth `2 (N − 1)/N · bytes / time` (the figure NCCL
//! and the OSU benchmarks report for a ring all-reduce).

use std::time::Instant;

use clap::Parser;
use latent::distributed::{world, Mpi};

/// Time the gradient all-reduce across the ranks of `mpirun`.
#[derive(Parser, Debug)]
struct Args {
    /// f32 values per all-reduce.
    #[arg(long, default_value_t = 652_824)]
    params: usize,
    /// Timed all-reduces.
    #[arg(long, default_value_t = 200)]
    reps: usize,
    /// Untimed all-reduces first.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
}

fn main() {
    let args = Args::parse();
    let mpi = match Mpi::init() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let w = world();
    let mut values: Vec<f32> = (0..args.params).map(|i| (i % 7) as f32 * 1e-3).collect();
    let mut times = Vec::with_capacity(args.reps);
    for rep in 0..args.warmup + args.reps {
        let start = Instant::now();
        if let Err(e) = w.all_reduce_sum_f32(&mut values) {
            eprintln!("error: {e}");
            w.abort(1);
        }
        if rep >= args.warmup {
            times.push(start.elapsed().as_secs_f64());
        }
        // Keep the values finite and the work the same on every repetition.
        values.iter_mut().for_each(|v| *v *= 0.5);
    }
    times.sort_by(f64::total_cmp);
    if w.rank() == 0 && !times.is_empty() {
        let (median, min) = (times[times.len() / 2], times[0]);
        let n = w.size() as f64;
        let bytes = 4.0 * args.params as f64;
        println!(
            "{}: all-reduce of {} f32 ({:.2} MB): median {:.3} ms, min {:.3} ms, bus bandwidth {:.2} GB/s",
            w.describe(),
            args.params,
            bytes / 1e6,
            median * 1e3,
            min * 1e3,
            2.0 * (n - 1.0) / n * bytes / median / 1e9
        );
    }
    drop(mpi);
}
