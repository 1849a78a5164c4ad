//! [`ThreadPool`]: persistent workers that run one closure on every thread, fork-join style.
//!
//! `run(f)` calls `f(i, n)` once for each thread index `i` in `0..n` (the caller is index 0) and
//! returns when all calls have finished. Workers sleep on a condition variable between jobs;
//! they are not spawned per call.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;

/// The job as the workers see it: a borrowed closure whose lifetime has been erased.
type Job = *const (dyn Fn(usize, usize) + Sync);

/// A `Job` that may cross threads.
#[derive(Clone, Copy)]
struct JobPtr(Job);
// SAFETY: the pointee is `Sync`, so sharing a reference to it across threads is fine; the
// pointer is only dereferenced while `ThreadPool::run` keeps the closure alive (see there).
unsafe impl Send for JobPtr {}

struct State {
    /// Bumped for every job; workers run a job when they see a new value.
    generation: u64,
    job: Option<JobPtr>,
    /// Workers that have not finished the current job.
    remaining: usize,
    /// A worker's call panicked during the current job.
    panicked: bool,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs run outside the lock and panics are caught, so poisoning can only come from a
        // bug here; the state stays consistent either way.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

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
    /// A pool of `n_threads` threads in all, the caller included (0 is treated as 1).
    /// Spawns `n_threads - 1` workers.
    pub fn new(n_threads: usize) -> Self {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                generation: 0,
                job: None,
                remaining: 0,
                panicked: false,
                shutdown: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let mut workers = Vec::with_capacity(n_threads - 1);
        for index in 1..n_threads {
            let shared = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("sparetire-{index}"))
                .spawn(move || worker(&shared, index, n_threads));
            match spawned {
                Ok(h) => workers.push(h),
                // Out of threads: run with what we have (run() splits over n_threads, so it
                // must match the workers actually started).
                Err(_) => break,
            }
        }
        let wanted = n_threads;
        let n_threads = workers.len() + 1;
        if n_threads != wanted {
            // Rebuild with the smaller count so worker indices and n_threads agree.
            drop(ThreadPool {
                n_threads: workers.len() + 1,
                shared,
                workers,
                busy: Mutex::new(()),
            });
            return ThreadPool::new(n_threads);
        }
        ThreadPool {
            n_threads,
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
        let job: &(dyn Fn(usize, usize) + Sync) = &f;
        // SAFETY: this erases the closure's lifetime so workers can hold a raw pointer to it.
        // `run` does not return (or unwind) before `remaining` reaches 0, i.e. before every
        // worker has finished calling the job, and the job is cleared before `f` is dropped,
        // so no worker dereferences the pointer after `f` goes out of scope.
        let ptr: Job = unsafe { std::mem::transmute::<_, Job>(job as *const _) };
        {
            let mut st = self.shared.lock();
            st.job = Some(JobPtr(ptr));
            st.remaining = n - 1;
            st.panicked = false;
            st.generation = st.generation.wrapping_add(1);
        }
        self.shared.work.notify_all();
        let mine = catch_unwind(AssertUnwindSafe(|| f(0, n)));
        let worker_panicked = {
            let mut st = self.shared.lock();
            while st.remaining > 0 {
                st = self.shared.done.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            st.job = None;
            st.panicked
        };
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if worker_panicked {
            panic!("a ThreadPool worker panicked");
        }
    }
}

fn worker(shared: &Shared, index: usize, n: usize) {
    let mut seen = 0u64;
    loop {
        let job = {
            let mut st = shared.lock();
            while st.generation == seen && !st.shutdown {
                st = shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.shutdown {
                return;
            }
            seen = st.generation;
            st.job
        };
        let ok = match job {
            // SAFETY: the pointer was set by `run`, which keeps the closure alive until this
            // worker decrements `remaining` below.
            Some(JobPtr(p)) => catch_unwind(AssertUnwindSafe(|| unsafe { (*p)(index, n) })).is_ok(),
            None => true,
        };
        let mut st = shared.lock();
        if !ok {
            st.panicked = true;
        }
        st.remaining = st.remaining.saturating_sub(1);
        if st.remaining == 0 {
            shared.done.notify_all();
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.work.notify_all();
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
}
