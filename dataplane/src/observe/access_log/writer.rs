//! Where log lines go: a file (opened in append mode), stdout or stderr, each written by its
//! own background thread so the request path never waits on a disk. Lines reach the thread
//! through a bounded queue, which a busy writer drains every 20 ms (so no request wakes a
//! thread); when it is full the line is dropped and counted, never waited for. The thread
//! writes through a 64 KiB buffer flushed when full and every second (Envoy's
//! `access_log_flush_interval` default), and reopens its file on SIGUSR1 as Envoy does (for
//! log rotation). One writer serves every logger naming the same path.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

/// Envoy's default `access_log_flush_interval`.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Envoy's default `min_flush_size` for access log files.
const BUFFER: usize = 64 * 1024;
/// Lines waiting for the writer before new ones are dropped: 0.4 s of lines at 40,000
/// requests/s, far more than pile up between two drains.
pub const QUEUE: usize = 16 * 1024;
/// How often a busy writer takes the lines queued since it last looked.
const DRAIN_INTERVAL: Duration = Duration::from_millis(20);

/// Envoy's `filesystem.*` counters (all access log files together), plus the lines dropped
/// because a writer's queue was full (Envoy grows its buffer instead).
#[derive(Debug, Default)]
pub struct Stats {
    pub write_buffered: AtomicU64,
    pub write_completed: AtomicU64,
    pub write_failed: AtomicU64,
    pub flushed_by_timer: AtomicU64,
    pub reopen_failed: AtomicU64,
    pub write_dropped: AtomicU64,
}

pub static STATS: Stats = Stats {
    write_buffered: AtomicU64::new(0),
    write_completed: AtomicU64::new(0),
    write_failed: AtomicU64::new(0),
    flushed_by_timer: AtomicU64::new(0),
    reopen_failed: AtomicU64::new(0),
    write_dropped: AtomicU64::new(0),
};

impl Stats {
    pub fn stats(&self) -> Vec<crate::observe::stat::Stat> {
        [
            ("filesystem.flushed_by_timer", &self.flushed_by_timer),
            ("filesystem.reopen_failed", &self.reopen_failed),
            ("filesystem.write_buffered", &self.write_buffered),
            ("filesystem.write_completed", &self.write_completed),
            ("filesystem.write_dropped", &self.write_dropped),
            ("filesystem.write_failed", &self.write_failed),
        ]
        .into_iter()
        .map(|(name, c)| crate::observe::stat::Stat::counter(name, c.load(Ordering::Relaxed)))
        .collect()
    }
}

/// Bumped by SIGUSR1: every file writer reopens its file.
static REOPEN: AtomicU64 = AtomicU64::new(0);

/// Asks every access log file to be reopened (SIGUSR1).
pub fn reopen_files() {
    REOPEN.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    File(String),
    Stdout,
    Stderr,
}

/// The writers alive, by target: a second logger on the same path shares the first's.
static SINKS: LazyLock<Mutex<HashMap<Target, Weak<Sink>>>> = LazyLock::new(Default::default);

/// One destination's queue; its writer thread ends when the last `Sink` is dropped.
#[derive(Debug)]
pub struct Sink {
    target: Target,
    tx: SyncSender<String>,
}

impl Sink {
    /// The writer for `target`, started if none is running. A file that cannot be opened is
    /// refused with Envoy's words (`unable to open file '/x': No such file or directory`).
    pub fn open(target: Target) -> Result<Arc<Sink>, String> {
        let mut sinks = SINKS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sink) = sinks.get(&target).and_then(Weak::upgrade) {
            return Ok(sink);
        }
        let out = open(&target)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let thread_target = target.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || run(rx, thread_target, out))
            .map_err(|e| format!("cannot start the access log writer: {e}"))?;
        let sink = Arc::new(Sink { target, tx });
        sinks.retain(|_, w| w.strong_count() > 0);
        sinks.insert(sink.target.clone(), Arc::downgrade(&sink));
        Ok(sink)
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Queues a line; drops it (counted) when the writer is behind.
    pub fn write(&self, line: String) {
        match self.tx.try_send(line) {
            Ok(()) => {
                STATS.write_buffered.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                STATS.write_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn open(target: &Target) -> Result<BufWriter<Box<dyn Write + Send>>, String> {
    let out: Box<dyn Write + Send> = match target {
        Target::Stdout => Box::new(std::io::stdout()),
        Target::Stderr => Box::new(std::io::stderr()),
        Target::File(path) => Box::new(open_file(path)?),
    };
    Ok(BufWriter::with_capacity(BUFFER, out))
}

fn open_file(path: &str) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            // Envoy's words: the OS reason without Rust's "(os error 2)".
            let reason = e.to_string();
            let reason = reason.split(" (os error").next().unwrap_or(&reason);
            format!("unable to open file '{path}': {reason}")
        })
}

fn run(rx: Receiver<String>, target: Target, mut out: BufWriter<Box<dyn Write + Send>>) {
    let mut w = Writer {
        generation: REOPEN.load(Ordering::Relaxed),
        dirty: false,
        next_flush: Instant::now() + FLUSH_INTERVAL,
        target,
    };
    loop {
        // Idle: block until a line comes (its sender wakes this thread, once).
        let wait = w.next_flush.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(line) => w.write(&mut out, &line),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return flush(&mut out),
        }
        // Busy: take what queued up every DRAIN_INTERVAL without blocking in the queue, so
        // a sender never has a sleeping receiver to wake (a wake-up per line, two context
        // switches, cost more than the line itself).
        loop {
            let mut took = false;
            loop {
                match rx.try_recv() {
                    Ok(line) => {
                        w.write(&mut out, &line);
                        took = true;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return flush(&mut out),
                }
            }
            w.tick(&mut out);
            if !took {
                break;
            }
            std::thread::sleep(DRAIN_INTERVAL);
        }
    }
}

/// The writer thread's state.
struct Writer {
    generation: u64,
    dirty: bool,
    next_flush: Instant,
    target: Target,
}

impl Writer {
    fn write(&mut self, out: &mut BufWriter<Box<dyn Write + Send>>, line: &str) {
        if out.write_all(line.as_bytes()).is_err() {
            STATS.write_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.dirty = true;
    }

    /// Flushes every FLUSH_INTERVAL and reopens the file when SIGUSR1 asked.
    fn tick(&mut self, out: &mut BufWriter<Box<dyn Write + Send>>) {
        let now = Instant::now();
        if now >= self.next_flush {
            if self.dirty {
                STATS.flushed_by_timer.fetch_add(1, Ordering::Relaxed);
                flush(out);
                self.dirty = false;
            }
            self.next_flush = now + FLUSH_INTERVAL;
        }
        let wanted = REOPEN.load(Ordering::Relaxed);
        if wanted == self.generation {
            return;
        }
        self.generation = wanted;
        if let Target::File(path) = &self.target {
            flush(out);
            self.dirty = false;
            match open_file(path) {
                Ok(f) => *out = BufWriter::with_capacity(BUFFER, Box::new(f)),
                Err(e) => {
                    STATS.reopen_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "access log: reopen failed, writing to the old file");
                }
            }
        }
    }
}

fn flush(out: &mut BufWriter<Box<dyn Write + Send>>) {
    match out.flush() {
        Ok(()) => STATS.write_completed.fetch_add(1, Ordering::Relaxed),
        Err(_) => STATS.write_failed.fetch_add(1, Ordering::Relaxed),
    };
}
