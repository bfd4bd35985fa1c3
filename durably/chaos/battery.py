"""``durably chaos``: the reliability battery, run against the configured store in a throwaway env.

Every row it writes is in the env ``chaos-<id>``, deleted at the end (``Store.delete_env``),
also after a failure or Ctrl-C; the side table (``effects``) is dropped too, and every process
it started is killed by PID. Scenarios (each bounded in time; see ``tally`` for the counts):

* ``kill9``: 3-step runs on ``--workers`` worker processes; a random worker is killed with -9
  (and a new one started) every ``kill_every`` seconds until every run has ended;
* ``concurrency``: the same over a handful of keys under ``Concurrency(limit=1, key=...)``;
* ``duplicates``: a ``durably server`` on a free loopback port; concurrent duplicate cron pings
  and concurrent sends of one event id: one 202 and one run per window, one run per event id;
* ``store-outage``: the workers reach the store through a loopback TCP proxy that is cut for
  ``outage`` seconds mid-load (on SQLite another connection holds the write lock instead).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import secrets
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..config import Settings
from ..errors import ConfigError
from . import app as chaos_app
from .effects import ID_VAR, SIDE_VAR, SideStore, pg_target
from .procs import Procs
from .proxy import TcpProxy, free_port
from .tally import Row, RunOutcome, tally

SCENARIOS = ("kill9", "concurrency", "duplicates", "store-outage")
TERMINAL = ("completed", "failed", "cancelled")
LEASE = 2.0  # the workers' lease: a killed worker's runs are resumed within seconds


@dataclass(frozen=True)
class Options:
    scenarios: tuple[str, ...] = SCENARIOS
    runs: int = 100
    workers: int = 3
    outage: float = 8.0
    kill_every: float = 2.0
    step_seconds: float = 0.1
    concurrency: int = 4  # runs at once per worker process
    keys: int = 5  # the concurrency scenario's keys
    pings: int = 200  # the duplicates scenario's cron pings, and its sends of one event id

    def deadline(self, extra: float = 0.0) -> float:
        """A scenario's time bound: generous for the work asked, never unbounded."""
        return 60.0 + self.runs * 0.6 + extra


def sqlite_path(url: str) -> str:
    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url[len("sqlite://"):]
    return path.split("?", 1)[0]


class Battery:
    def __init__(self, settings: Settings, options: Options, say: Callable[[str], None] = lambda _m: None):
        self.options, self.say = options, say
        self.id = secrets.token_hex(4)
        self.env = f"chaos-{self.id}"
        # Status blobs stay in the store (not Redis), so that deleting the env deletes them too.
        self.settings = dataclasses.replace(settings, env=self.env, redis_url=None, lease_seconds=LEASE)
        self.pg = self.settings.database_url.startswith(("postgresql:", "postgres:"))
        self.tmp = Path(tempfile.mkdtemp(prefix=f"durably-{self.env}-"))
        side = (_with_schema(self.settings.database_url, self.settings.schema_) if self.pg
                else str(self.tmp / "effects.db"))
        self.side = SideStore(side, self.id)
        self.procs = Procs(self.tmp)
        self.rng = random.Random()
        self.app: Any = None
        self._mine: set[str] | None = None  # the runs the scenario running now started

    # --- the whole battery ---------------------------------------------------------------------

    def run(self) -> list[Row]:
        rows: list[Row] = []
        try:
            self._open()
            for name in self.options.scenarios:
                self.say(f"{name}: running")
                self._mine = None
                row = getattr(self, "_" + name.replace("-", "_"))()
                rows.append(row)
                self.say(f"{name}: {'ok' if row.ok else 'FAILED'} in {row.duration:.1f}s")
                self.procs.end_all()
                self.side.clear()
        finally:
            self.cleanup()
        return rows

    def _open(self) -> None:
        from ..runtime import open_store

        open_store(self.settings, create=False).close()  # a store that does not exist: one clear line
        self.app = chaos_app.build(self.settings)
        registering = self.app.runtime.registry.register()
        if registering is not None:
            registering.result()
        self.side.create()

    def cleanup(self) -> None:
        """Kill what it started, delete the env's rows and the side table; never raises."""
        self.procs.end_all()
        try:
            if self.app is not None:
                self.app.store.delete_env().result()
        except Exception as exc:  # noqa: BLE001 - reported, the rest is cleaned up still
            self.say(f"could not delete env {self.env}: {exc}")
        finally:
            if self.app is not None:
                self.app.close()
            try:
                self.side.drop()
            except Exception as exc:  # noqa: BLE001
                self.say(f"could not drop the side tables of {self.env}: {exc}")
            shutil.rmtree(self.tmp, ignore_errors=True)

    # --- processes -------------------------------------------------------------------------------

    def _env(self, database_url: str | None = None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DURABLY_REDIS_URL",)}
        env.update({"DURABLY_DATABASE_URL": database_url or self.settings.database_url,
                    "DURABLY_SCHEMA": self.settings.schema_, "DURABLY_ENV": self.env,
                    "DURABLY_LEASE_SECONDS": str(LEASE), SIDE_VAR: self.side.location, ID_VAR: self.id,
                    "DURABLY_CHAOS_STEP_SECONDS": str(self.options.step_seconds), "PYTHONUNBUFFERED": "1"})
        env.update(extra)
        return env

    def _worker(self, env: dict[str, str]) -> Any:
        return self.procs.start(["worker", "durably.chaos.app:app", "--concurrency", str(self.options.concurrency)],
                                env)

    def _start_workers(self, env: dict[str, str], row: Row, deadline: float) -> list[Any]:
        workers = [self._worker(env) for _ in range(self.options.workers)]
        while len(self._live_workers()) < len(workers):
            dead = [w for w in workers if w.poll() is not None]
            if dead:
                row.problems.append(f"a worker exited at start: {self.procs.log_tail(dead[0], 3)}")
                break
            if time.monotonic() > deadline:
                row.problems.append("the workers did not start in time")
                break
            time.sleep(0.1)
        return workers

    def _live_workers(self) -> list[Any]:
        store = self.app.store
        return list(store.health(store.now().result(), LEASE * 3).result()["workers"])

    # --- the ledger ------------------------------------------------------------------------------

    def _runs(self, function_id: str) -> list[dict]:
        """The runs of ``function_id`` this scenario started (earlier scenarios' are left out)."""
        out: list[dict] = []
        cursor = None
        while True:
            page = self.app.store.list_runs(function_id=function_id, cursor=cursor, limit=1000).result()
            out.extend(r for r in page if self._mine is None or r["id"] in self._mine)
            if len(page) < 1000:
                return out
            cursor = (page[-1]["created_at"], page[-1]["id"])

    def _send(self, events: list) -> None:
        self._mine = set()
        for i in range(0, len(events), 1000):
            self._mine.update(self.app.send(events[i:i + 1000]).runs)

    def _ended(self, function_id: str) -> int:
        return sum(1 for r in self._runs(function_id) if r["status"] in TERMINAL)

    def _verdict(self, row: Row, function_id: str, started: float, *, keyed: bool = False) -> Row:
        runs = [RunOutcome(r["id"], r["status"], r["output"]) for r in self._runs(function_id)]
        effects, attempts = self.side.read()
        tally(row, runs, effects, attempts, steps=chaos_app.STEPS, kills=self.procs.killed_at, keyed=keyed)
        failed = sum(1 for r in runs if r.status != "completed")
        if failed:
            row.problems.append(f"{failed} run(s) did not complete")
        row.duration = time.monotonic() - started
        return row

    # --- kill -9 -----------------------------------------------------------------------------------

    def _kill9(self) -> Row:
        return self._under_kills("kill9", "chaos", chaos_app.GO, keyed=False)

    def _concurrency(self) -> Row:
        return self._under_kills("concurrency", "chaos-keyed", chaos_app.KEYED, keyed=True)

    def _under_kills(self, scenario: str, function_id: str, event: str, *, keyed: bool) -> Row:
        from ..core.events import Event

        o, row, started = self.options, Row(scenario), time.monotonic()
        deadline = started + o.deadline()
        env = self._env()
        workers = self._start_workers(env, row, deadline)
        if row.problems:
            return self._verdict(row, function_id, started, keyed=keyed)
        keys = max(1, min(o.keys, o.runs))
        self._send([Event(event, {"n": i, "key": f"k{i % keys}"}) for i in range(o.runs)])
        next_kill: float | None = None  # the first kill as soon as steps are executing
        while self._ended(function_id) < o.runs:
            now = time.monotonic()
            if now > deadline:
                row.problems.append(f"not finished within {o.deadline():.0f}s")
                break
            if next_kill is None and self.side.read()[1]:
                next_kill = now
            if next_kill is not None and now >= next_kill:
                alive = [w for w in workers if w.poll() is None]
                if alive:
                    victim = self.rng.choice(alive)
                    self.procs.kill9(victim)
                    row.kills += 1
                    workers.remove(victim)
                workers.append(self._worker(env))
                next_kill = now + o.kill_every
            time.sleep(0.1)
        return self._verdict(row, function_id, started, keyed=keyed)

    # --- store outage ----------------------------------------------------------------------------

    def _store_outage(self) -> Row:
        from ..core.events import Event

        o, row, started = self.options, Row("store-outage"), time.monotonic()
        deadline = started + o.deadline(extra=2 * o.outage)
        proxy: TcpProxy | None = None
        if self.pg:
            proxy, url = self._proxy()
            env = self._env(url)
        else:
            env = self._env()
        try:
            workers = self._start_workers(env, row, deadline)
            if row.problems:
                return self._verdict(row, "chaos", started)
            self._send([Event(chaos_app.GO, {"n": i}) for i in range(o.runs)])
            while len(self.side.read()[0]) < max(1, o.runs * 3 // 4) and time.monotonic() < deadline:
                time.sleep(0.05)  # mid-load: a quarter of the steps applied
            before = self._ended("chaos")
            self.say(f"store-outage: the store is unreachable for the workers for {o.outage:g}s "
                     f"({before} of {o.runs} runs ended)")
            if proxy is not None:
                proxy.cut()
                time.sleep(o.outage)
                proxy.restore()
            else:
                self._lock_sqlite(o.outage)
            self.say(f"store-outage: the store is back ({self._ended('chaos')} of {o.runs} runs ended)")
            while self._ended("chaos") < o.runs:
                if time.monotonic() > deadline:
                    row.problems.append(f"not finished within {deadline - started:.0f}s")
                    break
                time.sleep(0.1)
            for w in workers:
                if w.poll() is not None:
                    row.problems.append(f"a worker died (exit {w.returncode}): {self.procs.log_tail(w, 3)}")
            return self._verdict(row, "chaos", started)
        finally:
            if proxy is not None:
                proxy.close()

    def _proxy(self) -> tuple[TcpProxy, str]:
        """A proxy to the store's host and port, and the store URL through it."""
        from psycopg.conninfo import conninfo_to_dict

        dsn, _schema = pg_target(self.settings.database_url)
        params = conninfo_to_dict(dsn)
        host, port = str(params.get("host") or "127.0.0.1"), int(str(params.get("port") or 5432).split(",")[0])
        if host.startswith("/") or "," in host:
            raise ConfigError(f"store-outage needs the store over TCP at one host (the URL names {host!r})")
        proxy = TcpProxy(host, port)
        proxy.start()
        parts = urlsplit(self.settings.database_url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = (userinfo + "@" if userinfo else "") + f"127.0.0.1:{proxy.port}"
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                           if k not in ("host", "hostaddr", "port")])
        return proxy, urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

    def _lock_sqlite(self, seconds: float) -> None:
        """Hold the SQLite file's write lock from another connection for ``seconds``."""
        conn = sqlite3.connect(sqlite_path(self.settings.database_url), timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            time.sleep(seconds)
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    # --- duplicates --------------------------------------------------------------------------------

    def _duplicates(self) -> Row:
        o, row, started = self.options, Row("duplicates"), time.monotonic()
        deadline = started + 120.0
        port = free_port()
        keys = {k: secrets.token_urlsafe(24) for k in ("CRON_SECRET", "DURABLY_EVENT_KEY", "DURABLY_ADMIN_TOKEN",
                                                       "DURABLY_SECRET_KEY")}
        server = self.procs.start(["server", "--host", "127.0.0.1", "--port", str(port)],
                                  self._env(DURABLY_DISPATCH_TIMEOUT="10", **keys))
        base = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(self._fire(row, base, keys, server, deadline))
        except TimeoutError:
            row.problems.append("the duplicate requests did not finish within 120s")
        row.duration = time.monotonic() - started
        return row

    async def _fire(self, row: Row, base: str, keys: dict[str, str], server: Any, deadline: float) -> None:
        import httpx

        o = self.options
        async with httpx.AsyncClient(base_url=base, timeout=30,
                                     limits=httpx.Limits(max_connections=50, max_keepalive_connections=50)) as http:
            while True:
                try:
                    if (await http.get("/api/v1/health")).status_code < 500:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    row.problems.append(f"the server did not start: {self.procs.log_tail(server, 3)}")
                    return
                await asyncio.sleep(0.1)
            cron = {"Authorization": f"Bearer {keys['CRON_SECRET']}"}
            pings = await asyncio.wait_for(asyncio.gather(*[
                http.post(f"/api/v1/cron/{chaos_app.CRON}", params={"window": 3600}, headers=cron)
                for _ in range(o.pings)]), max(1.0, deadline - time.monotonic()))
            event = {"name": chaos_app.DUP, "id": f"chaos-dup-{self.id}", "data": {"n": 0}}
            sent = await asyncio.wait_for(asyncio.gather(*[
                http.post("/api/v1/events", json=event, headers={"Authorization": f"Bearer {keys['DURABLY_EVENT_KEY']}"})
                for _ in range(o.pings)]), max(1.0, deadline - time.monotonic()))
        codes = sorted({p.status_code for p in pings} | {s.status_code for s in sent})
        self.say(f"duplicates: {len(pings)} cron pings ({sum(p.status_code == 202 for p in pings)} answered 202), "
                 f"{len(sent)} sends of one event id; answers {', '.join(map(str, codes))}")
        judge_duplicates(row, [(p.status_code, _json(p)) for p in pings], [(s.status_code, _json(s)) for s in sent],
                         self._runs("chaos-cron"), self._runs("chaos-dup"))


def judge_duplicates(row: Row, pings: list[tuple[int, Any]], sends: list[tuple[int, Any]],
                     cron_runs: list[dict], dup_runs: list[dict]) -> Row:
    """One 202 and one run per cron window; one run for the event id sent many times."""
    windows: dict[str, int] = {}
    for status, body in pings:
        if status not in (200, 202) or not isinstance(body, dict):
            row.problems.append(f"a cron ping answered {status}: {str(body)[:200]}")
            continue
        windows.setdefault(str(body.get("windowStart")), 0)
        if status == 202:
            windows[str(body.get("windowStart"))] += 1
    firsts = sum(windows.values())
    row.double_applied += max(0, firsts - len(windows)) + max(0, len(cron_runs) - len(windows))
    row.lost += sum(1 for n in windows.values() if n == 0) + max(0, len(windows) - len(cron_runs))
    bad = [(s, b) for s, b in sends if s != 200]
    for status, body in bad[:3]:
        row.problems.append(f"an event send answered {status}: {str(body)[:200]}")
    started = sum(len(b.get("runs") or []) for s, b in sends if s == 200 and isinstance(b, dict))
    row.double_applied += max(0, len(dup_runs) - 1) + max(0, started - 1)
    row.lost += 1 if not dup_runs else 0
    row.runs = len(cron_runs) + len(dup_runs)
    return row


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _with_schema(url: str, schema: str) -> str:
    """The store URL naming its schema (the side tables go beside durably's)."""
    dsn, named = pg_target(url, schema)
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True) + [("schema", named)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
