//! [`ThreadPool`]: persistent workers that run one closure on every thread, fork-join style.
//!
//! `run(f)` calls `f(i, n)` once for each thread index `i` in `0..n` (the caller is index 0) and
//! returns when all calls have finished. A forward pass calls `run` hundreds of times per token,
//! so handing out a job must cost microseconds, not a futex round trip: the caller publishes the
//! job by bumping an atomic generation; workers spin on it for a short while (`SPIN`) after
//! each job and only then park on a condition variable, so an idle pool does not burn CPU.
//!
//! Each index is *claimed* (a bit in the same atomic word as the generation) by whoever gets
//! to it first: its worker, or the caller once its own index is done. So on a busy machine a
//! worker that has not been scheduled yet never stalls the caller — the caller runs that index
//! itself (for [`crate::matmul()`], whose threads take row chunks from a shared counter, that
//! index then finds no work left).

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker polls for the next job before parking.
const SPIN: Duration = Duration::from_micros(200);

/// The job as the workers see it: a borrowed closure whose lifetime has been erased.
type Job = *const (dyn Fn(usize, usize) + Sync);

/// Most threads a pool has (one claim bit each in [`Shared::state`]).
const MAX_THREADS: usize = 32;

struct Shared {
    /// Generation (high 32 bits, bumped for every job) and the claim bits of the job's indices
    /// (low 32 bits; bit i set = index i taken by its worker or by the caller).
    state: AtomicU64,
    /// Indices of the current job that have finished (bit i), for the caller to wait on.
    done: AtomicU64,
    /// The current job; written by `run` only while no worker can be reading it (before the
    /// generation bump, after the countdown of the previous job reached zero).
    job: UnsafeCell<Option<Job>>,
    /// A worker's call panicked during the current job.
    panicked: AtomicBool,
    shutdown: AtomicBool,
    /// Threads in the pool, the caller included (set by `run` with each job).
    n_threads: AtomicUsize,
    /// Workers parked (or about to park) on `wake`; guarded for the lost-wakeup check by `park`.
    sleepers: AtomicUsize,
    park: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is the only non-Sync field. It is written by `run` only when no worker reads it
// (see the field's comment; the SeqCst generation bump publishes the write, and the countdown's
// Release/Acquire orders every worker's read before the next write), and the pointee is `Sync`.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer is only dereferenced while `run` keeps its closure alive.
unsafe impl Send for Shared {}

/// A fixed set of worker threads that run closures in parallel with the caller.
pub struct ThreadPool {
    n_threads: usize,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Held for the duration of a parallel `run`; a `run` that finds it taken (a nested call or
    /// another thread's job in flight) runs serially instead of waiting.
    busy: Mutex<()>,
}

impl ThreadPool {
    /// A pool of `n_threads` threads in all, the caller included (0 is treated as 1, more than
    /// 32 as 32). Spawns `n_threads - 1` workers.
    pub fn new(n_threads: usize) -> Self {
        let wanted = n_threads.clamp(1, MAX_THREADS);
        let shared = Arc::new(Shared {
            state: AtomicU64::new(0),
            done: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            n_threads: AtomicUsize::new(1),
            sleepers: AtomicUsize::new(0),
            park: Mutex::new(()),
            wake: Condvar::new(),
        });
        // Workers learn the thread count with each job, so a failed spawn (out of threads)
        // simply gives a smaller pool.
        let mut workers = Vec::with_capacity(wanted - 1);
        for index in 1..wanted {
            let shared = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("sparetire-{index}"))
                .spawn(move || worker(&shared, index));
            match spawned {
                Ok(h) => workers.push(h),
                Err(_) => break,
            }
        }
        ThreadPool {
            n_threads: workers.len() + 1,
            shared,
            workers,
            busy: Mutex::new(()),
        }
    }

    /// Threads in the pool, the caller included.
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Calls `f(i, n_threads)` once for every `i` in `0..n_threads`, in parallel, and returns
    /// when all calls are done. The calling thread runs index 0.
    ///
    /// If any call panics, the others still finish and the panic is then resumed on the caller.
    /// A `run` nested inside a job (or racing another thread's `run` on the same pool) calls
    /// every index serially on the current thread rather than deadlocking.
    pub fn run<F: Fn(usize, usize) + Sync>(&self, f: F) {
        let n = self.n_threads;
        let _busy = match self.busy.try_lock() {
            Ok(g) if n > 1 => g,
            Err(TryLockError::Poisoned(e)) if n > 1 => e.into_inner(),
            _ => {
                for i in 0..n {
                    f(i, n);
                }
                return;
            }
        };
        let sh = &*self.shared;
        let job: &(dyn Fn(usize, usize) + Sync) = &f;
        // SAFETY: this erases the closure's lifetime so workers can hold a raw pointer to it.
        // A worker dereferences it only after claiming an index of this generation, and `run`
        // does not return (or unwind) before every claimed index has set its `done` bit, so no
        // worker uses the pointer after `f` is gone.
        let ptr: Job = unsafe { std::mem::transmute::<_, Job>(job as *const _) };
        // SAFETY: no worker reads `job` now: every index of the previous job finished (we
        // waited for it, holding `busy`), and workers read `job` only after claiming an index
        // of a new generation, which does not exist before the store to `state` below.
        unsafe { *sh.job.get() = Some(ptr) };
        sh.panicked.store(false, Ordering::Relaxed);
        sh.n_threads.store(n, Ordering::Relaxed);
        sh.done.store(0, Ordering::Relaxed);
        let generation = (sh.state.load(Ordering::Relaxed) >> 32).wrapping_add(1);
        // Index 0 is the caller's from the start.
        sh.state.store((generation << 32) | 1, Ordering::SeqCst);
        if sh.sleepers.load(Ordering::SeqCst) > 0 {
            // Taking the lock orders this notify after any sleeper's check-then-wait.
            let _g = sh.park.lock().unwrap_or_else(|e| e.into_inner());
            sh.wake.notify_all();
        }
        let mut mine = catch_unwind(AssertUnwindSafe(|| f(0, n)));
        let mut done_here = 1u64;
        // Indices whose worker has not shown up yet: run them here rather than wait.
        for i in 1..n {
            if claim(sh, generation, i) {
                let r = catch_unwind(AssertUnwindSafe(|| f(i, n)));
                if mine.is_ok() {
                    mine = r;
                }
                done_here |= 1 << i;
            }
        }
        let all = (1u64 << n) - 1;
        let mut spins = 0u32;
        while sh.done.load(Ordering::Acquire) | done_here != all {
            if spins < 1 << 12 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                // The worker running an index was descheduled (a busy machine): let it run.
                std::thread::yield_now();
            }
        }
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if sh.panicked.load(Ordering::Relaxed) {
            panic!("a ThreadPool worker panicked");
        }
    }
}

/// Claims index `i` of job `generation`; false if it was taken, or that job is over.
fn claim(sh: &Shared, generation: u64, i: usize) -> bool {
    let bit = 1u64 << i;
    let mut s = sh.state.load(Ordering::SeqCst);
    loop {
        if s >> 32 != generation || s & bit != 0 {
            return false;
        }
        match sh
            .state
            .compare_exchange_weak(s, s | bit, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => return true,
            Err(now) => s = now,
        }
    }
}

fn worker(sh: &Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            if sh.shutdown.load(Ordering::Acquire) {
                return;
            }
            if sh.state.load(Ordering::SeqCst) >> 32 != seen {
                break;
            }
            spins += 1;
            if !spins.is_multiple_of(64) || start.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            let guard = sh.park.lock().unwrap_or_else(|e| e.into_inner());
            sh.sleepers.fetch_add(1, Ordering::SeqCst);
            // Re-checked after announcing ourselves: `run` publishes the generation before
            // reading `sleepers`, so either it sees us (and notifies under the lock) or we see
            // its new generation.
            let guard = if sh.state.load(Ordering::SeqCst) >> 32 == seen
                && !sh.shutdown.load(Ordering::SeqCst)
            {
                sh.wake.wait(guard).unwrap_or_else(|e| e.into_inner())
            } else {
                guard
            };
            sh.sleepers.fetch_sub(1, Ordering::SeqCst);
            drop(guard);
        }
        seen = sh.state.load(Ordering::SeqCst) >> 32;
        if !claim(sh, seen, index) {
            // The caller ran our index already (or a newer job began: the loop above sees it).
            continue;
        }
        // SAFETY: `run` wrote `job` before publishing generation `seen`, whose index we hold,
        // and does not write it again before that index's `done` bit is set below.
        let job = unsafe { *sh.job.get() };
        let n = sh.n_threads.load(Ordering::Relaxed);
        let ok = match job {
            // SAFETY: `run` keeps the closure alive until our `done` bit is set.
            Some(p) => catch_unwind(AssertUnwindSafe(|| unsafe { (*p)(index, n) })).is_ok(),
            None => true,
        };
        if !ok {
            sh.panicked.store(true, Ordering::Relaxed);
        }
        sh.done.fetch_or(1 << index, Ordering::Release);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _g = self.shared.park.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("n_threads", &self.n_threads)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_index_runs_once_per_call() {
        let pool = ThreadPool::new(4);
        assert_eq!(pool.n_threads(), 4);
        for _ in 0..200 {
            let hits: Vec<AtomicUsize> = (0..4).map(|_| AtomicUsize::new(0)).collect();
            pool.run(|i, n| {
                assert_eq!(n, 4);
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn worker_panic_propagates_without_deadlock_and_pool_survives() {
        let pool = ThreadPool::new(3);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(|i, _| {
                if i == 2 {
                    panic!("boom");
                }
            })
        }));
        assert!(r.is_err());
        let count = AtomicUsize::new(0);
        pool.run(|_, _| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn nested_run_is_serial_not_deadlocked() {
        let pool = ThreadPool::new(2);
        let count = AtomicUsize::new(0);
        pool.run(|_, _| {
            pool.run(|_, _| {
                count.fetch_add(1, Ordering::Relaxed);
            })
        });
        // At least one of the two outer calls ran its inner job serially; all 4 calls happened.
        assert_eq!(count.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn idle_workers_park_instead_of_spinning() {
        let pool = ThreadPool::new(3);
        pool.run(|_, _| {});
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.shared.sleepers.load(Ordering::SeqCst) != 2 {
            assert!(
                Instant::now() < deadline,
                "workers still spinning after 5 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // A parked pool still wakes up for the next job.
        let count = AtomicUsize::new(0);
        pool.run(|_, _| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 3);
    }

    /// `cargo test --release -p sparetire-quant -- --ignored --nocapture run_overhead`
    #[test]
    #[ignore] // why: a measurement, not a check (timing is never asserted)
    fn run_overhead() {
        let pool = ThreadPool::new(2);
        let n = 20_000;
        let t = Instant::now();
        for _ in 0..n {
            pool.run(|_, _| {});
        }
        eprintln!(
            "pool.run (2 threads, empty job): {:?} per call",
            t.elapsed() / n
        );
    }
}
