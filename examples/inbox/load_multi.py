"""``python -m examples.inbox.load --processes N``: the README's multi-process recipe under load.

On one PostgreSQL database (the app's tables and durably's store, each in a fresh schema) and
Redis, it starts N app processes with ``--no-worker`` and one ``durably worker
examples.inbox.jobs:app``, all reaching durably's store through a loopback TCP proxy, plus a
preview-env process (its own app tables, the same store and Redis) writing beside them. While
writes go to the app processes and a pinger hits their cron route every quarter second, it
kills -9 the worker (and starts another) and one app process (and starts it again), and cuts
the proxy for ``--outage`` seconds. Then it checks the four invariants of DESIGN §9, plus:
production keys untouched by the preview process, each cron window's work done once (inline
or durable, never both, never twice), and the status blobs agreeing with the ledger. Prints
its figures and exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from typing import Any

import psycopg
import redis

from .load import BASE_DSN, call, check_invariants, key_prefix, runs_of, with_schema
from durably.chaos.proxy import TcpProxy, free_port  # the one durably chaos cuts

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TERMINAL = ("completed", "failed", "cancelled")


class Proc:
    """One process of the recipe, its output in a log file, ended by its pid."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logdir: str, port: int | None = None):
        self.name, self.args, self.env, self.port = name, args, env, port
        self.log = os.path.join(logdir, f"{name}.log")
        self.start()

    def start(self) -> None:
        with open(self.log, "ab") as fh:
            self.p = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_up(self, timeout: float = 40) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.p.poll() is not None:
                raise SystemExit(f"{self.name} exited: {self.tail()}")
            if self.port is None:  # a worker: it takes runs whenever it is up (the check waits for them)
                return
            else:
                try:
                    with urllib.request.urlopen(self.base + "/docs", timeout=2):
                        return
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not start: {self.tail()}")
            time.sleep(0.1)

    def kill9(self) -> None:
        self.p.kill()  # SIGKILL
        self.p.wait(10)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)

    def tail_all(self) -> str:
        with open(self.log, errors="replace") as fh:
            return fh.read()

    def tail(self) -> str:
        try:
            with open(self.log, errors="replace") as fh:
                return fh.read()[-3000:]
        except OSError:
            return ""


def wait_log(p: Proc, ok: Any, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while not ok(p.tail_all()):
        if p.p.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{p.name} did not start: {p.tail()}")
        time.sleep(0.1)


def p99(xs: list[float]) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]


def main(a: argparse.Namespace) -> int:
    tag = uuid.uuid4().hex[:8]
    app_schema, preview_schema, store_schema = f"inbox_mp_{tag}", f"inbox_mp_{tag}_preview", f"inbox_mp_{tag}_durably"
    admin = psycopg.connect(BASE_DSN, autocommit=True)
    for s in (app_schema, preview_schema, store_schema):
        admin.execute(f'CREATE SCHEMA "{s}"')
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13")
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    proxy = TcpProxy("127.0.0.1", int(os.environ.get("INBOX_PG_PORT", "5432")))
    proxy.start()
    prod_env, preview_env = f"production-{tag}", f"preview-{tag}"
    secrets = {"DURABLY_ADMIN_TOKEN": uuid.uuid4().hex, "DURABLY_EVENT_KEY": uuid.uuid4().hex,
               "CRON_SECRET": uuid.uuid4().hex}
    through_proxy = BASE_DSN.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}", 1)
    if through_proxy == BASE_DSN:
        raise SystemExit(f"INBOX_DATABASE_URL must name 127.0.0.1:5432 for the proxy to stand in: {BASE_DSN}")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLY_")}
    base_env.update(secrets, REDIS_URL=redis_url, DURABLY_REDIS_URL=redis_url, PYTHONUNBUFFERED="1",
                    PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                    INBOX_FAIL_RATE=str(a.fail_rate), INBOX_SWEEP_CRON="*/2 * * * * *", DURABLY_LEASE_SECONDS="5",
                    DURABLY_DISPATCH_TIMEOUT="1", BACKGROUND_JOBS_INLINE_EMERGENCY_FALLBACK="true",
                    BACKGROUND_JOBS_DISPATCH_WINDOW=str(a.window), DURABLY_PRODUCTION_ENV=prod_env)
    prod = dict(base_env, DURABLY_ENV=prod_env, INBOX_DATABASE_URL=with_schema(BASE_DSN, app_schema),
                DURABLY_DATABASE_URL=f"{through_proxy}{'&' if '?' in through_proxy else '?'}schema={store_schema}")
    preview = dict(base_env, DURABLY_ENV=preview_env, INBOX_DATABASE_URL=with_schema(BASE_DSN, preview_schema),
                   DURABLY_DATABASE_URL=f"{BASE_DSN}{'&' if '?' in BASE_DSN else '?'}schema={store_schema}")
    logdir = f"/tmp/inbox-load-{tag}"
    os.makedirs(logdir, exist_ok=True)
    py = sys.executable
    durably = [py, "-c", "from durably.cli import main; main()"]
    procs: list[Proc] = []
    failures: list[str] = []
    figures: dict[str, Any] = {"kills": 0}
    try:
        m = subprocess.run([*durably, "migrate"], cwd=ROOT, env=prod, capture_output=True, text=True, timeout=60)
        if m.returncode != 0:
            raise SystemExit(f"durably migrate failed: {m.stdout}{m.stderr}")
        apps = [Proc(f"app{i}", [py, "-m", "examples.inbox", "--no-worker", "--port", str(port)], prod, logdir, port)
                for i, port in enumerate(free_port() for _ in range(a.processes))]
        worker = Proc("worker", [*durably, "worker", "examples.inbox.jobs:app", "-c", "16"], prod, logdir)
        pv = Proc("preview", [py, "-m", "examples.inbox", "--port", str(free_port())], preview, logdir)
        pv.port = int(pv.args[-1])
        procs += [*apps, worker, pv]
        for p in procs:
            p.wait_up()

        clients = [f"mp-{tag}-{i}" for i in range(a.clients)]
        pclients = [f"pv-{tag}-{i}" for i in range(max(2, a.clients // 4))]
        folders = ["inbox", "archive", "spam"]
        stop_ping = threading.Event()
        pings: list[tuple[float, float, int, dict]] = []  # (t, latency, status, body)

        def pinger() -> None:
            i = 0
            while not stop_ping.is_set():
                target = apps[i % len(apps)]
                i += 1
                t = time.monotonic()
                try:
                    status, body = call("POST", target.base + "/api/cron/background-jobs", timeout=15,
                                        headers={"authorization": f"Bearer {secrets['CRON_SECRET']}"})
                except OSError:
                    status, body = 0, {}  # that process is down (killed): the next one answers
                pings.append((t, time.monotonic() - t, status, body))
                stop_ping.wait(0.25)

        def write(client: str, targets: list[Proc]) -> list[str]:
            ids = []
            for _ in range(a.writes):
                deadline = time.monotonic() + 60
                while True:
                    target = random.choice(targets)
                    try:
                        status, body = call("POST", target.base + "/api/messages",
                                            {"clientId": client, "folder": random.choice(folders),
                                             "unread": random.random() < 0.5})
                    except OSError:
                        status, body = 0, {}
                    if status == 201:
                        ids.append(body["eventId"])
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"a write was refused for 60 s: {status} {body}")
                    time.sleep(0.2)  # a killed process or the outage: write again, as a client would
                time.sleep(random.uniform(0, a.spread / a.writes))
            return ids

        pinging = threading.Thread(target=pinger, daemon=True)
        pinging.start()
        t0 = time.monotonic()
        with cf.ThreadPoolExecutor(24) as pool:
            futs = [pool.submit(write, c, apps) for c in clients] + [pool.submit(write, c, [pv]) for c in pclients]
            # mid-load: kill -9 the worker and one app process, then the store outage
            time.sleep(a.spread * 0.25)
            started = worker.tail_all().count(" started: ")
            worker.kill9()
            figures["kills"] += 1
            worker.start()
            apps[0].kill9()
            figures["kills"] += 1
            apps[0].start()
            apps[0].wait_up()
            wait_log(worker, lambda text: text.count(" started: ") > started)  # the new worker has its store
            time.sleep(a.spread * 0.15)
            out_start = time.monotonic()
            proxy.cut()
            time.sleep(a.outage)
            proxy.restore()
            out_end = time.monotonic()
            for p in [*apps, worker]:  # a supervisor's job: what the outage ended is started again
                if p.p.poll() is not None:
                    figures.setdefault("restarted", []).append(p.name)
                    p.start()
            figures["outage_s"] = out_end - out_start
            dirty_events = [eid for f in futs[:len(clients)] for eid in f.result()]
            for f in futs[len(clients):]:
                f.result()
        writes_done = time.monotonic() - t0
        apps[0].wait_up()
        # Duplicate deliveries: every dirty event again, with its id, through durably's event API.
        events = [{"name": "inbox.counts.dirty", "id": eid, "data": {"clientId": "duplicate", "requestId": eid, "source": "redelivery"}}
                  for eid in dirty_events]
        for i in range(0, len(events), 200):
            status, body = call("POST", apps[1].base + "/durably/api/v1/events", events[i:i + 200],
                                headers={"authorization": f"Bearer {secrets['DURABLY_EVENT_KEY']}"})
            if status >= 300 or body.get("runs"):
                failures.append(f"a duplicate delivery was not ignored: {status} {body}")
        time.sleep(2 * a.window)  # a couple of windows dispatched with the store back
        stop_ping.set()
        pinging.join(20)

        def get(path: str, base: str = apps[1].base) -> Any:
            deadline = time.monotonic() + 15
            while True:  # a 503 (a pooled connection the outage broke) is asked again, as a client would
                status, body = call("GET", base + path,
                                    headers={"authorization": f"Bearer {secrets['DURABLY_ADMIN_TOKEN']}"})
                if status == 200:
                    return body
                if status != 503 or time.monotonic() > deadline:
                    raise RuntimeError(f"GET {path}: {status} {body}")
                figures["read_503"] = figures.get("read_503", 0) + 1
                time.sleep(0.2)

        conn = psycopg.connect(prod["INBOX_DATABASE_URL"], autocommit=True)
        pconn = psycopg.connect(preview["INBOX_DATABASE_URL"], autocommit=True)
        deadline = time.monotonic() + a.timeout
        while True:  # settled: nothing dirty, no run of the production env unfinished
            dirty = conn.execute("SELECT count(*) FROM inbox_dirty").fetchone()[0]
            pdirty = pconn.execute("SELECT count(*) FROM inbox_dirty").fetchone()[0]
            live = [x for f in ("inbox-counts-recompute", "process-background-jobs", "background-maintenance")
                    for x in runs_of(get, f) if x["status"] not in TERMINAL]
            if dirty == 0 and pdirty == 0 and not live:
                break
            if time.monotonic() > deadline:
                failures.append(f"not settled after {a.timeout}s: {dirty} dirty clients (preview {pdirty}), "
                                f"{len(live)} live runs")
                break
            time.sleep(0.5)
        settled = time.monotonic() - t0

        # The four invariants, on production's tables and keys.
        items, per_bucket = check_invariants(conn, r, key_prefix(prod), get, failures)
        # Preview beside production: its keys carry its env, it wrote none of production's.
        check_preview(r, pconn, preview_env, clients, pclients, failures)
        # Each cron window's work done once.
        figures.update(check_windows(conn, pings, get, failures))
        # Status blobs agree with the ledger.
        check_blobs(r, clients, get, failures)

        during = [lat for t, lat, _, _ in pings if out_start <= t <= out_end]
        codes: dict[int, int] = {}
        for _, _, st, _ in pings:
            codes[st] = codes.get(st, 0) + 1
        all_runs = sum(len(runs_of(get, f)) for f in ("inbox-counts-recompute", "recompute-inbox-counts",
                                                      "process-background-jobs", "background-maintenance",
                                                      "analytics-recompute"))
        print(f"processes: {a.processes} app (--no-worker), 1 durably worker, 1 preview ({preview_env}); "
              f"PostgreSQL through a proxy, Redis {redis_url}")
        print(f"clients {a.clients} (+{len(pclients)} preview), writes {a.clients * a.writes} "
              f"(+{len(pclients) * a.writes} preview), duplicate deliveries {len(events)}, "
              f"injected failure rate {a.fail_rate}")
        print(f"runs {all_runs} (recompute {len(items)}, dirty-triggered {sum(per_bucket.values())}); "
              f"recompute executions {conn.execute('SELECT count(*) FROM recompute_log').fetchone()[0]}")
        print(f"kills {figures['kills']} (kill -9: worker, app0); outage {figures['outage_s']:.1f}s; "
              f"cron windows {figures['windows']} (inline {figures['inline_windows']}, "
              f"durable {figures['durable_windows']}); pings {len(pings)} {dict(sorted(codes.items()))}")
        print(f"cron route during the outage: {len(during)} pings, p99 {p99(during) * 1000:.0f} ms, "
              f"max {max(during, default=0) * 1000:.0f} ms; outside it p99 "
              f"{p99([lat for t, lat, _, _ in pings if not out_start <= t <= out_end]) * 1000:.0f} ms")
        if figures.get("read_503"):
            print(f"ledger reads answered 503 after the outage and asked again: {figures['read_503']}")
        if figures.get("restarted"):
            print(f"exited during the outage and started again: {figures['restarted']}")
        print(f"writes sent in {writes_done:.1f}s, settled after {settled:.1f}s")
        conn.close()
        pconn.close()
    finally:
        for p in procs:
            p.stop()
        proxy.cut()
        for s in (app_schema, preview_schema, store_schema):
            admin.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')
        admin.close()
        for pattern in (f"*{tag}*",):
            for key in r.scan_iter(pattern):
                r.delete(key)
        for key in r.scan_iter("job:v1:global:*"):  # this run's global blobs: its env wrote them exactly
            r.delete(key)
    if failures:
        print(f"FAIL (logs in {logdir})")
        for f in failures:
            print(f"  - {f}")
        return 1
    print("PASS: counts exact, versions fresh, no overlapping recomputes, duplicates absorbed, preview isolated, "
          "each cron window once, status blobs = ledger")
    return 0


def check_preview(r: Any, pconn: Any, preview_env: str, clients: list[str], pclients: list[str],
                  failures: list[str]) -> None:
    for c in pclients:
        if r.get(f"inbox:v1:ver:{c}") is not None or r.get(f"job:v1:{c}:inbox-counts-recompute") is not None:
            failures.append(f"preview wrote production's key for {c}")
        if not r.get(f"{preview_env}:inbox:v1:ver:{c}"):
            failures.append(f"preview's version key of {c} is missing (did preview run at all?)")
    for c in clients:
        for key in r.scan_iter(f"*{c}"):
            if key.startswith(preview_env + ":"):
                failures.append(f"preview wrote {key} for a production client")
    direct = set(pconn.execute("SELECT client_id, folder, count(*) FROM messages GROUP BY 1, 2").fetchall())
    if direct != set(pconn.execute("SELECT client_id, folder, total FROM inbox_counts").fetchall()):
        failures.append("preview's counts differ from its COUNT(*)")


def check_windows(conn: Any, pings: list, get: Any, failures: list[str]) -> dict:
    """Every window a ping was answered for ran its work once: one executor per dispatch key."""
    rows = conn.execute("SELECT dispatch_key, mode, executor FROM cron_work_log").fetchall()
    by_key: dict[str, set] = {}
    for key, mode, executor in rows:
        by_key.setdefault(key, set()).add((mode, executor))
    for key, who in by_key.items():
        if len(who) > 1:
            failures.append(f"window {key} ran {len(who)} times: {sorted(who)}")
    answered: set[str] = set()
    for _, _, status, body in pings:
        if status in (200, 202):
            for d in body.get("dispatches", []):
                answered.add(d["dispatchKey"])
            for k in body.get("dispatchKeys", []) if body.get("mode") == "inline" else []:
                answered.add(k)
    missing = sorted(answered - set(by_key))
    if missing:
        failures.append(f"{len(missing)} window(s) answered but never run: {missing[:5]}")
    durable = {k for k, who in by_key.items() if any(m == "durable" for m, _ in who)}
    inline = {k for k, who in by_key.items() if any(m == "inline" for m, _ in who)}
    runs = [x for f in ("process-background-jobs", "background-maintenance") for x in runs_of(get, f)]
    failed = [x["id"] for x in runs if x["status"] != "completed"]
    if failed:
        failures.append(f"{len(failed)} cron run(s) did not complete: {failed[:5]}")
    return {"windows": len({k.rsplit(':', 1)[1] for k in by_key}), "inline_windows": len({k.rsplit(':', 1)[1] for k in inline}),
            "durable_windows": len({k.rsplit(':', 1)[1] for k in durable})}


def check_blobs(r: Any, clients: list[str], get: Any, failures: list[str]) -> None:
    """Each client's blob names its last run, with that run's status and attempt count."""
    for c in clients:
        raw = r.get(f"job:v1:{c}:inbox-counts-recompute")
        if raw is None:
            failures.append(f"{c}: no status blob at job:v1:{c}:inbox-counts-recompute")
            continue
        blob = json.loads(raw)
        runs = runs_of(get, "inbox-counts-recompute", f"&tenant={c}")
        ended = sorted((x for x in runs if x["status"] in TERMINAL), key=lambda x: x.get("finished_at") or "")
        if not ended:
            failures.append(f"{c}: no ended run in the ledger")
            continue
        last = ended[-1]
        if blob.get("runId") != last["id"] or blob.get("status") != last["status"]:
            failures.append(f"{c}: blob {blob.get('runId')}/{blob.get('status')} but the ledger's last run is "
                            f"{last['id']}/{last['status']}")
            continue
        full = get(f"/durably/api/v1/runs/{last['id']}")
        attempts = max([s.get("attempts", 0) for s in full.get("steps", [])] or [full.get("attempts", 0)])
        if blob.get("attempt") != attempts:
            failures.append(f"{c}: blob attempt {blob.get('attempt')}, ledger {attempts}")
