//! Ports for configs that must name a listener port before the proxy starts.
//!
//! A port the kernel handed out for `:0` and then released can be handed out again at once to
//! any socket bound to port 0, such as the proxy's own admin listener; it happened in CI, when
//! a dataplane's admin socket took the port its listener was configured with. So these ports
//! come from below the kernel's ephemeral range (`ip_local_port_range`), which port-0 binds never
//! use, and are checked free by binding them.
//!
//! Tests run in processes of their own, side by side, and a port is free only until its proxy
//! binds it, seconds later: two processes drawing the same port in that window collided once
//! ("Address already in use" for a listener). So a port is also claimed across processes, by
//! creating a file named after it in a directory they share; claims older than ten minutes are
//! an earlier run's and are taken over.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::Duration;

static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free port on 127.0.0.1 outside the ephemeral range, not given before in this process.
pub fn unassigned_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, to) = (low.saturating_sub(12000).max(1024), low.saturating_sub(1));
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let port = from + (rand_u16() % (to - from).max(1));
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && claim(port) {
            given.insert(port);
            return port;
        }
    }
    // Everything below the range is taken: fall back to a kernel-chosen port.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Claims `port` for this process among all the test processes of this machine; false if
/// another one has.
fn claim(port: u16) -> bool {
    let dir = std::env::temp_dir().join("xds-mesh-test-ports");
    if std::fs::create_dir_all(&dir).is_err() {
        return true;
    }
    let path = dir.join(port.to_string());
    let stale = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > Duration::from_secs(600));
    if stale {
        let _ = std::fs::remove_file(&path);
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .is_ok()
}

/// Randomness without a dependency: the process id and the clock, mixed.
fn rand_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish() as u16
}
