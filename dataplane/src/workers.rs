//! The worker threads, as Envoy has them: each worker is an event loop of its own (a
//! current-thread tokio runtime), each listener has one socket per worker (`SO_REUSEPORT`, so
//! the kernel spreads connections over them), and a connection lives its whole life on the
//! worker that accepted it, with that worker's upstream connection pools.
//!
//! Worker 0 is the main thread's runtime, which also runs the control tasks (xDS, admin, the
//! listener manager, DNS, file watches): one worker is one thread, as bench/ measures it.
//! Envoy keeps a main thread apart from its workers; ours is worker 0 too, because the control
//! tasks are idle between config changes and a thread of their own would be a second thread
//! on a one-core sidecar.
//!
//! Why not tokio's work-stealing runtime, which we ran before:
//! - It runs a task woken by the running task next (its LIFO slot), so an HTTP/2 connection,
//!   woken by each stream that got its upstream response, wrote every response alone: 0.55
//!   writev per h2c request, against 0.17 on a current-thread runtime, where the connection
//!   queues behind the other streams already ready (h2c CPU per request 19.3 -> 13.8 us).
//! - Stealing moves a connection's tasks between threads, so the upstream pools were shared
//!   behind a lock; a worker's own pools need none.

use std::sync::OnceLock;

use tokio::runtime::Handle;

static WORKERS: OnceLock<Vec<Handle>> = OnceLock::new();

/// Makes the caller's runtime worker 0 and starts workers 1..`n` on threads of their own.
/// Called once, on the main runtime, before any listener starts.
pub fn start(n: usize) -> std::io::Result<()> {
    let mut handles = vec![Handle::current()];
    for i in 1..n {
        let worker = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        handles.push(worker.handle().clone());
        std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || worker.block_on(std::future::pending::<()>()))?;
    }
    let _ = WORKERS.set(handles);
    Ok(())
}

/// The workers' runtimes. Without [`start`] (the library in a test's runtime), the caller's
/// runtime is the one worker.
pub fn handles() -> Vec<Handle> {
    WORKERS
        .get()
        .cloned()
        .unwrap_or_else(|| vec![Handle::current()])
}
