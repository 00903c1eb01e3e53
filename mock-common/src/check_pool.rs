//! Where password and client-secret checks run. An argon2 check costs about 19 MiB and
//! tens of milliseconds of one core; run for every request of a flood of wrong
//! passwords, unbounded, it took a fake to gigabytes and its health check to most of a
//! second. So checks run on a small pool of blocking threads, at most [`CheckPool::workers`]
//! at once with at most [`CheckPool::queue`] more waiting; past that a check is refused at
//! once ([`Busy`]) and the service answers in its own throttling shape, as the real
//! identity services do under load. A check whose request went away still finishes on
//! its thread, holding its slot, so the bound holds whatever clients do.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

/// The pool is full: the caller answers "busy, retry" without checking anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// A bounded pool for slow checks.
#[derive(Debug)]
pub struct CheckPool {
    slots: Arc<Semaphore>,
    /// Checks admitted: running or waiting for a slot.
    admitted: Arc<AtomicUsize>,
    workers: usize,
    queue: usize,
}

impl Default for CheckPool {
    /// As many workers as cores (at most 4), and 32 waiting.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores.clamp(1, 4), 32)
    }
}

/// Gives an admission back when the check is over or its request went away.
struct Admitted(Arc<AtomicUsize>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl CheckPool {
    pub fn new(workers: usize, queue: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(workers.max(1))),
            admitted: Arc::new(AtomicUsize::new(0)),
            workers: workers.max(1),
            queue,
        }
    }

    /// Checks that may run at once.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Checks that may wait for a slot.
    pub fn queue(&self) -> usize {
        self.queue
    }

    /// Checks running or waiting now.
    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }

    /// Runs `check` on a blocking thread once a slot is free, or refuses at once when
    /// the pool and its queue are full.
    pub async fn run<T: Send + 'static>(
        &self,
        check: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let before = self.admitted.fetch_add(1, Ordering::AcqRel);
        let admitted = Admitted(self.admitted.clone());
        if before >= self.workers + self.queue {
            return Err(Busy);
        }
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            // Held by the thread, not the request: a dropped request frees nothing early.
            let _slot = slot;
            let _admitted = admitted;
            check()
        })
        .await
        .map_err(|_| Busy)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_the_workers_and_the_queue_a_check_is_refused_at_once() {
        let pool = Arc::new(CheckPool::new(1, 1));
        let (release, gate) = mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        let (started_tx, started) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut held = Vec::new();
        for _ in 0..2 {
            let pool = pool.clone();
            let gate = gate.clone();
            let started_tx = started_tx.clone();
            held.push(tokio::spawn(async move {
                pool.run(move || {
                    let _ = started_tx.send(());
                    gate.lock().unwrap().recv().unwrap();
                    7
                })
                .await
            }));
        }
        let mut started = started;
        started.recv().await.unwrap(); // one runs; the other waits for its slot
        while pool.admitted() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.run(|| 1).await, Err(Busy), "workers and queue full");
        release.send(()).unwrap();
        release.send(()).unwrap();
        for task in held {
            assert_eq!(task.await.unwrap(), Ok(7));
        }
        assert_eq!(pool.admitted(), 0);
        assert_eq!(pool.run(|| 2).await, Ok(2), "free again");
    }
}
