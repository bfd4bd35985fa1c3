"""Outages never cost attempts (DESIGN §3).

The store becomes unreachable for longer than the writer's retry budget while runs are
between steps: PostgreSQL through a TCP proxy that is cut, SQLite locked by another process
(``BEGIN EXCLUSIVE``). The checkpoints wait the outage out with backoff; the function bodies
never see it. Every run completes, none failed, no attempt is consumed, each step ran once
(effects counted in a file outside the engine), and the worker logs the outage once when it
starts and once when it ends.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import durably
from tests.helpers import make_app, running_worker, runs_of, wait_for

OUTAGE = 20.0  # seconds: longer than the writer's retry budget (about 14 s)
RUNS = 12


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _app(url: str, effects: Path, gate: threading.Event) -> durably.App:
    app = make_app(url, "outage")
    lock = threading.Lock()

    def effect(ctx: durably.Context, wait: bool) -> str:
        if wait:
            gate.wait(60)  # the step ends once the store is down: its checkpoint meets the outage
        with lock, open(effects, "a") as f:
            f.write(f"{ctx.step_key}\n")
        return ctx.step_key

    @app.function(id="three", trigger=durably.on_event("go"), retries=1)
    def three(ctx: durably.Context) -> list:
        return [ctx.step.run(name, effect, ctx, name == "two") for name in ("one", "two", "three")]

    return app


def _ride_out(app: durably.App, effects: Path, gate: threading.Event, down, up, surfaces: bool = True) -> None:
    """``surfaces``: the outage outlasts the writer's retry budget, so the worker sees it (on
    SQLite a lock is waited out inside the busy timeout, 30 s, and is never an outage)."""
    lines = _Lines()
    logging.getLogger("durably.worker").addHandler(lines)
    try:
        with running_worker(app, concurrency=RUNS) as worker:
            ids = app.send([durably.Event("go", {"n": i}) for i in range(RUNS)]).runs
            wait_for(lambda: len((effects.read_text() if effects.exists() else "").split()) == RUNS, 20,
                     what="every run's first step")
            down()
            gate.set()
            if surfaces:
                wait_for(lambda: worker.outage.down, 30, what="the worker to see the outage")
            time.sleep(OUTAGE)  # the outage itself (its length is the point, not a synchronization)
            up()
            wait_for(lambda: sum(r["status"] == "completed" for r in runs_of(app, function_id="three")) == RUNS,
                     60, what="every run to complete")
            assert not worker.outage.down
        runs = runs_of(app, function_id="three")
        assert sorted(r["id"] for r in runs) == sorted(ids)
        assert {r["status"] for r in runs} == {"completed"}
        assert all(r["attempt"] == 0 for r in runs)  # no attempt consumed by the outage
        keys = effects.read_text().split()
        assert len(keys) == len(set(keys)) == 3 * RUNS  # each step ran once
        unreachable = [ln for ln in lines.lines if "the store is unreachable" in ln]
        back = [ln for ln in lines.lines if "reachable again" in ln]
        assert len(unreachable) == len(back) == (1 if surfaces else 0), lines.lines
        print(f"outage {OUTAGE}s: {RUNS} runs completed, attempts 0; log: {unreachable + back}")
    finally:
        logging.getLogger("durably.worker").removeHandler(lines)


@pytest.mark.slow
def test_a_postgres_outage_longer_than_the_retry_budget_costs_no_attempt(pg_url, tmp_path):
    from tests.tcp_proxy import TcpProxy

    proxy = TcpProxy(5432)
    proxy.start()
    url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    assert url != pg_url
    gate = threading.Event()
    effects = tmp_path / "effects"
    app = _app(url, effects, gate)
    try:
        _ride_out(app, effects, gate, proxy.cut, proxy.start)
    finally:
        app.close()
        proxy.cut()


LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
print("released", flush=True)
"""


@pytest.mark.slow
def test_sqlite_locked_by_another_process_costs_no_attempt(sqlite_url, tmp_path):
    gate = threading.Event()
    effects = tmp_path / "effects"
    app = _app(sqlite_url, effects, gate)
    path = sqlite_url[len("sqlite:///"):]
    locker: list[subprocess.Popen] = []

    def down() -> None:
        p = subprocess.Popen([sys.executable, "-c", LOCKER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
        locker.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "locked"

    def up() -> None:
        p = locker[0]
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "released"
        p.wait(10)

    try:
        _ride_out(app, effects, gate, down, up, surfaces=False)
    finally:
        app.close()
        for p in locker:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.parametrize("mode", ["lost", "unknown"])
def test_a_checkpoint_that_failed_is_written_again_and_costs_no_attempt(store_url, tmp_path, mode):
    """A checkpoint whose write failed (nothing written, or committed with its answer lost) is
    tried again: the step is not run again, the run completes on its first attempt."""
    effects = tmp_path / "effects"
    gate = threading.Event()
    gate.set()
    app = _app(store_url, effects, gate)
    fired = threading.Event()

    def hook() -> str | None:
        if fired.is_set():
            return None
        fired.set()
        return mode

    app.store.faults = {"checkpoint_step": hook}
    try:
        with running_worker(app, concurrency=2):
            rid = app.send(durably.Event("go", {})).runs[0]
            wait_for(lambda: (lambda r: r if r and r["status"] == "completed" else None)(app.store.get_run(rid).result()),
                     20, what="the run to complete")
        run = app.store.get_run(rid).result()
        assert fired.is_set() and run["attempt"] == 0
        assert sorted(effects.read_text().split()) == sorted(f"{rid}:{s}" for s in ("one", "two", "three"))
        assert all(s["attempts"] == 1 for s in run["steps"])
    finally:
        app.close()
