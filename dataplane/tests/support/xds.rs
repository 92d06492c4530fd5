//! Our controlplane binary as the xDS server of in-process dataplanes, and polling with a
//! deadline.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::DEADLINE;

/// The controlplane binary (built by tests/run.sh next to this test's executable).
pub fn controlplane_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .and_then(Path::parent)
        .context("target dir")?
        .join("controlplane");
    if !path.exists() {
        bail!(
            "{} is missing: run tests/run.sh (or cargo build -p controlplane) first",
            path.display()
        );
    }
    Ok(path)
}

/// Starts `controlplane serve` on the directory; returns the child (killed on drop), the xDS
/// address and the admin address from its first stdout line.
pub async fn controlplane(dir: &Path) -> anyhow::Result<(tokio::process::Child, String, String)> {
    controlplane_on(dir, "127.0.0.1:0").await
}

pub async fn controlplane_on(
    dir: &Path,
    listen: &str,
) -> anyhow::Result<(tokio::process::Child, String, String)> {
    let mut child = tokio::process::Command::new(controlplane_bin()?)
        .args(["serve", "--config"])
        .arg(dir)
        .args(["--listen", listen, "--admin", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("controlplane stdout")?;
    let mut line = String::new();
    tokio::time::timeout(DEADLINE, BufReader::new(stdout).read_line(&mut line)).await??;
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map(str::to_string)
    };
    match (field("xds="), field("admin=")) {
        (Some(xds), Some(admin)) => Ok((child, xds, admin)),
        _ => bail!("controlplane printed {line:?}"),
    }
}

/// Polls `check` until it gives `Some`, or fails naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if let Some(v) = check().await {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{what}: not within {DEADLINE:?}")
}

/// The `last_nack.error_detail` the controlplane recorded for a node and type URL.
pub async fn last_nack(admin: &str, node: &str, type_url: &str) -> Option<String> {
    let (_, port) = admin.rsplit_once(':')?;
    let resp = super::send(super::get(port.parse().ok()?, "/status").ok()?)
        .await
        .ok()?;
    let status: serde_json::Value = serde_json::from_slice(resp.body()).ok()?;
    let proxy = status["proxies"]
        .as_array()?
        .iter()
        .find(|p| p["node_id"] == node)?;
    proxy["types"][type_url]["last_nack"]["error_detail"]
        .as_str()
        .map(str::to_string)
}
