"""Many worker processes on one PostgreSQL, killed with -9 while they work.

* 3 ``durably worker`` processes, 500 runs of 3 steps; every 2 s a random worker is killed
  and a replacement started. At the end every run completed and each step's side effect
  (a row unique per ``ctx.step_key``) exists exactly once.
* 2 schedulers: each cron tick fires once; killing the leader hands cron over within one
  lease period.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

import durably
from durably.store.postgres import split_url
from tests.helpers import cli_env, make_app, runs_of, wait_for

APPS = Path(__file__).resolve().parents[1] / "apps"
pytestmark = pytest.mark.slow


def _db(url: str) -> psycopg.Connection:
    dsn, schema = split_url(url)
    return psycopg.connect(dsn, autocommit=True, options=f"-c search_path={schema}")


def _pid_of(owner: str) -> int:
    return int(owner.split(":")[-2])  # worker and scheduler ids are host:pid:suffix


def test_kill_9_chaos_every_step_effect_exactly_once(pg_url, procs):
    lease = 2
    with _db(pg_url) as db:
        db.execute("CREATE TABLE chaos_effects (step_key text PRIMARY KEY)")
        db.execute("CREATE TABLE chaos_attempts (step_key text NOT NULL, pid integer NOT NULL)")
    env = cli_env(pg_url, DURABLY_LEASE_SECONDS=str(lease), CHAOS_STEP_SECONDS="0.1")
    app = make_app(pg_url, "chaos-test")
    app_file = str(APPS / "chaos_app.py")
    workers = [procs.start(["worker", app_file, "--concurrency", "8"], env) for _ in range(3)]
    rng = random.Random(4)
    kills: list[tuple[int, list[str]]] = []  # (pid, runs it held when killed)
    try:
        wait_for(lambda: len(app.store.health(app.store.now().result(), lease).result()["workers"]) == 3
                 or any(w.poll() is not None for w in workers), 30, what="three live workers")
        assert all(w.poll() is None for w in workers), [procs.log(w) for w in workers]
        sent = app.send([durably.Event("chaos.go", {"n": i}) for i in range(500)])
        assert len(sent.runs) == 500

        def completed() -> int:
            with _db(pg_url) as db:
                return db.execute("SELECT count(*) FROM durably_runs WHERE function_id = 'chaos' "
                                  "AND status = 'completed'").fetchone()[0]

        started = time.monotonic()
        deadline = started + 90
        next_kill = time.monotonic() + 2
        while completed() < 500:
            assert time.monotonic() < deadline, f"only {completed()} of 500 runs completed"
            if time.monotonic() >= next_kill:
                victim = rng.choice([w for w in workers if w.poll() is None])
                procs.kill9(victim)
                with _db(pg_url) as db:  # what the dead worker still held: left for another to resume
                    held = [r[0] for r in db.execute(
                        "SELECT id FROM durably_runs WHERE status = 'running' AND lease_owner LIKE %s",
                        [f"%:{victim.pid}:%"])]
                kills.append((victim.pid, held))
                workers.remove(victim)
                workers.append(procs.start(["worker", app_file, "--concurrency", "8"], env))
                next_kill = time.monotonic() + 2
            time.sleep(0.05)
        took = time.monotonic() - started
        for w in workers:
            assert procs.stop(w) == 0, procs.log(w)[-3000:]
    finally:
        app.close()

    assert len(kills) >= 3, f"the work ended after {len(kills)} kill(s): not much chaos"
    with _db(pg_url) as db:
        statuses = Counter(dict(db.execute("SELECT status, count(*) FROM durably_runs GROUP BY status").fetchall()))
        steps = db.execute("SELECT run_id || ':' || step_id FROM durably_steps WHERE status = 'completed'").fetchall()
        effects = [r[0] for r in db.execute("SELECT step_key FROM chaos_effects")]
        attempts = Counter(r[0] for r in db.execute("SELECT step_key FROM chaos_attempts"))
        gens = dict(db.execute("SELECT id, lease_gen FROM durably_runs").fetchall())
    assert statuses == {"completed": 500}
    committed = {s[0] for s in steps}
    assert len(committed) == 1500
    assert len(effects) == len(set(effects)) == 1500 and set(effects) == committed  # exactly once each
    assert set(attempts) == committed
    # Runs a killed worker held were taken over by another worker (a new lease generation).
    held = {rid for _pid, runs in kills for rid in runs}
    assert held, "no kill hit a worker holding runs"
    assert all(gens[rid] >= 2 for rid in held)
    reexecuted = sum(n - 1 for n in attempts.values())
    print(f"\nchaos: 500 runs in {took:.1f}s, {len(kills)} kills, {len(held)} runs taken over, {reexecuted} step re-executions "
          f"(at-least-once), {len(effects)} effects applied once each")


def test_two_schedulers_cron_fires_once_and_the_leader_hands_over(pg_url, procs):
    lease = 3.0
    env = cli_env(pg_url, DURABLY_LEASE_SECONDS=str(lease))
    app = make_app(pg_url, "leader-test")
    app_file = str(APPS / "leader_app.py")
    workers = [procs.start(["worker", app_file, "--concurrency", "4"], env) for _ in range(2)]
    try:
        def leader() -> tuple[str, float] | None:
            with _db(pg_url) as db:
                row = db.execute("SELECT owner, expires_at FROM durably_leaders WHERE name = 'scheduler'").fetchone()
            return (row[0], row[1]) if row else None

        first = wait_for(leader, 30, what="a scheduler leader")
        by_pid = {w.pid: w for w in workers}
        boss = by_pid[_pid_of(first[0])]
        standby = next(w for w in workers if w is not boss)

        def ticks_done() -> list[dict]:
            return [r for r in runs_of(app, function_id="every-second") if r["status"] == "completed"]

        wait_for(lambda: len(ticks_done()) >= 3, 30, what="three cron ticks")
        assert standby.poll() is None and boss.poll() is None
        assert not re.search(r"cron every-second .*: run ", procs.log(standby)), "the standby fired cron"

        procs.kill9(boss)
        killed_at = app.store.now().result()
        before = {r["id"] for r in runs_of(app, function_id="every-second")}
        new = wait_for(lambda: (lambda l: l if l and _pid_of(l[0]) == standby.pid else None)(leader()), 3 * lease,
                       interval=0.05, what="the standby to take over")
        taken_at = new[1] - 0.6 * lease  # the row's expiry minus its TTL: when it was acquired
        assert taken_at - killed_at <= lease, f"hand-over took {taken_at - killed_at:.2f}s (lease {lease}s)"
        wait_for(lambda: len([r for r in ticks_done() if r["id"] not in before]) >= 2, 30,
                 what="ticks fired by the new leader")
        assert re.search(r"cron every-second .*: run ", procs.log(standby))
        assert procs.stop(standby) == 0, procs.log(standby)[-3000:]
    finally:
        app.close()

    runs = runs_of(app_reopen := make_app(pg_url, "leader-check"), function_id="every-second")
    app_reopen.close()
    ticks = Counter(r["event"]["data"]["tick"] for r in runs)
    assert ticks and max(ticks.values()) == 1, "a tick fired twice"
    assert all(r["event_id"] == f"cron:every-second:{r['event']['data']['tick']}" for r in runs)
