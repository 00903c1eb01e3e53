//! Where password and client-secret checks run. An argon2 check costs about 19 MiB and
//! tens of milliseconds of one core; run for every request of a flood of wrong
//! passwords, unbounded, it took a fake to gigabytes and its health check to most of a
//! second. So checks run on a few threads of their own, at most [`CheckPool::workers`]
//! at once with at most [`CheckPool::queue`] more waiting; past that a check is refused at
//! once ([`Busy`]) and the service answers in its own throttling shape, as the real
//! identity services do under load. The threads are the pool's own, not the runtime's
//! blocking pool: each thread that has run argon2 keeps an allocator arena of its size,
//! and the blocking pool's many short-lived threads kept hundreds of MB that way. A
//! check whose request went away still runs to its end and keeps its place until then,
//! so the bound holds whatever clients do.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

/// The pool is full: the caller answers "busy, retry" without checking anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

type Job = Box<dyn FnOnce() + Send>;

/// A bounded pool for slow checks.
#[derive(Debug)]
pub struct CheckPool {
    jobs: Mutex<mpsc::Sender<Job>>,
    /// Checks admitted: running or waiting for a thread.
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

/// Gives an admission back when the check is over.
struct Admitted(Arc<AtomicUsize>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl CheckPool {
    /// Starts `workers` threads (they end when the pool is dropped).
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        let (jobs, inbox) = mpsc::channel::<Job>();
        let inbox = Arc::new(Mutex::new(inbox));
        for n in 0..workers {
            let inbox = inbox.clone();
            std::thread::Builder::new()
                .name(format!("secret-check-{n}"))
                .spawn(move || {
                    loop {
                        let job = inbox
                            .lock()
                            .map_err(|_| ())
                            .and_then(|i| i.recv().map_err(|_| ()));
                        match job {
                            Ok(job) => job(),
                            Err(()) => break,
                        }
                    }
                })
                .expect("a thread for secret checks");
        }
        Self {
            jobs: Mutex::new(jobs),
            admitted: Arc::new(AtomicUsize::new(0)),
            workers,
            queue,
        }
    }

    /// Checks that may run at once.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Checks that may wait for a thread.
    pub fn queue(&self) -> usize {
        self.queue
    }

    /// Checks running or waiting now.
    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }

    /// Runs `check` on one of the pool's threads, or refuses at once when the threads
    /// and the queue are full.
    pub async fn run<T: Send + 'static>(
        &self,
        check: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let before = self.admitted.fetch_add(1, Ordering::AcqRel);
        let admitted = Admitted(self.admitted.clone());
        if before >= self.workers + self.queue {
            return Err(Busy);
        }
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _admitted = admitted;
            let _ = answer.send(check());
        });
        self.jobs
            .lock()
            .map_err(|_| Busy)?
            .send(job)
            .map_err(|_| Busy)?;
        answered.await.map_err(|_| Busy)
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
