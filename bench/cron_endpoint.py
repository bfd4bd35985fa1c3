"""Cron endpoint latency: `durably server` as a subprocess on a fresh SQLite store (default,
durable settings: synchronous=full unless --synchronous normal), pinged over loopback HTTP with keep-alive.

    python bench/cron_endpoint.py [--pings 200] [--window 60] [--synchronous full|normal]

Two cases, each --pings requests, timed at the client from request to full response:
- "first ping": every ping names a new event, so each is the first of its window: it
  writes the dispatch row and the event (and plans the runs it triggers) in one commit (202);
- "duplicate ping": every ping names one event in one window: it counts the ping (200).
A function is registered for the first-ping event names, so each first ping also creates a run.

Prints p50/p95/p99/max in milliseconds; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import durably  # noqa: E402
from durably.config import Settings  # noqa: E402
from durably.chaos.proxy import free_port  # noqa: E402

SECRET = "bench-cron-secret"



def register(db_url: str, pings: int) -> None:
    """Write a registry as a worker would: one function triggered by every first-ping event."""
    app = durably.App("cron-bench", settings=Settings.load({"DURABLY_DATABASE_URL": db_url,
                                                            "DURABLY_ENV": "production"}))

    @app.function(id="tick", trigger=[durably.on_event(f"bench/tick-{i}") for i in range(pings)])
    async def tick(ctx):
        return None

    try:
        app.register()
    finally:
        app.close()


def percentiles(ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return f"p50 {q[49]:6.2f}  p95 {q[94]:6.2f}  p99 {q[98]:6.2f}  max {max(ms):6.2f}  (ms, n={len(ms)})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pings", type=int, default=200)
    p.add_argument("--window", type=int, default=60)
    p.add_argument("--synchronous", choices=["full", "normal"], default="full",
                   help="DURABLY_SQLITE_SYNCHRONOUS of the server (full: the durable default)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        db_url = f"sqlite:///{d}/durably.db"
        register(db_url, args.pings)
        port = free_port()
        env = dict(os.environ, DURABLY_DATABASE_URL=db_url, DURABLY_ENV="production", CRON_SECRET=SECRET,
                   DURABLY_EVENT_KEY="bench-event-key", DURABLY_ADMIN_TOKEN="bench-admin-token",
                   DURABLY_SQLITE_SYNCHRONOUS=args.synchronous)
        server = subprocess.Popen([sys.executable, "-m", "durably", "server", "--port", str(port)], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(base + "/api/v1/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the server did not start:\n" + server.stderr.read().decode(errors="replace"))
                time.sleep(0.05)
            headers = {"Authorization": f"Bearer {SECRET}"}
            with httpx.Client(base_url=base, headers=headers, timeout=10) as c:
                for i in range(20):  # warm up: connections, caches, the first commits
                    c.post(f"/api/v1/cron/bench/warmup-{i}", params={"window": args.window})
                results = {}
                # The first pings use one event name per ping (a new dispatch key, so a new window row).
                first, statuses = [], set()
                for i in range(args.pings):
                    t = time.perf_counter()
                    r = c.post(f"/api/v1/cron/bench/tick-{i}", params={"window": args.window})
                    assert len(r.json()["runs"]) == 1
                    first.append((time.perf_counter() - t) * 1000)
                    statuses.add(r.status_code)
                results["first ping (202)"] = (first, statuses)
                dup, statuses = [], set()
                for _ in range(args.pings):
                    t = time.perf_counter()
                    r = c.post("/api/v1/cron/bench/dup", params={"window": 3600})
                    dup.append((time.perf_counter() - t) * 1000)
                    statuses.add(r.status_code)
                results["duplicate ping (200)"] = (dup, statuses)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
    load = os.getloadavg()[0]
    print(f"cron endpoint, SQLite synchronous={args.synchronous}, {args.pings} sequential pings each, keep-alive, "
          f"load average {load:.2f} on {os.cpu_count()} CPUs:")
    for name, (ms, statuses) in results.items():
        print(f"  {name:22s} {percentiles(ms)}  statuses {sorted(statuses)}")


if __name__ == "__main__":
    main()
