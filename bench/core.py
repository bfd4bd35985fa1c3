"""durably's own benchmark: prints figures, asserts nothing (not part of the test suite).

    python bench/core.py                      # everything, on SQLite
    python bench/core.py --store both         # SQLite, then PostgreSQL (when the store exists)
    python bench/core.py --only drain,latency --procs 1

Measures, each on a fresh store with default (durable) settings:
  drain    no-op runs/s draining N queued runs (sent with one ``app.send`` of a list), timed
           from the start of the worker process(es) until the last run finished; 1 worker
           process x concurrency 8, and 2 processes; worker CPU ms per run
  steps    runs/s of a function with 3 durable steps, drained the same way
  latency  enqueue-to-start p50/p95/p99 over sequential sends to an idle worker: in this
           process (worker on a thread), and with the worker in its own process
  growth   the 1-process drain on an empty ledger, then with ``--ledger`` (default 10^6)
           finished runs and their events already in it, and the ratio of the two

Workers are started with the CLI (``python -m durably worker bench.apps:app``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import durably  # noqa: E402
from bench import apps  # noqa: E402

ENV = "bench"
PG_ADMIN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


# --- stores -------------------------------------------------------------------------------


def postgres_available() -> bool:
    try:
        import durably.store.postgres  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def fresh_store(kind: str) -> Iterator[str]:
    """A URL of a new, empty store, removed afterwards."""
    if kind == "sqlite":
        d = tempfile.mkdtemp(prefix="durably-bench-")
        try:
            yield f"sqlite:///{os.path.join(d, 'bench.db')}"
        finally:
            shutil.rmtree(d, ignore_errors=True)
        return
    import psycopg

    name = f"durably_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Ledger:
    """Direct read-only queries on the runs table, to watch a drain from outside."""

    def __init__(self, url: str, since: float = 0.0):
        self.url = url
        self.since = since  # only runs created from then on (not a seeded history)
        if url.startswith("sqlite:"):
            self.conn = sqlite3.connect(url[len("sqlite:///"):])
            self.ph = "?"
        else:
            import psycopg

            self.conn = psycopg.connect(url, autocommit=True)
            self.conn.execute("SET search_path TO durably, public")
            self.ph = "%s"

    def one(self, sql: str, *args: Any) -> Any:
        return self.conn.execute(sql.replace("?", self.ph), args).fetchone()

    def finished(self) -> int:
        return self.one("SELECT COUNT(*) FROM durably_runs WHERE env = ? AND created_at >= ? AND status = 'completed'",
                        ENV, self.since)[0]

    def span(self) -> tuple[float, float, float]:
        """(first start, first finish, last finish) of the completed runs, store clock."""
        return tuple(self.one("SELECT MIN(started_at), MIN(finished_at), MAX(finished_at) FROM durably_runs "
                              "WHERE env = ? AND created_at >= ? AND status = 'completed'",
                              ENV, self.since))  # type: ignore[return-value]

    def close(self) -> None:
        self.conn.close()


def open_app(url: str) -> durably.App:
    app = apps.app
    app.close()
    # A bulk send of tens of thousands of events is measured, not bounded: a generous deadline.
    app.configure(database_url=url, env=ENV, dispatch_timeout=600)
    return app


def worker_env(url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DURABLY_DATABASE_URL=url, DURABLY_ENV=ENV, PYTHONPATH=REPO + os.pathsep + env.get("PYTHONPATH", ""))
    env.update(extra)
    return env


def start_worker(env: dict[str, str], concurrency: int, log: Any) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "durably", "worker", "bench.apps:app",
                             "--concurrency", str(concurrency)],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_worker(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cpu_seconds(pid: int) -> float:
    """user + system CPU of a process (and its reaped children), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


# --- drains -------------------------------------------------------------------------------


def seed_ledger(url: str, n: int) -> float:
    """Put ``n`` finished runs (completed over the last 30 days) and their events straight
    into the store's tables: the history a long-lived deployment carries. Returns seconds."""
    t0 = time.perf_counter()
    start = time.time() - 30 * 86400
    step = 30 * 86400 / max(n, 1)
    event = json.dumps({"name": "bench.noop", "data": {}, "id": "x", "ts": 0})
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url[len("sqlite:///"):])
        series = "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < ? - 1) "
        conn.execute("BEGIN")
        conn.execute(series + "INSERT INTO durably_events (env, id, name, data, ts, received_at) "
                     "SELECT ?, printf('old-ev-%09d', i), 'bench.noop', ?, 0, ? + i * ? FROM s",
                     (n, ENV, event, start, step))
        conn.execute(series + "INSERT INTO durably_runs (id, env, function_id, status, tenant, trigger, event_id, "
                     "event, available_at, sort_at, created_at, started_at, finished_at, attempt, terminal_reason, "
                     "output, lease_gen) SELECT printf('old-run-%09d', i), ?, 'noop', 'completed', "
                     "printf('t%d', i % 100), 'event', printf('old-ev-%09d', i), ?, ? + i * ?, ? + i * ?, "
                     "? + i * ?, ? + i * ? + 0.01, ? + i * ? + 0.02, 0, 'completed', 'null', 1 FROM s",
                     (n, ENV, event, *([start, step] * 5)))
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET search_path TO durably, public")
            conn.execute("INSERT INTO durably_events (env, id, name, data, ts, received_at) "
                         "SELECT %s, format('old-ev-%%s', lpad(i::text, 9, '0')), 'bench.noop', %s, 0, "
                         "%s + i * %s FROM generate_series(0, %s - 1) AS i", (ENV, event, start, step, n))
            t = "%s + i * %s"
            conn.execute("INSERT INTO durably_runs (id, env, function_id, status, tenant, trigger, event_id, event, "
                         "available_at, sort_at, created_at, started_at, finished_at, attempt, terminal_reason, "
                         "output, lease_gen) SELECT format('old-run-%%s', lpad(i::text, 9, '0')), %s, 'noop', "
                         "'completed', 't' || (i %% 100), 'event', format('old-ev-%%s', lpad(i::text, 9, '0')), %s, "
                         f"{t}, {t}, {t}, {t} + 0.01, {t} + 0.02, 0, 'completed', 'null', 1 "
                         "FROM generate_series(0, %s - 1) AS i", (ENV, event, *([start, step] * 5), n))
            conn.execute("VACUUM ANALYZE durably_runs")
            conn.execute("VACUUM ANALYZE durably_events")
    return time.perf_counter() - t0


def drain(kind: str, event: str, n: int, procs: int, concurrency: int, history: int = 0) -> dict:
    with fresh_store(kind) as url:
        app = open_app(url)
        app.register()
        seeded = seed_ledger(url, history) if history else None
        sent_at = time.time() - 1.0
        t0 = time.perf_counter()
        res = app.send([durably.Event(event, {"i": i}) for i in range(n)])
        enqueue_s = time.perf_counter() - t0
        assert len(res.runs) == n, f"sent {n} events, created {len(res.runs)} runs"
        app.close()
        ledger = Ledger(url, since=sent_at)
        env = worker_env(url)
        with tempfile.TemporaryFile("w+") as log:
            t_start = time.time()
            workers = [start_worker(env, concurrency, log) for _ in range(procs)]
            try:
                deadline = time.time() + 600
                while ledger.finished() < n:
                    if any(p.poll() is not None for p in workers):
                        log.seek(0)
                        raise RuntimeError("a worker exited early:\n" + log.read()[-3000:])
                    if time.time() > deadline:
                        raise TimeoutError(f"drain not done after 600 s ({ledger.finished()}/{n})")
                    time.sleep(0.02)
                cpu = sum(cpu_seconds(p.pid) for p in workers)
            finally:
                for p in workers:
                    stop_worker(p)
        first_start, first_finish, last_finish = ledger.span()
        ledger.close()
    return {
        "n": n, "procs": procs, "concurrency": concurrency,
        "per_s": n / (last_finish - t_start),
        "steady_per_s": (n - 1) / (last_finish - first_finish) if last_finish > first_finish else None,
        "startup_s": first_start - t_start,
        "enqueue_per_s": n / enqueue_s,
        "worker_cpu_ms_per_run": 1000.0 * cpu / n,
        **({"ledger_runs": history, "seed_s": seeded} if history else {}),
    }


# --- bulk intake --------------------------------------------------------------------------


def intake(kind: str, event: str, n: int, reps: int = 3) -> dict:
    """One ``app.send`` of a list of ``n`` events on a fresh store: events/s of the call."""
    rates = []
    for _ in range(reps):
        with fresh_store(kind) as url:
            app = open_app(url)
            app.register()
            events = [durably.Event(event, {"i": i, "k": f"key-{i}"}) for i in range(n)]
            t0 = time.perf_counter()
            res = app.send(events)
            rates.append(n / (time.perf_counter() - t0))
            assert len(res.runs) == n, f"sent {n} events, created {len(res.runs)} runs"
            app.close()
    rates.sort()
    return {"n": n, "events_per_s": rates[len(rates) // 2], "min": rates[0], "max": rates[-1]}


# --- latency ------------------------------------------------------------------------------


def _percentiles(lat: list[float]) -> dict:
    s = sorted(lat)

    def pct(p: float) -> float:
        k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
        return s[k]

    return {"n": len(s), "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99), "max_ms": s[-1],
            "mean_ms": statistics.fmean(s)}


def _sample(app: durably.App, n: int, receive) -> list[float]:
    app.send(durably.Event("bench.ping", {"i": -1}))  # warm-up: the worker is up and has run once
    receive(-1, 60)
    time.sleep(0.5)
    lat = []
    for i in range(n):
        t_before = time.time()
        app.send(durably.Event("bench.ping", {"i": i}))
        t_job = receive(i, 30)
        lat.append((t_job - t_before) * 1000.0)
        time.sleep(0.05)  # an idle worker again before the next sample
    return lat


def latency_in_process(kind: str, n: int, concurrency: int) -> dict:
    with fresh_store(kind) as url:
        app = open_app(url)
        got: queue.Queue = queue.Queue()
        apps.on_ping = lambda i, t: got.put((i, t))

        def receive(i: int, timeout: float) -> float:
            j, t = got.get(timeout=timeout)
            assert j == i, (j, i)
            return t

        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        worker = app.worker(concurrency=concurrency)
        t = threading.Thread(target=lambda: loop.run_until_complete(worker.run(stop)), daemon=True)
        t.start()
        try:
            return _percentiles(_sample(app, n, receive))
        finally:
            loop.call_soon_threadsafe(stop.set)
            t.join(30)
            loop.close()
            apps.on_ping = None
            app.close()


def latency_process(kind: str, n: int, concurrency: int) -> dict:
    with fresh_store(kind) as url:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        app = open_app(url)
        app.register()

        def receive(i: int, timeout: float) -> float:
            sock.settimeout(timeout)
            j, t = sock.recv(256).decode().split()
            assert int(j) == i, (j, i)
            return float(t)

        with tempfile.TemporaryFile("w+") as log:
            p = start_worker(worker_env(url, BENCH_PING_PORT=str(sock.getsockname()[1])), concurrency, log)
            try:
                return _percentiles(_sample(app, n, receive))
            except Exception:
                log.seek(0)
                sys.stderr.write(log.read()[-3000:])
                raise
            finally:
                stop_worker(p)
                sock.close()
                app.close()


# --- main ---------------------------------------------------------------------------------


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.0f}" if v >= 100 else f"{v:,.2f}"
    return str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", choices=["sqlite", "postgres", "both"], default="sqlite")
    ap.add_argument("--only", default="drain,steps,latency", help="comma list of drain, steps, latency, growth, intake")
    ap.add_argument("--ledger", type=int, default=1_000_000, help="finished runs already in the ledger (growth)")
    ap.add_argument("--procs", default="1,2", help="worker processes for drain and steps (default 1,2)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--n-noop", type=int, default=5000)
    ap.add_argument("--n-steps", type=int, default=1000)
    ap.add_argument("--n-ping", type=int, default=200)
    ap.add_argument("--n-intake", type=int, default=20000)
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    a = ap.parse_args()
    stores = ["sqlite", "postgres"] if a.store == "both" else [a.store]
    only = set(a.only.split(","))
    procs = [int(p) for p in a.procs.split(",")]
    results: list[dict] = []

    def report(row: dict) -> None:
        results.append(row)
        figures = "  ".join(f"{k}={fmt(v)}" for k, v in row.items() if k not in ("store", "what"))
        print(f"{row['store']:8s} {row['what']:24s} {figures}", flush=True)

    for kind in stores:
        if kind == "postgres" and not postgres_available():
            print("postgres: skipped (durably.store.postgres is not in this build yet)", flush=True)
            continue
        if "drain" in only:
            for p in procs:
                report({"store": kind, "what": f"drain no-op {p}x{a.concurrency}",
                        **drain(kind, "bench.noop", a.n_noop, p, a.concurrency)})
        if "steps" in only:
            for p in procs:
                report({"store": kind, "what": f"3-step runs {p}x{a.concurrency}",
                        **drain(kind, "bench.steps3", a.n_steps, p, a.concurrency)})
        if "growth" in only:
            empty = drain(kind, "bench.noop", a.n_noop, 1, a.concurrency)
            report({"store": kind, "what": f"drain 1x{a.concurrency}, empty ledger", **empty})
            grown = drain(kind, "bench.noop", a.n_noop, 1, a.concurrency, history=a.ledger)
            report({"store": kind, "what": f"drain 1x{a.concurrency}, {a.ledger:,} runs", **grown,
                    "ratio_to_empty": grown["per_s"] / empty["per_s"],
                    "steady_ratio": grown["steady_per_s"] / empty["steady_per_s"]})
        if "intake" in only:
            report({"store": kind, "what": "bulk send, plain", **intake(kind, "bench.noop", a.n_intake)})
            report({"store": kind, "what": "bulk send, idempotency", **intake(kind, "bench.once", a.n_intake)})
        if "latency" in only:
            report({"store": kind, "what": "latency in-process", **latency_in_process(kind, a.n_ping, a.concurrency)})
            report({"store": kind, "what": "latency worker process", **latency_process(kind, a.n_ping, a.concurrency)})
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
