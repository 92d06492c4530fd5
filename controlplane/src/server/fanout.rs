//! How long a push takes to leave: from the moment a snapshot is published to the moment the
//! last stream queued its responses and h2 took their last bytes.
//!
//! Streams record into process-wide atomics (a few relaxed operations per stream and push, no
//! lock); [`report`] logs one debug line per push once the streams have gone quiet. The
//! figures are what `bench/fleet` prints next to its clients' latencies, to tell the
//! controlplane's share of a convergence from the clients'.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tracing::debug;

/// Unix microseconds of the last publish; 0 before the first.
static PUBLISHED: AtomicU64 = AtomicU64::new(0);
/// Streams that queued responses for the last publish.
static STREAMS: AtomicU64 = AtomicU64::new(0);
/// Microseconds after the publish: the first and last stream to queue its responses, and the
/// last response whose final chunk h2 took.
static FIRST_QUEUED: AtomicU64 = AtomicU64::new(u64::MAX);
static LAST_QUEUED: AtomicU64 = AtomicU64::new(0);
static LAST_WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Unix time in microseconds (the fleet compares it with its own clock).
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn since_publish() -> u64 {
    unix_us().saturating_sub(PUBLISHED.load(Ordering::Relaxed))
}

/// A new snapshot was published: the counters start again.
pub fn published() {
    STREAMS.store(0, Ordering::Relaxed);
    FIRST_QUEUED.store(u64::MAX, Ordering::Relaxed);
    LAST_QUEUED.store(0, Ordering::Relaxed);
    LAST_WRITTEN.store(0, Ordering::Relaxed);
    PUBLISHED.store(unix_us(), Ordering::Relaxed);
}

/// A stream queued its responses to the last publish.
pub fn queued() {
    let at = since_publish();
    STREAMS.fetch_add(1, Ordering::Relaxed);
    FIRST_QUEUED.fetch_min(at, Ordering::Relaxed);
    LAST_QUEUED.fetch_max(at, Ordering::Relaxed);
}

/// h2 took the last chunk of a response.
pub fn written() {
    LAST_WRITTEN.fetch_max(since_publish(), Ordering::Relaxed);
}

/// Logs each push's fan-out once its streams have been quiet for a moment. Runs only when
/// debug logging is on for this module (the caller checks).
pub async fn report(mut generation: watch::Receiver<u64>) {
    while generation.changed().await.is_ok() {
        let mut seen = (u64::MAX, 0);
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = (
                STREAMS.load(Ordering::Relaxed),
                LAST_WRITTEN.load(Ordering::Relaxed),
            );
            if now == seen || generation.has_changed().unwrap_or(true) {
                break;
            }
            seen = now;
        }
        let ms = |a: &AtomicU64| match a.load(Ordering::Relaxed) {
            u64::MAX => f64::NAN,
            us => us as f64 / 1e3,
        };
        debug!(
            published_us = PUBLISHED.load(Ordering::Relaxed),
            streams = STREAMS.load(Ordering::Relaxed),
            first_queued_ms = ms(&FIRST_QUEUED),
            last_queued_ms = ms(&LAST_QUEUED),
            last_written_ms = ms(&LAST_WRITTEN),
            "fan-out"
        );
    }
}
