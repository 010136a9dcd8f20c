//! Persistent worker threads for the data-parallel step and the optimizer's update.
//!
//! A training step hands work to the other cores twice (the replicas' backward passes,
//! then the optimizer's split update), every 2–3 ms. Spawning a thread for each
//! (`std::thread::scope`) costs a thread creation, and waking a sleeping thread on a
//! virtual machine costs the wake-up of a halted vCPU (~80 µs measured here for a
//! parked thread and for a rayon pool alike). These workers are started once per
//! process and spin between jobs for [`SPIN`] (yielding after [`SPIN_YIELD`], so an
//! oversubscribed machine still makes progress) before they park, so a step's handoff
//! finds them awake. [`run_with`] is a scope: it returns only when every job has
//! finished, so jobs may borrow from the caller's stack, and it re-raises a job's
//! panic on the caller's thread.
//!
//! A worker serves one caller at a time; a caller that finds one busy (two trainings
//! in one process, as in parallel tests) runs its jobs on scoped threads instead, with
//! the same results.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long an idle worker spins for its next job before it parks.
pub(crate) const SPIN: Duration = Duration::from_millis(2);
/// How long an idle worker (or a waiting caller) spins before it starts yielding its
/// core between checks.
pub(crate) const SPIN_YIELD: Duration = Duration::from_micros(50);

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Worker {
    /// Held by the caller that owns this worker for the duration of [`run_with`].
    busy: Mutex<()>,
    slot: Mutex<Option<Job>>,
    has_job: AtomicBool,
    sleeping: AtomicBool,
    thread: OnceLock<Thread>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The process's workers, started on first use.
static WORKERS: Mutex<Vec<Arc<Worker>>> = Mutex::new(Vec::new());

/// Workers `0..n`, starting those not yet running; `None` if a thread cannot start.
fn workers(n: usize) -> Option<Vec<Arc<Worker>>> {
    let mut all = lock(&WORKERS);
    while all.len() < n {
        let w = Arc::new(Worker {
            busy: Mutex::new(()),
            slot: Mutex::new(None),
            has_job: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            thread: OnceLock::new(),
        });
        let served = Arc::clone(&w);
        let handle = std::thread::Builder::new()
            .name(format!("latent-worker-{}", all.len() + 1))
            .spawn(move || serve(&served))
            .ok()?;
        let _ = w.thread.set(handle.thread().clone());
        all.push(w);
    }
    Some(all[..n].to_vec())
}

/// A worker's loop: spin for a job, park after [`SPIN`] idle, run it, repeat.
fn serve(w: &Worker) {
    crate::kernels::flush_subnormals_forever();
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        while !w.has_job.load(Ordering::Acquire) {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) {
                let idle = start.elapsed();
                if idle > SPIN {
                    w.sleeping.store(true, Ordering::SeqCst);
                    if !w.has_job.load(Ordering::SeqCst) {
                        std::thread::park();
                    }
                    w.sleeping.store(false, Ordering::SeqCst);
                } else if idle > SPIN_YIELD {
                    std::thread::yield_now();
                }
            }
            std::hint::spin_loop();
        }
        let job = lock(&w.slot).take();
        w.has_job.store(false, Ordering::Release);
        if let Some(job) = job {
            job();
        }
    }
}

/// One job's result, on the caller's stack until the job has finished.
struct Outcome<T> {
    result: Mutex<Option<std::thread::Result<T>>>,
    done: AtomicBool,
}

/// Waits for every outcome's `done`, even while unwinding from the caller's panic:
/// the jobs borrow from the caller's frame.
struct WaitAll<'o, T>(&'o [Outcome<T>]);

impl<T> Drop for WaitAll<'_, T> {
    fn drop(&mut self) {
        for o in self.0 {
            let start = Instant::now();
            while !o.done.load(Ordering::Acquire) {
                if start.elapsed() > SPIN_YIELD {
                    std::thread::yield_now();
                }
                std::hint::spin_loop();
            }
        }
    }
}

/// Runs `jobs[i]` on worker `i + 1` and `main` on this thread; returns `main`'s
/// result and the jobs' results in order once all have finished.
///
/// # Panics
/// Re-raises the panic of `main` or of a job (the first in order), after every job
/// has finished.
pub(crate) fn run_with<'a, T, R>(
    jobs: Vec<Box<dyn FnOnce() -> T + Send + 'a>>,
    main: impl FnOnce() -> R,
) -> (R, Vec<T>)
where
    T: Send + 'a,
{
    if jobs.is_empty() {
        return (main(), Vec::new());
    }
    let Some(ws) = workers(jobs.len()) else {
        return scoped(jobs, main);
    };
    let guards: Vec<_> = ws.iter().filter_map(|w| w.busy.try_lock().ok()).collect();
    if guards.len() < ws.len() {
        drop(guards);
        return scoped(jobs, main);
    }
    let outcomes: Vec<Outcome<T>> = jobs
        .iter()
        .map(|_| Outcome {
            result: Mutex::new(None),
            done: AtomicBool::new(false),
        })
        .collect();
    let main_result = {
        let wait = WaitAll(&outcomes);
        for ((job, w), o) in jobs.into_iter().zip(&ws).zip(&outcomes) {
            let o: *const Outcome<T> = o;
            let o = o as usize;
            let run: Box<dyn FnOnce() + Send + 'a> = Box::new(move || {
                let r = catch_unwind(AssertUnwindSafe(job));
                // SAFETY: `outcomes` outlives this job: the caller does not leave
                // this scope before `done` is set (`WaitAll`), and nothing here
                // touches the outcome after that store.
                let o = unsafe { &*(o as *const Outcome<T>) };
                *lock(&o.result) = Some(r);
                o.done.store(true, Ordering::Release);
            });
            // SAFETY: the job borrows data of lifetime 'a; `WaitAll` keeps this frame
            // (and so every borrow) alive until the job has finished running.
            let run: Job = unsafe { std::mem::transmute::<_, Job>(run) };
            *lock(&w.slot) = Some(run);
            w.has_job.store(true, Ordering::SeqCst);
            if w.sleeping.load(Ordering::SeqCst) {
                if let Some(t) = w.thread.get() {
                    t.unpark();
                }
            }
        }
        let r = catch_unwind(AssertUnwindSafe(main));
        drop(wait);
        r
    };
    drop(guards);
    let mut results = Vec::with_capacity(outcomes.len());
    let mut panic: Option<Box<dyn Any + Send>> = None;
    for o in outcomes {
        match o
            .result
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some(Ok(v)) => results.push(v),
            Some(Err(p)) => {
                panic.get_or_insert(p);
            }
            None => unreachable!("a finished job leaves its result"),
        }
    }
    match main_result {
        Err(p) => resume_unwind(p),
        Ok(r) => match panic {
            Some(p) => resume_unwind(p),
            None => (r, results),
        },
    }
}

/// [`run_with`] on scoped threads spawned for this call.
fn scoped<'a, T: Send + 'a, R>(
    jobs: Vec<Box<dyn FnOnce() -> T + Send + 'a>>,
    main: impl FnOnce() -> R,
) -> (R, Vec<T>) {
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs.into_iter().map(|j| s.spawn(j)).collect();
        let r = main();
        let results = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| resume_unwind(e)))
            .collect();
        (r, results)
    })
}

#[cfg(test)]
mod tests {
    use super::run_with;

    #[test]
    fn jobs_borrow_the_callers_data_and_return_in_order() {
        let data: Vec<u64> = (0..1000).collect();
        for _ in 0..200 {
            let jobs: Vec<Box<dyn FnOnce() -> u64 + Send + '_>> = (1..4)
                .map(|j| {
                    let d = &data;
                    Box::new(move || d.iter().map(|x| x * j).sum::<u64>()) as Box<_>
                })
                .collect();
            let (m, rest) = run_with(jobs, || data.iter().sum::<u64>());
            assert_eq!(m, 499_500);
            assert_eq!(rest, vec![499_500, 999_000, 1_498_500]);
        }
    }

    #[test]
    fn a_jobs_panic_reaches_the_caller_after_all_finish() {
        let flag = std::sync::atomic::AtomicBool::new(false);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let jobs: Vec<Box<dyn FnOnce() + Send + '_>> = vec![
                Box::new(|| panic!("job failed")),
                Box::new(|| {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                }),
            ];
            run_with(jobs, || ());
        }));
        assert!(r.is_err());
        assert!(flag.load(std::sync::atomic::Ordering::SeqCst));
        // The workers still serve after a panic.
        let jobs: Vec<Box<dyn FnOnce() -> i32 + Send>> = vec![Box::new(|| 7)];
        assert_eq!(run_with(jobs, || 1), (1, vec![7]));
    }
}
