"""Dashboard and API page times with a long ledger (DESIGN §10: pages < 200 ms at 10^5 runs).

    python bench/dashboard.py                         # SQLite, 100,000 finished runs
    python bench/dashboard.py --store both --runs 100000 --reps 20

On a fresh store: the registry of bench/apps.py, ``--runs`` finished runs and their events
written straight into the tables (bench/core.py's ``seed_ledger``: spread over 30 days and
100 tenants; 1% of them failed, with a handful of messages), then ``durably server`` (env
dev, so no login) in its own process. Each page is fetched ``--reps`` times over loopback
after one warm-up; the figures are wall times of the whole request, as a browser waits.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import core  # noqa: E402  (bench/core.py)
from durably.chaos.proxy import free_port  # noqa: E402

PAGES = ["/", "/runs", "/runs?status=failed", "/runs?function=noop", "/runs?tenant=t7", "/failures", "/events",
         "/runs?function=ping", "/runs?status=cancelled", "/runs?tenant=nobody",  # filters that match no run
         "/runs/{run}", "/events/{event}", "/audit",
         "/api/v1/runs?limit=50", "/api/v1/runs?status=failed&limit=50", "/api/v1/functions"]



def fail_some(url: str) -> None:
    """1% of the seeded runs failed, with five distinct messages (the failures page groups them)."""
    sql = ("UPDATE durably_runs SET status = 'failed', terminal_reason = 'error', output = NULL, "
           "error = '{\"name\": \"ValueError\", \"message\": \"upstream ' || (CAST(substr(id, 9) AS integer) % 5) || "
           "' answered 503\"}' WHERE id LIKE 'old-run-%00'")
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url[len("sqlite:///"):])
        conn.execute(sql)
        conn.commit()
        conn.execute("ANALYZE")
        conn.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET search_path TO durably, public")
        conn.execute(sql)
        conn.execute("ANALYZE durably_runs")


def measure(kind: str, runs: int, reps: int) -> list[tuple[str, float, float, float]]:
    core.ENV = "dev"
    with core.fresh_store(kind) as url:
        app = core.open_app(url)
        app.register()
        app.close()
        seeded = core.seed_ledger(url, runs)
        fail_some(url)
        port = free_port()
        env = dict(os.environ, DURABLY_DATABASE_URL=url, DURABLY_ENV="dev", PYTHONPATH=core.REPO)
        with tempfile.TemporaryFile("w+") as log:
            server = subprocess.Popen([sys.executable, "-m", "durably", "server", "--port", str(port)],
                                      env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            base = f"http://127.0.0.1:{port}"
            try:
                with httpx.Client(base_url=base, timeout=30) as client:
                    deadline = time.time() + 60
                    while True:
                        try:
                            if client.get("/api/v1/health").status_code < 500:
                                break
                        except httpx.TransportError:
                            pass
                        if time.time() > deadline or server.poll() is not None:
                            log.seek(0)
                            raise RuntimeError("durably server did not start:\n" + log.read()[-3000:])
                        time.sleep(0.05)
                    print(f"{kind}: {runs:,} runs seeded in {seeded:.1f} s", flush=True)
                    out = []
                    for page in (p.format(run=f"old-run-{runs // 2:09d}", event=f"old-ev-{runs // 2:09d}")
                                 for p in PAGES):
                        r = client.get(page)
                        assert r.status_code == 200, (page, r.status_code, r.text[:300])
                        times = []
                        for _ in range(reps):
                            t0 = time.perf_counter()
                            r = client.get(page)
                            times.append((time.perf_counter() - t0) * 1000)
                            assert r.status_code == 200, (page, r.status_code)
                        times.sort()
                        out.append((page, statistics.median(times), times[int(0.95 * (len(times) - 1))], times[-1]))
                    return out
            finally:
                core.stop_worker(server)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", choices=["sqlite", "postgres", "both"], default="sqlite")
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=20)
    a = ap.parse_args()
    for kind in (["sqlite", "postgres"] if a.store == "both" else [a.store]):
        rows = measure(kind, a.runs, a.reps)
        print(f"| {kind} page ({a.runs:,} runs) | p50 ms | p95 ms | max ms |")
        print("|---|---|---|---|")
        for page, p50, p95, mx in rows:
            print(f"| `{page}` | {p50:.1f} | {p95:.1f} | {mx:.1f} |")
        print(flush=True)


if __name__ == "__main__":
    main()
