"""Load and correctness check of the reference app: ``python -m examples.inbox.load``.

Starts the app (``python -m examples.inbox``) on a free loopback port with its tables in a
fresh PostgreSQL schema, injected transient failures (INBOX_FAIL_RATE) and a 2-second
sweep; sends bursts of writes across many clients, re-delivers every dirty event
(duplicates), waits until everything settled, then checks:

1. every client's counts equal a direct COUNT(*) per folder;
2. every client's version was bumped after its last write;
3. no two recomputes of one client overlapped;
4. at most one recompute per client per 5-minute bucket came from ``inbox.counts.dirty``.

Exits 0 when all hold, 1 otherwise. Options: --clients, --writes, --fail-rate, --timeout.

``--processes N`` (N > 1) runs the README's multi-process recipe instead, with kill -9, a store
outage and a preview process beside production (``load_multi.py``).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Callable

import psycopg
import redis

BASE_DSN = os.environ.get("INBOX_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method: str, url: str, body: dict | list | None = None, timeout: float = 10,
         headers: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def with_schema(dsn: str, schema: str) -> str:
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}options=-csearch_path%3D{schema}"


def key_prefix(env: dict) -> str:
    """What the app's Redis keys start with in the env of ``env`` (DESIGN §5)."""
    name = env.get("DURABLY_ENV", "dev")
    return "" if name == env.get("DURABLY_PRODUCTION_ENV", "production") else f"{name}:"


def check_invariants(conn: Any, r: Any, key_prefix: str, get: Callable[[str], Any],
                     failures: list[str]) -> tuple[list[dict], dict]:
    """The four invariants of DESIGN §9 on the app's tables (``conn``) and Redis (``r``, keys
    with ``key_prefix``); ``get(path)`` reads durably's API (``/durably/api/v1/...``).
    Appends what fails to ``failures``; returns the recompute runs and the dirty-triggered
    ones per (client, bucket)."""
    # 1. counts equal a direct COUNT(*)
    direct = {(c, f): (t, u) for c, f, t, u in conn.execute(
        "SELECT client_id, folder, count(*), count(*) FILTER (WHERE unread) FROM messages GROUP BY 1, 2")}
    stored = {(c, f): (t, u) for c, f, t, u in conn.execute(
        "SELECT client_id, folder, total, unread FROM inbox_counts")}
    if direct != stored:
        bad = sorted({k[0] for k in set(direct) ^ set(stored)} | {k[0] for k in direct if direct[k] != stored.get(k)})
        failures.append(f"counts differ from COUNT(*) for {len(bad)} client(s): {bad[:5]}")
    # 2. version bumped after the last write
    for c, last_write in conn.execute("SELECT client_id, max(created_at) FROM messages GROUP BY 1"):
        ver_at = r.get(f"{key_prefix}inbox:v1:ver_at:{c}")
        if not ver_at or ver_at < last_write.isoformat():
            failures.append(f"{c}: version last bumped at {ver_at}, before its last write at {last_write}")
    # 3. no overlapping recomputes of one client
    spans: dict[str, list] = {}
    for c, s, e in conn.execute("SELECT client_id, started_at, finished_at FROM recompute_log ORDER BY 1, 2"):
        spans.setdefault(c, []).append((s, e))
    for c, ss in spans.items():
        for (s1, e1), (s2, _e2) in zip(ss, ss[1:]):
            if s2 < e1:
                failures.append(f"{c}: two recomputes overlapped ({s1}..{e1} and {s2}..)")
    # 4. at most one recompute per client per 5-minute bucket from inbox.counts.dirty
    items = runs_of(get, "inbox-counts-recompute")
    per_bucket: dict[tuple, int] = {}
    for x in items:
        ev = get(f"/durably/api/v1/runs/{x['id']}").get("event") or {}
        if ev.get("name") == "inbox.counts.dirty":
            k = (ev["data"]["clientId"], ev["ts"] // 300000)
            per_bucket[k] = per_bucket.get(k, 0) + 1
    over = {k: v for k, v in per_bucket.items() if v > 1}
    if over:
        failures.append(f"{len(over)} (client, bucket) pairs got more than one dirty-triggered recompute")
    return items, per_bucket


def runs_of(get: Callable[[str], Any], function: str, extra: str = "") -> list[dict]:
    """Every run of ``function`` (the API's pages, followed)."""
    out: list[dict] = []
    cursor = ""
    while True:
        page = get(f"/durably/api/v1/runs?function={function}&limit=500{extra}{cursor}")
        out.extend(page.get("runs", []))
        nxt = page.get("next_cursor") or page.get("cursor")
        if not nxt or not page.get("runs"):
            return out
        cursor = f"&cursor={nxt}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=40)
    p.add_argument("--writes", type=int, default=8, help="writes per client, in bursts")
    p.add_argument("--fail-rate", type=float, default=0.2)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--processes", type=int, default=1,
                   help="1: the app in one process; N > 1: N app processes (--no-worker), a durably worker and a "
                        "preview process on PostgreSQL + Redis, with kill -9 and a store outage")
    p.add_argument("--outage", type=float, default=10, help="(--processes > 1) seconds the store is cut")
    p.add_argument("--window", type=int, default=5, help="(--processes > 1) the cron dispatch window, seconds")
    p.add_argument("--spread", type=float, default=20, help="(--processes > 1) seconds the writes are spread over")
    a = p.parse_args()
    if a.processes > 1:
        from .load_multi import main as multi

        return multi(a)

    schema = f"inbox_load_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(BASE_DSN, autocommit=True)
    admin.execute(f'CREATE SCHEMA "{schema}"')
    inbox_dsn = with_schema(BASE_DSN, schema)
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13")
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    tag = uuid.uuid4().hex[:8]  # client ids of this run only: runs side by side never mix keys
    port = free_port()
    env = dict(os.environ, INBOX_DATABASE_URL=inbox_dsn, REDIS_URL=redis_url, INBOX_FAIL_RATE=str(a.fail_rate),
               INBOX_SWEEP_CRON="*/2 * * * * *", CRON_SECRET=uuid.uuid4().hex, PYTHONUNBUFFERED="1")
    env.setdefault("DURABLY_DATABASE_URL", f"sqlite:////tmp/{schema}.db")
    if env["DURABLY_DATABASE_URL"].startswith("postgres"):
        env["DURABLY_SCHEMA"] = f"{schema}_durably"
    env.setdefault("DURABLY_ENV", "dev")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-m", "examples.inbox", "--port", str(port)], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    failures: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if call("GET", f"{base}/durably/api/v1/health")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the app did not start: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.1)

        clients = [f"client-{tag}-{i}" for i in range(a.clients)]
        folders = ["inbox", "archive", "spam"]
        t0 = time.monotonic()
        dirty_events: list[str] = []

        def write(client: str) -> list[str]:
            ids = []
            for _ in range(a.writes):
                status, body = call("POST", f"{base}/api/messages", {"clientId": client, "folder": random.choice(folders),
                                                                     "unread": random.random() < 0.5})
                if status != 201:
                    raise RuntimeError(f"write failed: {status} {body}")
                ids.append(body["eventId"])
            return ids

        with cf.ThreadPoolExecutor(16) as pool:
            for ids in pool.map(write, clients):
                dirty_events.extend(ids)
        # Duplicate deliveries: every dirty event again, with its id, through durably's event API.
        events = [{"name": "inbox.counts.dirty", "id": eid, "data": {"clientId": "duplicate", "requestId": eid, "source": "redelivery"}}
                  for eid in dirty_events]
        for i in range(0, len(events), 200):
            status, body = call("POST", f"{base}/durably/api/v1/events", events[i:i + 200])
            if status >= 300 or body.get("runs"):
                failures.append(f"a duplicate delivery was not ignored: {status} {body}")
        writes_done = time.monotonic() - t0

        # Settled: nothing dirty, and no recompute run left unfinished.
        conn = psycopg.connect(inbox_dsn, autocommit=True)
        deadline = time.monotonic() + a.timeout
        while True:
            dirty = conn.execute("SELECT count(*) FROM inbox_dirty").fetchone()[0]
            _, runs = call("GET", f"{base}/durably/api/v1/runs?function=inbox-counts-recompute&limit=1000")
            live = [x for x in runs.get("runs", runs if isinstance(runs, list) else []) if x["status"] not in
                    ("completed", "failed", "cancelled")]
            if dirty == 0 and not live:
                break
            if time.monotonic() > deadline:
                failures.append(f"not settled after {a.timeout}s: {dirty} dirty clients, {len(live)} live runs")
                break
            time.sleep(0.5)
        settled = time.monotonic() - t0

        items, per_bucket = check_invariants(conn, r, key_prefix(env), lambda path: call("GET", base + path)[1],
                                             failures)
        retried = conn.execute("SELECT count(*) FROM recompute_log").fetchone()[0]
        print(f"clients {a.clients}, writes {a.clients * a.writes}, duplicate deliveries {len(events)}, "
              f"injected failure rate {a.fail_rate}")
        print(f"writes sent in {writes_done:.1f}s, settled after {settled:.1f}s; recompute runs {len(items)} "
              f"(dirty-triggered {sum(per_bucket.values())}), recompute executions {retried}")
        conn.close()
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()
        for key in r.scan_iter(f"*{tag}*"):
            r.delete(key)
        if env["DURABLY_DATABASE_URL"] == f"sqlite:////tmp/{schema}.db":
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.remove(f"/tmp/{schema}.db{suffix}")
                except OSError:
                    pass
    if failures:
        print("FAIL")
        for f in failures:
            print(f"  - {f}")
        return 1
    print("PASS: counts exact, versions fresh, no overlapping recomputes, duplicates absorbed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
