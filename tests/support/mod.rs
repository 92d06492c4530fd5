//! The end-to-end harness: real processes on loopback, every port from 0 (or, where a config
//! must name it in advance, a port the kernel just handed out), every wait a poll with a
//! deadline, every child killed when its handle drops, and its log printed when a test fails.

// A test's helpers fail the test by panicking; clippy only exempts `#[test]` functions.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod backend;
pub mod config;
pub mod http;
pub mod pki;
#[path = "../../dataplane/tests/support/ports.rs"]
pub mod ports;
pub mod tls;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long anything may take to become true before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A binary of this workspace, built by `tests/run.sh` next to the test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> -> target/debug/<name>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run tests/run.sh (it builds the binaries first)",
        path.display()
    );
    path
}

/// A port the kernel considers free right now, for configs that must name their port.
pub fn free_port() -> u16 {
    ports::unassigned_port()
}

/// Polls `f` until it returns `Some`, or panics naming `what` after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A child process that is killed (SIGTERM, then SIGKILL) when dropped, and whose log is
/// printed if the test is failing.
pub struct Process {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).unwrap();
        cmd.stderr(Stdio::from(file));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Process {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status (bounded).
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- log of {} -----\n{}", self.name, self.log());
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
            std::thread::sleep(Duration::from_millis(50));
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Our controlplane serving a config directory.
pub struct Controlplane {
    pub process: Process,
    pub xds: String,
    pub admin: String,
    pub dir: PathBuf,
}

impl Controlplane {
    pub fn start(dir: &Path, work: &Path) -> Self {
        Self::start_at(dir, work, "127.0.0.1:0")
    }

    /// Serves xDS on `xds` (a restart on the address its proxies know).
    pub fn start_at(dir: &Path, work: &Path, xds: &str) -> Self {
        Self::start_with_at(dir, work, xds, &[])
    }

    /// With more `serve` flags (`--tls-cert FILE`...).
    pub fn start_with(dir: &Path, work: &Path, extra: &[&std::ffi::OsStr]) -> Self {
        Self::start_with_at(dir, work, "127.0.0.1:0", extra)
    }

    fn start_with_at(dir: &Path, work: &Path, xds: &str, extra: &[&std::ffi::OsStr]) -> Self {
        let mut cmd = Command::new(bin("controlplane"));
        cmd.args(["serve", "--config"])
            .arg(dir)
            .args(["--listen", xds, "--admin", "127.0.0.1:0"])
            .args(extra);
        cmd.stdout(Stdio::piped());
        let mut process = Process::spawn("controlplane", &mut cmd, work.join("controlplane.log"));
        let stdout = process.child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .unwrap_or_else(|| panic!("controlplane printed {line:?}: {}", process.log()))
                .to_string()
        };
        let (xds, admin) = (field("xds="), field("admin="));
        Controlplane {
            process,
            xds,
            admin,
            dir: dir.to_path_buf(),
        }
    }

    /// The admin API's `/status` document.
    pub async fn status(&self) -> serde_json::Value {
        let r = http::get(&self.admin, "/status", &[])
            .await
            .expect("controlplane /status");
        serde_json::from_slice(&r.body).unwrap()
    }

    /// One proxy's status for a type ("CDS", "RDS"...), once the proxy is connected.
    pub async fn proxy_type(&self, node_id: &str, short: &str) -> Option<serde_json::Value> {
        let status = self.status().await;
        let proxy = status["proxies"]
            .as_array()?
            .iter()
            .find(|p| p["node_id"] == node_id)?
            .clone();
        let (_, t) = proxy["types"]
            .as_object()?
            .iter()
            .find(|(url, _)| short_name(url) == short)?;
        Some(t.clone())
    }
}

fn short_name(url: &str) -> &str {
    match url.rsplit('.').next().unwrap_or("") {
        "Listener" => "LDS",
        "RouteConfiguration" => "RDS",
        "Cluster" => "CDS",
        "ClusterLoadAssignment" => "EDS",
        "Secret" => "SDS",
        other => other,
    }
}

/// Which xDS protocol a proxy speaks.
#[derive(Debug, Clone, Copy)]
pub enum Api {
    Sotw,
    Delta,
}

/// Real Envoy 1.40, bootstrapped with ADS at our controlplane.
pub struct Envoy {
    pub process: Process,
    pub admin: String,
}

impl Envoy {
    pub async fn start(node_id: &str, xds: &str, api: Api, work: &Path) -> Self {
        let (host, port) = xds.rsplit_once(':').unwrap();
        let api_type = match api {
            Api::Sotw => "GRPC",
            Api::Delta => "DELTA_GRPC",
        };
        Self::start_bootstrap(
            node_id,
            &config::envoy_bootstrap(node_id, host, port, api_type),
            work,
        )
        .await
    }

    /// Envoy from a bootstrap of the test's own (its admin address is read from a file).
    pub async fn start_bootstrap(node_id: &str, bootstrap_yaml: &str, work: &Path) -> Self {
        let bootstrap = work.join(format!("envoy-{node_id}.yaml"));
        std::fs::write(&bootstrap, bootstrap_yaml).unwrap();
        let admin_path = work.join(format!("envoy-{node_id}.admin"));
        let mut cmd = Command::new("envoy");
        cmd.arg("-c")
            .arg(&bootstrap)
            .args([
                "--use-dynamic-base-id",
                "--concurrency",
                "1",
                "-l",
                "info",
                "--admin-address-path",
            ])
            .arg(&admin_path)
            .stdout(Stdio::null());
        let process = Process::spawn(
            &format!("envoy {node_id}"),
            &mut cmd,
            work.join(format!("envoy-{node_id}.log")),
        );
        let admin = eventually("Envoy's admin address file", || {
            let path = admin_path.clone();
            async move {
                std::fs::read_to_string(&path)
                    .ok()
                    .filter(|s| s.contains(':'))
                    .map(|s| s.trim().to_string())
            }
        })
        .await;
        Envoy { process, admin }
    }

    /// Envoy's admin `/clusters` text.
    pub async fn clusters(&self) -> String {
        let r = http::get(&self.admin, "/clusters", &[])
            .await
            .expect("envoy /clusters");
        String::from_utf8_lossy(&r.body).into_owned()
    }
}

impl Envoy {
    /// Real Envoy from a static bootstrap (no xDS); ready once its admin address is written.
    pub async fn start_static(bootstrap: &str, name: &str, work: &Path) -> Self {
        let path = work.join(format!("{name}.yaml"));
        std::fs::write(&path, bootstrap).unwrap();
        let admin_path = work.join(format!("{name}.admin"));
        let mut cmd = Command::new("envoy");
        cmd.arg("-c")
            .arg(&path)
            .args(["--use-dynamic-base-id", "--concurrency", "1", "-l", "info"])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .stdout(Stdio::null());
        let process = Process::spawn(name, &mut cmd, work.join(format!("{name}.log")));
        let admin = eventually("Envoy's admin address file", || {
            let path = admin_path.clone();
            async move {
                std::fs::read_to_string(&path)
                    .ok()
                    .filter(|s| s.contains(':'))
                    .map(|s| s.trim().to_string())
            }
        })
        .await;
        Envoy { process, admin }
    }
}

/// Our dataplane, from an Envoy bootstrap.
pub struct Dataplane {
    pub process: Process,
    pub admin: String,
}

impl Dataplane {
    /// With one worker, as the Envoys beside it run.
    pub fn start(bootstrap: &str, name: &str, work: &Path) -> Self {
        Self::start_workers(bootstrap, name, work, 1)
    }

    /// With `workers` workers (each listener bound once per worker).
    pub fn start_workers(bootstrap: &str, name: &str, work: &Path, workers: usize) -> Self {
        let path = work.join(format!("{name}.yaml"));
        std::fs::write(&path, bootstrap).unwrap();
        let mut cmd = Command::new(bin("dataplane"));
        cmd.arg("--bootstrap")
            .arg(&path)
            .args(["--concurrency", &workers.to_string()])
            .stdout(Stdio::piped());
        let mut process = Process::spawn(name, &mut cmd, work.join(format!("{name}.log")));
        let stdout = process.child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let admin = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("admin="))
            .unwrap_or_else(|| panic!("dataplane printed {line:?}: {}", process.log()))
            .to_string();
        Dataplane { process, admin }
    }
}

/// Runs `controlplane validate DIR`: (success, stderr).
pub fn validate(dir: &Path) -> (bool, String) {
    let out = Command::new(bin("controlplane"))
        .arg("validate")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Real Envoy and our dataplane on one static bootstrap, each with its own listener port
/// (`bootstrap(port)`), once both answer `GET /` with 200; with their listener addresses.
pub struct SideBySide {
    pub envoy: Envoy,
    pub ours: Dataplane,
    /// Envoy's listener address, then ours.
    pub addrs: [String; 2],
}

impl SideBySide {
    pub async fn start(bootstrap: impl Fn(u16) -> String, work: &Path) -> Self {
        let (envoy_port, our_port) = (free_port(), free_port());
        let envoy = Envoy::start_static(&bootstrap(envoy_port), "envoy", work).await;
        let ours = Dataplane::start(&bootstrap(our_port), "dataplane", work);
        let addrs = [envoy_port, our_port].map(|p| format!("127.0.0.1:{p}"));
        for addr in &addrs {
            eventually(&format!("{addr} to answer"), || async move {
                http::get(addr, "/", &[]).await.filter(|r| r.status == 200)
            })
            .await;
        }
        SideBySide { envoy, ours, addrs }
    }
}
