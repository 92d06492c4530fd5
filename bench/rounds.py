#!/usr/bin/env python3
"""The keep-alive loads in interleaved rounds, medians per proxy.

bench/run.py measures each proxy once, one after the other; between two runs of the same
proxy this machine moves by 10-20% (../shared/BENCH.md), often more than the difference being
looked for. Here every round starts each proxy in turn against the same backend and
controlplane and measures HTTP/1.1, 64 KiB, TLS keep-alive and h2c; the table gives each
figure's median over the rounds and its range, so a slow spell hits every proxy alike.

    python3 bench/rounds.py --rounds 3 dataplane nginx haproxy envoy
    python3 bench/rounds.py --rounds 4 /tmp/old/dataplane dataplane   # two builds (A/B)

A path stands for a dataplane binary; `dataplane` is target/release/dataplane. Tools as for
bench/run.sh (run that once first: it installs them and builds the release binaries).
"""

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402

PEERS = ("envoy", "nginx", "haproxy")


def measure(who, setup, seconds, workdir):
    """One proxy, one round: CPU us per request (user, kernel) and requests/s per load."""
    if who in PEERS or who == "dataplane":
        name = who
        os.environ.pop("DATAPLANE", None)
    else:
        name = "dataplane"
        os.environ["DATAPLANE"] = str(Path(who).resolve())
    proc = run.start_proxy(name, setup, workdir)
    try:
        run.run_wrk(f"http://127.0.0.1:{setup.http_port}/", 2, 50, workdir)  # warm-up

        def timed(load):
            r = run.timed(proc.pid, load)
            return {"user": r["user_us_per_req"], "sys": r["sys_us_per_req"],
                    "rps": r["rps"], "p99_ms": r.get("p99_ms")}

        http = f"http://127.0.0.1:{setup.http_port}"
        return {
            "h1": timed(lambda: run.run_wrk(f"{http}/", seconds, 50, workdir)),
            "64k": timed(lambda: run.run_wrk(f"{http}/64k", seconds, 50, workdir)),
            "tls": timed(lambda: run.run_wrk(f"https://127.0.0.1:{setup.tls_port}/", seconds, 50, workdir)),
            "h2c": timed(lambda: run.run_h2load(f"http://127.0.0.1:{setup.h2_port}/", seconds)),
        }
    finally:
        proc.stop()


def table(names, results):
    loads = ("h1", "64k", "tls", "h2c")
    head = "| proxy | " + " | ".join(f"{l} CPU us/req (user + kernel) | {l} rps" for l in loads) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]

    def med(rounds, load, f):
        values = [f(r[load]) if callable(f) else r[load][f] for r in rounds]
        return statistics.median(values), min(values), max(values)

    for name in names:
        rounds = results[name]
        cells = []
        for load in loads:
            cpu, lo, hi = med(rounds, load, lambda x: x["user"] + x["sys"])
            user = med(rounds, load, "user")[0]
            kernel = med(rounds, load, "sys")[0]
            rps = med(rounds, load, "rps")[0]
            cells.append(f"{cpu:.1f} ({user:.1f} + {kernel:.1f}; {lo:.1f}-{hi:.1f}) | {rps:.0f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("proxies", nargs="+", help="dataplane, envoy, nginx, haproxy, or a dataplane binary's path")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=4, help="per load, per round")
    ap.add_argument("--json", help="also write every round's figures here")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    workdir = Path(tempfile.mkdtemp(prefix="bench-rounds-"))
    print(f"# rounds {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} CPUs ({os.uname().release}); "
          f"{args.rounds} rounds x {args.seconds} s per load; logs in {workdir}", flush=True)
    with_xds = any(p not in ("nginx", "haproxy") for p in args.proxies)
    setup = run.Setup(workdir, with_xds=with_xds)
    results = {p: [] for p in args.proxies}
    try:
        for i in range(args.rounds):
            for p in args.proxies:
                d = workdir / f"{Path(p).name}-{len(results[p])}-{i}"
                d.mkdir()
                r = measure(p, setup, args.seconds, d)
                results[p].append(r)
                print(f"round {i + 1} {p}: " + ", ".join(
                    f"{load} {v['user'] + v['sys']:.1f} us {v['rps']:.0f} rps" for load, v in r.items()), flush=True)
    finally:
        setup.stop()
    print(table(args.proxies, results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
