//! Fleet simulator (issue 5): N ADS clients in one process against our controlplane, serving a
//! realistic snapshot from a watched directory. Measures, from the file write to the moment
//! every client has received the change: p50/p99/max, the controlplane's CPU seconds and RSS,
//! and the bytes each client was sent; then a push storm (50 writes in 1 s) for coalescing and
//! for versions never going backwards.

mod client;
mod config;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use tonic::transport::{Channel, Endpoint};

use client::{Event, Events, Kind, Mode};
use config::Shape;

#[derive(Parser, Debug)]
struct Args {
    /// The controlplane binary (build it with --release for figures worth quoting).
    #[arg(long, default_value = "target/release/controlplane")]
    controlplane: PathBuf,
    /// Numbers of streams to measure, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    streams: Vec<usize>,
    /// sotw, delta, or both.
    #[arg(long, default_value = "both")]
    mode: String,
    #[arg(long, default_value_t = 1000)]
    clusters: usize,
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    #[arg(long, default_value_t = 1000)]
    routes: usize,
    /// Streams multiplexed on one HTTP/2 connection. Each Envoy has its own connection, and
    /// the controlplane's memory per proxy is mostly per connection (h2's buffers): 1 is the
    /// real shape; more measure the streams alone. N streams take N open files here and in
    /// the controlplane (`ulimit -n`).
    #[arg(long, default_value_t = 1)]
    streams_per_connection: usize,
    /// Send the node only in a stream's first request (Envoy's
    /// `set_node_on_first_message_only: true`). By default every request carries it, ~16 KB,
    /// as Envoy's do by default.
    #[arg(long)]
    node_once: bool,
    /// Give up waiting for convergence after this many seconds.
    #[arg(long, default_value_t = 120)]
    deadline: u64,
    /// After the storm, also wait this many seconds without a change and measure RSS again:
    /// 65 is past the minute after which the controlplane drops the API descriptors, its
    /// steady state between config changes.
    #[arg(long)]
    quiet: Option<u64>,
    /// Only write the generated snapshot into this directory and exit (for profiling the
    /// controlplane's load path with `controlplane validate`).
    #[arg(long)]
    write_config: Option<PathBuf>,
}

/// Which run is going on: bumped when a run's controlplane is stopped, so that its clients,
/// which may notice only during the next run, do not report the errors that causes.
static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

struct Controlplane {
    child: Child,
    xds: String,
    /// The controlplane's timing lines (debug logs of its reloads and fan-outs).
    timing: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    dir: PathBuf,
}

impl Drop for Controlplane {
    fn drop(&mut self) {
        RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Controlplane {
    fn start(bin: &PathBuf, shape: &Shape) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        config::write(dir.path(), shape)?;
        let mut child = Command::new(bin)
            .args(["serve", "--config"])
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            // Info for everything else (a line per stream: connected), debug for the reload
            // and fan-out timings the breakdown is made of.
            .env(
                "RUST_LOG",
                "warn,controlplane::source::watch=debug,controlplane::server::fanout=debug",
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let timing = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let timing = timing.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(mut t) = timing.lock() {
                        t.push(line);
                    }
                }
            });
        }
        let stdout = child.stdout.take().context("controlplane stdout")?;
        // The address line; a wrapper (a heap profiler) may print lines of its own first.
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let mut xds = None;
        for _ in 0..10 {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                break;
            }
            xds = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("xds="))
                .map(str::to_string);
            if xds.is_some() {
                break;
            }
        }
        let xds =
            xds.with_context(|| format!("controlplane did not print its address: {line:?}"))?;
        // Keep reading (and dropping) what it prints, so it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let path = dir.path().to_path_buf();
        Ok(Controlplane {
            child,
            xds,
            timing,
            _dir: dir,
            dir: path,
        })
    }

    /// User + system CPU seconds and RSS in MB, from /proc.
    fn usage(&self) -> (f64, f64) {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect())
            .unwrap_or_default();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
            .sum();
        let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
        let pages: f64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0.0);
        (ticks / 100.0, pages * 4096.0 / 1e6)
    }

    /// The highest RSS so far in MB (VmHWM), from /proc.
    fn peak_rss(&self) -> f64 {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb * 1024.0 / 1e6)
    }

    /// RSS once the controlplane has been quiet for a few seconds (it gives memory back after
    /// bursts), with every stream still connected.
    async fn settled_rss(&self) -> f64 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        self.usage().1
    }
}

struct Fleet {
    events: Vec<Events>,
}

impl Fleet {
    /// Events since `t0` of each client.
    fn since(&self, t0: Instant) -> Vec<Vec<Event>> {
        self.events
            .iter()
            .map(|e| {
                e.lock()
                    .map(|v| v.iter().filter(|ev| ev.at >= t0).copied().collect())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Polls until `done` holds for every client's events since t0, or the deadline passes.
    async fn wait(
        &self,
        t0: Instant,
        deadline: Duration,
        done: impl Fn(&[Event]) -> bool,
    ) -> anyhow::Result<()> {
        let end = Instant::now() + deadline;
        // Only the clients not done yet are looked at again, in place (no copy of their
        // events): with 10,000 clients this poll shares the cores with what it measures.
        let mut pending: Vec<&Events> = self.events.iter().collect();
        loop {
            pending.retain(|events| {
                !events.lock().is_ok_and(|v| {
                    // Events are recorded in time order.
                    let from = v.partition_point(|e| e.at < t0);
                    done(&v[from..])
                })
            });
            let pending = pending.len();
            if pending == 0 {
                return Ok(());
            }
            if Instant::now() > end {
                bail!(
                    "{pending} of {} clients did not converge within {deadline:?}",
                    self.events.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn percentiles(mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        ms.get(((ms.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    (at(0.5), at(0.99), at(1.0))
}

async fn connect(
    xds: &str,
    n: usize,
    per_connection: usize,
    mode: Mode,
    shared: Arc<client::Shared>,
) -> anyhow::Result<Fleet> {
    let mut channels: Vec<Channel> = Vec::new();
    for _ in 0..n.div_ceil(per_connection) {
        channels.push(
            Endpoint::from_shared(format!("http://{xds}"))?
                .connect()
                .await?,
        );
    }
    let mut events = Vec::with_capacity(n);
    let run = RUN.load(std::sync::atomic::Ordering::Relaxed);
    for id in 0..n {
        let ev: Events = Arc::new(Mutex::new(Vec::new()));
        events.push(ev.clone());
        let channel = channels[id / per_connection].clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            // Once a run is over its controlplane is stopped: those errors are expected.
            if let Err(e) = client::run(channel, mode, id, shared, ev).await
                && RUN.load(std::sync::atomic::Ordering::Relaxed) == run
            {
                eprintln!("client {id}: {e}");
            }
        });
    }
    Ok(Fleet { events })
}

async fn run_one(args: &Args, n: usize, mode: Mode) -> anyhow::Result<()> {
    let mut shape = Shape {
        clusters: args.clusters,
        endpoints: args.endpoints,
        routes: args.routes,
        svc0_port: 30000,
    };
    let cp = Controlplane::start(&args.controlplane, &shape)?;
    let deadline = Duration::from_secs(args.deadline);
    let t0 = Instant::now();
    let shared = Arc::new(client::Shared::new(args.clusters, !args.node_once));
    let fleet = connect(&cp.xds, n, args.streams_per_connection, mode, shared).await?;
    let synced = |ev: &[Event]| {
        ev.iter().any(|e| e.kind == Kind::Rds)
            && ev.iter().any(|e| e.kind == Kind::Eds(Some(30000)))
    };
    fleet.wait(t0, deadline, synced).await?;
    let (cpu0, rss0) = cp.usage();
    println!(
        "{mode:?} x{n}: initial sync of {} clusters / {} endpoints / {} routes in {:.2} s, controlplane {:.1} CPU s, RSS {:.0} MB",
        args.clusters,
        args.clusters * args.endpoints,
        args.routes,
        t0.elapsed().as_secs_f64(),
        cpu0,
        rss0
    );
    println!(
        "  settled: RSS {:.0} MB with {n} streams connected, 4 s after the sync (peak so far {:.0} MB)",
        cp.settled_rss().await,
        cp.peak_rss()
    );

    // One endpoint changes.
    shape.svc0_port += 1;
    let port = shape.svc0_port;
    let content = config::render(&shape)?;
    let (t0, write_us, own0) = (Instant::now(), unix_us(), own_cpu());
    config::install(&cp.dir, &content)?;
    fleet
        .wait(t0, deadline, |ev| {
            ev.iter().any(|e| e.kind == Kind::Eds(Some(port)))
        })
        .await?;
    report(&fleet, &cp, t0, cpu0, "one endpoint changed", |e| {
        e.kind == Kind::Eds(Some(port))
    });
    breakdown(&cp, &fleet, t0, write_us, own0, |e| {
        e.kind == Kind::Eds(Some(port))
    })
    .await;

    // One route added.
    let (cpu1, _) = cp.usage();
    shape.routes += 1;
    let content = config::render(&shape)?;
    let (t0, write_us, own0) = (Instant::now(), unix_us(), own_cpu());
    config::install(&cp.dir, &content)?;
    fleet
        .wait(t0, deadline, |ev| ev.iter().any(|e| e.kind == Kind::Rds))
        .await?;
    report(&fleet, &cp, t0, cpu1, "one route added", |e| {
        e.kind == Kind::Rds
    });
    breakdown(&cp, &fleet, t0, write_us, own0, |e| e.kind == Kind::Rds).await;

    // A push storm: 50 writes in 1 s, each moving the endpoint's port up by one.
    // Rendered beforehand: on a loaded machine rendering 1.2 MB of JSON takes longer than
    // the 20 ms between writes, which spread the storm over many seconds.
    let contents = (0..50)
        .map(|_| {
            shape.svc0_port += 1;
            config::render(&shape)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (cpu2, _) = cp.usage();
    let t0 = Instant::now();
    for content in &contents {
        config::install(&cp.dir, content)?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let written = t0.elapsed();
    let last = shape.svc0_port;
    fleet
        .wait(t0, deadline, |ev| {
            ev.iter().any(|e| e.kind == Kind::Eds(Some(last)))
        })
        .await?;
    let per_client = fleet.since(t0);
    let pushes: Vec<usize> = per_client
        .iter()
        .map(|ev| {
            ev.iter()
                .filter(|e| matches!(e.kind, Kind::Eds(Some(_))))
                .count()
        })
        .collect();
    let backwards = per_client
        .iter()
        .filter(|ev| {
            let ports: Vec<u32> = ev
                .iter()
                .filter_map(|e| {
                    if let Kind::Eds(Some(p)) = e.kind {
                        Some(p)
                    } else {
                        None
                    }
                })
                .collect();
            ports.windows(2).any(|w| w[1] < w[0])
        })
        .count();
    let (cpu3, rss3) = cp.usage();
    println!(
        "  storm of 50 writes in {:.2} s: converged in {:.2} s; EDS pushes per client mean {:.1} max {}; clients sent an older version: {backwards}; controlplane {:.2} CPU s, RSS {:.0} MB",
        written.as_secs_f64(),
        t0.elapsed().as_secs_f64(),
        pushes.iter().sum::<usize>() as f64 / pushes.len().max(1) as f64,
        pushes.iter().max().unwrap_or(&0),
        cpu3 - cpu2,
        rss3
    );
    println!(
        "  settled: RSS {:.0} MB with {n} streams connected, 4 s after the storm (peak {:.0} MB)",
        cp.settled_rss().await,
        cp.peak_rss()
    );
    if let Some(quiet) = args.quiet {
        tokio::time::sleep(Duration::from_secs(quiet)).await;
        println!(
            "  quiet: RSS {:.0} MB with {n} streams connected, {quiet} s later",
            cp.usage().1
        );
    }
    if backwards > 0 {
        bail!("{backwards} clients were sent a version older than one they had");
    }
    Ok(())
}

/// Unix time in microseconds (compared with the controlplane's log lines).
fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// This process's user + system CPU seconds (the clients share the machine with the
/// controlplane: their own cost must be known).
fn own_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum::<f64>()
        / 100.0
}

/// `key=value` of a log line, as a number.
fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// Where one change's time went, from the write at `write_us` (unix) to the last client:
/// the controlplane's reloads and fan-outs since then (from its debug lines), and the
/// clients' first and last receive.
async fn breakdown(
    cp: &Controlplane,
    fleet: &Fleet,
    t0: Instant,
    write_us: u64,
    cpu0: f64,
    hit: impl Fn(&Event) -> bool,
) {
    // The fan-out line comes once the streams have been quiet for a moment.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let lines: Vec<String> = cp.timing.lock().map(|t| t.clone()).unwrap_or_default();
    let rel = |us: f64| (us - write_us as f64) / 1e3;
    let mut parts = Vec::new();
    let mut published = None;
    for line in &lines {
        if let Some(event) = field(line, "event_us").filter(|&e| e >= write_us as f64) {
            parts.push(format!(
                "first fs event +{:.0} ms, debounce {:.0} ms",
                rel(event),
                field(line, "waited_ms").unwrap_or(f64::NAN)
            ));
        } else if line.contains("reload timing")
            && field(line, "published_us").is_some_and(|p| p >= write_us as f64)
        {
            parts.push(format!(
                "read+parse {:.0} ms, check {:.0} ms, snapshot+diff {:.0} ms, publish {:.1} ms",
                field(line, "read_ms").unwrap_or(f64::NAN),
                field(line, "check_ms").unwrap_or(f64::NAN),
                field(line, "snapshot_ms").unwrap_or(f64::NAN),
                field(line, "publish_ms").unwrap_or(f64::NAN),
            ));
        } else if line.contains("fan-out")
            && let Some(p) = field(line, "published_us").filter(|&p| p >= write_us as f64)
        {
            published = Some(p);
            parts.push(format!(
                "published +{:.0} ms; {} streams queued from +{:.0} to +{:.0} ms after it, h2 took the last bytes at +{:.0} ms",
                rel(p),
                field(line, "streams").unwrap_or(0.0),
                field(line, "first_queued_ms").unwrap_or(f64::NAN),
                field(line, "last_queued_ms").unwrap_or(f64::NAN),
                field(line, "last_written_ms").unwrap_or(f64::NAN),
            ));
        }
    }
    let received: Vec<f64> = fleet
        .since(t0)
        .iter()
        .filter_map(|ev| ev.iter().find(|e| hit(e)))
        .map(|e| e.at.duration_since(t0).as_secs_f64() * 1e3)
        .collect();
    let first = received.iter().copied().fold(f64::INFINITY, f64::min);
    let last = received.iter().copied().fold(0.0, f64::max);
    let after = |t: f64| published.map_or(f64::NAN, |p| t - rel(p));
    println!("    breakdown: {}", parts.join("; "));
    println!(
        "    clients: first had it at +{first:.0} ms, last at +{last:.0} ms ({:.0} / {:.0} ms after the publish); the fleet's own CPU {:.2} s",
        after(first),
        after(last),
        own_cpu() - cpu0
    );
}

fn report(
    fleet: &Fleet,
    cp: &Controlplane,
    t0: Instant,
    cpu_before: f64,
    what: &str,
    hit: impl Fn(&Event) -> bool,
) {
    let per_client = fleet.since(t0);
    let latencies: Vec<f64> = per_client
        .iter()
        .filter_map(|ev| {
            ev.iter()
                .find(|e| hit(e))
                .map(|e| e.at.duration_since(t0).as_secs_f64() * 1e3)
        })
        .collect();
    let bytes: Vec<usize> = per_client
        .iter()
        .map(|ev| ev.iter().map(|e| e.bytes).sum())
        .collect();
    let (p50, p99, max) = percentiles(latencies);
    let (cpu, rss) = cp.usage();
    println!(
        "  {what}: every client had it: p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms; bytes sent per client {:.0} (max {}); controlplane {:.2} CPU s, RSS {rss:.0} MB",
        bytes.iter().sum::<usize>() as f64 / bytes.len().max(1) as f64,
        bytes.iter().max().unwrap_or(&0),
        cpu - cpu_before
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.write_config {
        let shape = Shape {
            clusters: args.clusters,
            endpoints: args.endpoints,
            routes: args.routes,
            svc0_port: 30000,
        };
        return config::write(dir, &shape);
    }
    let modes = match args.mode.as_str() {
        "sotw" => vec![Mode::Sotw],
        "delta" => vec![Mode::Delta],
        _ => vec![Mode::Sotw, Mode::Delta],
    };
    for &n in &args.streams {
        for &mode in &modes {
            run_one(&args, n, mode).await?;
        }
    }
    Ok(())
}
