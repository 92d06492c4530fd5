#!/usr/bin/env python3
"""Side-by-side proxy benchmark (issue 5). Run through bench/run.sh, which installs the tools.

Method (../shared/BENCH.md): each proxy is pinned to CPU 1 with one worker; the backend (nginx)
and the load generators are pinned to CPU 0. The generator's core caps every fast proxy near
the direct figure, so the fairest measure of a proxy is its own CPU time per request: user +
system ticks of its whole process tree from /proc, before and after the load, divided by the
requests served. Proxies run one after another in one invocation; compare ratios, not absolutes.
"""

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "bench" / "configs"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
PROXY_CPU = "1"
LOAD_CPU = "0"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, deadline=20.0):
    end = time.time() + deadline
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open within {deadline}s")


def wait_http(url, want=200, deadline=30.0):
    end = time.time() + deadline
    last = None
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == want:
                    return
                last = r.status
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last = e
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready within {deadline}s: {last}")


def tree(pid):
    """pid and its descendants (nginx and haproxy fork workers)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except OSError:
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_split(pid):
    """User and system CPU seconds of a process tree."""
    user = system = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            user += int(fields[11])  # utime
            system += int(fields[12])  # stime
        except OSError:
            pass
    return user / CLK_TCK, system / CLK_TCK


def cpu_seconds(pid):
    return sum(cpu_split(pid))


def timed(pid, fn):
    """Runs a load; its result gains the proxy's CPU seconds over it: `cpu_s`, and apart
    `user_s` and `sys_s`; for a load that counts requests, also per request:
    `cpu_us_per_req`, `user_us_per_req` and `sys_us_per_req`."""
    user0, sys0 = cpu_split(pid)
    result = fn()
    user1, sys1 = cpu_split(pid)
    result["user_s"], result["sys_s"] = user1 - user0, sys1 - sys0
    result["cpu_s"] = result["user_s"] + result["sys_s"]
    if "requests" in result:
        n = max(1, result["requests"])
        result["cpu_us_per_req"] = result["cpu_s"] * 1e6 / n
        result["user_us_per_req"] = result["user_s"] * 1e6 / n
        result["sys_us_per_req"] = result["sys_s"] * 1e6 / n
    return result


def rss_mb(pid):
    total = 0
    for p in tree(pid):
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
        except OSError:
            pass
    return total / 1e6


class Proc:
    def __init__(self, name, argv, cpu, workdir, env=None):
        self.name = name
        self.log = open(workdir / f"{name}.log", "w")
        self.p = subprocess.Popen(["taskset", "-c", cpu, *argv], stdout=self.log, stderr=subprocess.STDOUT,
                                  env=env, start_new_session=True)

    @property
    def pid(self):
        return self.p.pid

    def stop(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.log.close()


def render(template, dest, **values):
    text = (TEMPLATES / template).read_text()
    for k, v in values.items():
        text = text.replace("{{" + k + "}}", str(v))
    dest.write_text(text)
    return dest


WRK_LUA = """
done = function(summary, latency, requests)
  io.write(string.format("BENCH %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def run_wrk(url, seconds, conns, workdir, headers=()):
    script = workdir / "report.lua"
    script.write_text(WRK_LUA)
    argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "-s", str(script)]
    for h in headers:
        argv += ["-H", h]
    out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"BENCH (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    if not m:
        raise RuntimeError(f"wrk output not understood:\n{out}")
    req, dur_us, p50, p99, p999, errors = map(int, m.groups())
    return {"requests": req, "rps": req / (dur_us / 1e6), "p50_ms": p50 / 1e3, "p99_ms": p99 / 1e3,
            "p999_ms": p999 / 1e3, "errors": errors}


def run_h2load(url, seconds):
    argv = ["taskset", "-c", LOAD_CPU, "h2load", "-c10", "-m10", "-t1", "-D", str(seconds), url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    if not (rps and done):
        raise RuntimeError(f"h2load output not understood:\n{out}")
    return {"requests": int(done.group(2)), "rps": float(rps.group(1)),
            "errors": int(done.group(3)) + int(done.group(4))}


def run_s_time(port, seconds, clients=4):
    """Full TLS 1.3 handshakes with `openssl s_time -new` (no HTTP request: see BENCH.md),
    `clients` processes in parallel on the load core; returns handshakes and the rate."""
    mode = "-new"
    procs = [subprocess.Popen(["taskset", "-c", LOAD_CPU, "openssl", "s_time", "-connect", f"127.0.0.1:{port}", mode,
                               "-tls1_3", "-time", str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True) for _ in range(clients)]
    total = 0
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 30)
        m = re.search(r"(\d+) connections in \d+ real seconds", out)
        total += int(m.group(1)) if m else 0
    if total == 0:
        raise RuntimeError(f"s_time {mode}: no handshake completed")
    return {"handshakes": total, "per_s": total / seconds}


def run_iperf(port, seconds):
    argv = ["taskset", "-c", LOAD_CPU, "iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    data = json.loads(out)
    if "error" in data:
        raise RuntimeError(data["error"])
    received = data["end"]["sum_received"]
    return {"bytes": received["bytes"], "mb_s": received["bits_per_second"] / 8 / 1e6}


async def hold_idle(port, count, host):
    """Opens `count` keep-alive connections, one request each, and keeps them open."""
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    sem = asyncio.Semaphore(200)
    conns = []

    async def one():
        async with sem:
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
            conns.append(w)
            w.write(request)
            await w.drain()
            await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)

    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    failed = sum(1 for r in results if isinstance(r, Exception))
    return conns, failed


def idle_memory(proxy_pid, port, counts, host):
    out = {}
    base = rss_mb(proxy_pid)
    loop = asyncio.new_event_loop()
    for n in counts:
        conns, failed = loop.run_until_complete(hold_idle(port, n, host))
        time.sleep(0.5)
        rss = rss_mb(proxy_pid)
        out[n] = {"rss_mb": rss, "failed": failed, "kb_per_conn": (rss - base) * 1e3 / max(1, n - failed)}
        for w in conns:
            w.close()
        time.sleep(1.0)
    loop.close()
    return out


class Setup:
    """Backends and the controlplane, shared by every proxy under test."""

    def __init__(self, workdir, with_xds, access_log=False):
        self.workdir = workdir
        self.access_log = access_log
        self.procs = []
        self.backend_port = free_port()
        self.iperf_port = free_port()
        self.http_port = free_port()
        self.h2_port = free_port()
        self.tcp_port = free_port()
        self.tls_port = free_port()
        self.xds_port = free_port()
        self.admin_port = free_port()
        www = workdir / "www"
        www.mkdir()
        (www / "64k").write_bytes(b"x" * 65536)
        # One ECDSA P-256 certificate for every proxy's TLS listener (the usual choice for
        # web servers; every peer serves the same certificate).
        self.cert, self.key, self.pem = workdir / "cert.pem", workdir / "key.pem", workdir / "bundle.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", str(self.key), "-out", str(self.cert), "-days", "2", "-subj", "/CN=bench.local",
                        "-addext", "subjectAltName=DNS:bench.local"], check=True, capture_output=True)
        self.pem.write_text(self.cert.read_text() + self.key.read_text())
        conf = render("nginx-backend.conf", workdir / "nginx-backend.conf", port=self.backend_port,
                      root=www, workdir=workdir)
        self.procs.append(Proc("backend", ["nginx", "-c", str(conf), "-p", str(workdir)], LOAD_CPU, workdir))
        self.procs.append(Proc("iperf3-server", ["iperf3", "-s", "-p", str(self.iperf_port)], LOAD_CPU, workdir))
        wait_port(self.backend_port)
        wait_port(self.iperf_port)
        if with_xds:
            self.start_controlplane()

    def start_controlplane(self):
        workdir = self.workdir
        cfg = workdir / "xds"
        cfg.mkdir()
        render("xds-resources.yaml", cfg / "resources.yaml", http_port=self.http_port, h2_port=self.h2_port,
               tcp_port=self.tcp_port, backend_port=self.backend_port, iperf_port=self.iperf_port,
               tls_port=self.tls_port, cert=self.cert, key=self.key, access_log=self.access_log_yaml())
        cp = ROOT / "target" / "release" / "controlplane"
        self.procs.append(Proc("controlplane", [str(cp), "serve", "--config", str(cfg), "--listen",
                                                f"127.0.0.1:{self.xds_port}", "--admin",
                                                f"127.0.0.1:{free_port()}"], LOAD_CPU, workdir))
        wait_port(self.xds_port)

    def access_log_yaml(self):
        """With --access-log, the HTTP listener writes Envoy's default format to a file (the
        same resources go to Envoy and to ours, so both log)."""
        if not self.access_log:
            return ""
        path = self.workdir / "access.log"
        return ('access_log: [ { name: envoy.access_loggers.file, typed_config: { "@type": '
                'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, '
                f'path: "{path}" }} }} ]')

    def stop(self):
        for p in reversed(self.procs):
            p.stop()


def start_proxy(name, setup, workdir):
    """Starts one proxy on PROXY_CPU with one worker; returns (Proc, ready-check)."""
    w = workdir
    if name in ("dataplane", "envoy"):
        boot = render("bootstrap.yaml", w / f"{name}-bootstrap.yaml", node_id=name, xds_port=setup.xds_port,
                      admin_port=setup.admin_port)
        if name == "envoy":
            argv = ["envoy", "-c", str(boot), "--concurrency", "1", "--use-dynamic-base-id", "-l", "error"]
        else:
            argv = [os.environ.get("DATAPLANE", str(ROOT / "target" / "release" / "dataplane")), "--bootstrap", str(boot), "--concurrency", "1"]
        proc = Proc(name, argv, PROXY_CPU, w)
        wait_http(f"http://127.0.0.1:{setup.admin_port}/ready")
    elif name == "nginx":
        conf = render("nginx-proxy.conf", w / "nginx-proxy.conf", http_port=setup.http_port, h2_port=setup.h2_port,
                      tcp_port=setup.tcp_port, backend_port=setup.backend_port, iperf_port=setup.iperf_port,
                      workdir=w, tls_port=setup.tls_port, cert=setup.cert, key=setup.key)
        proc = Proc(name, ["nginx", "-c", str(conf), "-p", str(w)], PROXY_CPU, w)
    elif name == "haproxy":
        conf = render("haproxy.cfg", w / "haproxy.cfg", http_port=setup.http_port, h2_port=setup.h2_port,
                      tcp_port=setup.tcp_port, backend_port=setup.backend_port, iperf_port=setup.iperf_port,
                      tls_port=setup.tls_port, pem=setup.pem)
        proc = Proc(name, ["haproxy", "-f", str(conf), "-db"], PROXY_CPU, w)
    else:
        raise ValueError(name)
    for port in (setup.http_port, setup.h2_port, setup.tcp_port, setup.tls_port):
        wait_port(port)
    # Every proxy must really proxy before it is measured.
    wait_http(f"http://127.0.0.1:{setup.http_port}/")
    return proc


def measure(name, setup, args, workdir):
    proc = start_proxy(name, setup, workdir)
    # RSS at start: once the proxy serves and has settled for 2 s (ours drops the decoded API
    # descriptors within a second of applying its initial config; every proxy gets the wait).
    time.sleep(2)
    row = {"proxy": name, "rss_start_mb": rss_mb(proc.pid)}
    try:
        run_wrk(f"http://127.0.0.1:{setup.http_port}/", 2, 50, workdir)  # warm-up
        row["h1"] = timed(proc.pid, lambda: run_wrk(f"http://127.0.0.1:{setup.http_port}/", args.seconds, 50, workdir))
        row["h1_64k"] = timed(proc.pid, lambda: run_wrk(f"http://127.0.0.1:{setup.http_port}/64k", args.seconds // 2, 50,
                                                       workdir))
        row["h2"] = timed(proc.pid, lambda: run_h2load(f"http://127.0.0.1:{setup.h2_port}/", args.seconds))
        tls_full = timed(proc.pid, lambda: run_s_time(setup.tls_port, args.seconds // 2))
        tls_full["cpu_us_per_hs"] = tls_full["cpu_s"] * 1e6 / tls_full["handshakes"]
        row["tls_full"] = tls_full
        # Resumed: wrk with a new connection per request resumes the TLS session (BENCH.md;
        # s_time -reuse does not, under TLS 1.3 it never reads the post-handshake ticket).
        tls_resumed = timed(proc.pid, lambda: run_wrk(f"https://127.0.0.1:{setup.tls_port}/", args.seconds // 2, 10, workdir,
                                            headers=("Connection: close",)))
        tls_resumed["per_s"] = tls_resumed["rps"]
        tls_resumed["cpu_us_per_hs"] = tls_resumed["cpu_us_per_req"]  # a handshake per request
        row["tls_resumed"] = tls_resumed
        row["tls_keepalive"] = timed(proc.pid, lambda: run_wrk(f"https://127.0.0.1:{setup.tls_port}/", args.seconds // 2,
                                                               50, workdir))
        tcp = timed(proc.pid, lambda: run_iperf(setup.tcp_port, args.seconds // 2))
        tcp["cpu_s_per_gb"] = tcp["cpu_s"] / max(1e-9, tcp["bytes"] / 1e9)
        row["tcp"] = tcp
        row["idle"] = idle_memory(proc.pid, setup.http_port, args.idle, "bench")
    except Exception as e:  # noqa: BLE001 - one proxy failing must not lose the others' figures
        row["error"] = str(e)
    finally:
        proc.stop()
    return row


def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def table(rows):
    ours = next((r for r in rows if r["proxy"] == "dataplane"), None)
    lines = ["| proxy | h1 rps | h1 p50 ms | h1 p99 ms | h1 p99.9 ms | h1 CPU us/req | h1 user + kernel us/req | 64k rps | 64k CPU us/req "
             "| h2c rps | h2c CPU us/req | TLS full hs/s | TLS full CPU us/hs | TLS resumed hs/s | "
             "TLS resumed CPU us/(hs+req) | TLS keep-alive rps | TLS keep-alive CPU us/req "
             "| TCP MB/s | TCP CPU s/GB | RSS start MB | "
             + " | ".join(f"RSS {n} idle MB (KB/conn)" for n in rows[0].get("idle", {}) or [])
             + " |"]
    lines.append("|" + "---|" * (lines[0].count("|") - 1))
    for r in rows:
        g = lambda k, f: r.get(k, {}).get(f)  # noqa: E731
        idle = " | ".join(f"{v['rss_mb']:.1f} ({v['kb_per_conn']:.2f})" for v in r.get("idle", {}).values())
        lines.append(
            f"| {r['proxy']} | {fmt(g('h1', 'rps'), '.0f')} | {fmt(g('h1', 'p50_ms'), '.2f')} | "
            f"{fmt(g('h1', 'p99_ms'), '.2f')} | {fmt(g('h1', 'p999_ms'), '.2f')} | {fmt(g('h1', 'cpu_us_per_req'), '.1f')} | "
            # User and kernel apart for h1: every proxy makes the same four socket calls per
            # request, so the kernel part is a floor none of them goes under.
            f"{fmt(g('h1', 'user_us_per_req'), '.1f')} + {fmt(g('h1', 'sys_us_per_req'), '.1f')} | "
            f"{fmt(g('h1_64k', 'rps'), '.0f')} | {fmt(g('h1_64k', 'cpu_us_per_req'), '.1f')} | "
            f"{fmt(g('h2', 'rps'), '.0f')} | {fmt(g('h2', 'cpu_us_per_req'), '.1f')} | "
            f"{fmt(g('tls_full', 'per_s'), '.0f')} | {fmt(g('tls_full', 'cpu_us_per_hs'), '.0f')} | "
            f"{fmt(g('tls_resumed', 'per_s'), '.0f')} | {fmt(g('tls_resumed', 'cpu_us_per_hs'), '.0f')} | "
            f"{fmt(g('tls_keepalive', 'rps'), '.0f')} | {fmt(g('tls_keepalive', 'cpu_us_per_req'), '.1f')} | "
            f"{fmt(g('tcp', 'mb_s'), '.0f')} | {fmt(g('tcp', 'cpu_s_per_gb'), '.2f')} | {fmt(r.get('rss_start_mb'), '.1f')} | "
            f"{idle} |" + (f" error: {r['error']}" if "error" in r else ""))
    if ours and "h1" in ours:
        lines.append("")
        lines.append("Ratios, ours / peer (CPU per request: lower is better; rps: higher is better):")
        for r in rows:
            if r is ours or "h1" not in r:
                continue
            parts = []
            for key, field in (("h1", "cpu_us_per_req"), ("h1", "rps"), ("h2", "rps"), ("h2", "cpu_us_per_req"),
                               ("tls_full", "cpu_us_per_hs"), ("tls_full", "per_s"), ("tls_resumed", "cpu_us_per_hs"),
                               ("tls_keepalive", "rps"), ("tls_keepalive", "cpu_us_per_req"), ("tcp", "mb_s")):
                a, b = ours.get(key, {}).get(field), r.get(key, {}).get(field)
                if a and b:
                    parts.append(f"{key} {field} {a / b:.2f}x")
            lines.append(f"- vs {r['proxy']}: " + ", ".join(parts))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxies", default="dataplane,envoy,nginx,haproxy")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--idle", default="5000,10000", help="idle keep-alive connection counts")
    ap.add_argument("--json", help="also write the raw figures here")
    ap.add_argument("--access-log", action="store_true",
                    help="the HTTP listener writes Envoy's default access log to a file (every xDS proxy)")
    args = ap.parse_args()
    args.idle = [int(x) for x in args.idle.split(",") if x]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    for tool in ("wrk", "h2load", "nginx", "haproxy", "iperf3", "envoy", "taskset", "openssl"):
        if not shutil.which(tool):
            sys.exit(f"{tool} missing: run bench/run.sh, which installs it")
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    print(f"# bench {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} CPUs ({os.uname().release}); logs in {workdir}")
    proxies = args.proxies.split(",")
    setup = Setup(workdir, with_xds=bool({"dataplane", "envoy"} & set(proxies)), access_log=args.access_log)
    rows = []
    try:
        for name in proxies:
            d = workdir / name
            d.mkdir()
            print(f"measuring {name} ...", flush=True)
            rows.append(measure(name, setup, args, d))
    finally:
        setup.stop()
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
