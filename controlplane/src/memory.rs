//! Giving memory back after bursts of responses.
//!
//! An initial sync to 10,000 proxies has every stream's response chunks in flight at once
//! (hundreds of MB); once sent they are freed, but glibc keeps the pages: measured with 10,000
//! Delta streams of a 1,000-cluster snapshot, 721 MB resident after the sync and 107 MB after
//! `malloc_trim(0)`. So the heap is trimmed once the server has been quiet (no response sent,
//! no config reloaded) for a moment after being busy, not on a timer that would trim mid-burst.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static ACTIVITY: AtomicU64 = AtomicU64::new(0);

/// Something that allocates in bursts happened (a response sent, a config reloaded).
pub fn note_activity() {
    ACTIVITY.fetch_add(1, Ordering::Relaxed);
}

/// Trims the heap after each burst, once `quiet` has passed without activity.
pub async fn trim_after_bursts(quiet: Duration) {
    let mut seen = ACTIVITY.load(Ordering::Relaxed);
    let mut busy = false;
    loop {
        tokio::time::sleep(quiet).await;
        let now = ACTIVITY.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            busy = true;
        } else if busy {
            busy = false;
            // Off the runtime's workers: trimming a large heap takes milliseconds.
            let _ = tokio::task::spawn_blocking(xds_types::heap::release_free_memory).await;
        }
    }
}

/// How long the Envoy API descriptors are kept after a load.
///
/// Decoded they take ~17 MB; only a load needs them, to turn files into resources and check
/// them, and the next load decodes them again, all of it added to that change's convergence.
/// Before the build stripped their comments they took ~35 MB and 80 ms alone, 150-270 ms on a
/// busy 2-core machine (SotW EDS p99 at 10,000 streams went from 779 to 1020 ms when they
/// were dropped after 10 s); now 27 ms alone. Config changes come in bursts (a deploy, an autoscaler), so they
/// are kept for a quiet minute, then dropped. (The dataplane drops them after 10 s: its
/// config comes over xDS and a reload's latency is not what a fleet waits on.)
pub const DESCRIPTORS_IDLE: Duration = Duration::from_secs(60);

/// Drops the Envoy API descriptors after `idle` without a load (see [`DESCRIPTORS_IDLE`]).
pub async fn release_descriptors_when_idle(idle: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if xds_types::descriptors::release_if_unused_for(idle) {
            let _ = tokio::task::spawn_blocking(xds_types::heap::release_free_memory).await;
            tracing::debug!("released the API descriptors until the next load");
        }
    }
}
