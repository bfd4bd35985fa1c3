"""``durably chaos``, the real command, on both stores: every scenario passes, its JSON has
the contract's fields, and afterwards no row of its throwaway env is left while another env's
rows are exactly as they were."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from collections import Counter

import pytest

import durably
from tests.helpers import cli_env, durably_cmd, make_app, run_cli, running_worker, wait_for, wait_run

pytestmark = pytest.mark.slow
TABLES = ("durably_runs", "durably_events", "durably_functions", "durably_triggers", "durably_workers",
          "durably_keys", "durably_slots", "durably_dispatches", "durably_status", "durably_leaders",
          "durably_cron", "durably_skips")


def _query(url: str, sql: str) -> list[tuple]:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///"):])
        try:
            return [tuple(r) for r in conn.execute(sql)]
        finally:
            conn.close()
    import psycopg

    from durably.store.postgres import split_url

    dsn, schema = split_url(url)
    with psycopg.connect(dsn, autocommit=True, options=f"-c search_path={schema}") as conn:
        return [tuple(r) for r in conn.execute(sql.replace("%SCHEMA%", schema))]


def _rows_by_env(url: str) -> dict[str, Counter]:
    out: dict[str, Counter] = {}
    for table in TABLES:
        for env, n in _query(url, f"SELECT env, COUNT(*) FROM {table} GROUP BY env"):
            out.setdefault(env, Counter())[table] = n
    return out


def _neighbour(url: str) -> None:
    """Another env's rows in the same store: a finished run, a queued one, a registry."""
    app = make_app(url, "neighbour", env="neighbour")

    @app.function(id="hello", trigger=durably.on_event("neighbour.hi"))
    def hello(ctx: durably.Context) -> str:
        return ctx.step.run("greet", lambda: "hi")

    try:
        first = app.send(durably.Event("neighbour.hi", {"n": 1})).runs[0]
        with running_worker(app):
            assert wait_run(app, first)["status"] == "completed"
        app.send(durably.Event("neighbour.hi", {"n": 2}))
    finally:
        app.close()


def test_chaos_every_scenario_passes_and_leaves_no_row(store_url):
    _neighbour(store_url)
    before = _rows_by_env(store_url)
    steps_before = _query(store_url, "SELECT COUNT(*) FROM durably_steps")
    assert set(before) == {"neighbour"}

    r = run_cli(["chaos", "--runs", "20", "--outage", "3", "--pings", "100", "--json"],
                cli_env(store_url, env="neighbour"), timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = json.loads(r.stdout)
    assert [row["scenario"] for row in rows] == ["kill9", "concurrency", "duplicates", "store-outage"]
    for row in rows:
        assert set(row) >= {"scenario", "runs", "kills", "re_executions", "lost", "double_applied", "overlaps",
                            "duration"}, row
        assert row["ok"] is True and row["problems"] == [], row
        assert row["lost"] == row["double_applied"] == row["overlaps"] == 0, row
        assert row["duration"] > 0
    by = {row["scenario"]: row for row in rows}
    assert by["kill9"]["runs"] == by["concurrency"]["runs"] == by["store-outage"]["runs"] == 20
    assert by["kill9"]["kills"] >= 1 and by["concurrency"]["kills"] >= 1
    assert by["duplicates"]["runs"] == 2  # one run for the cron window, one for the event id
    chaos_env = next(line.split()[2] for line in r.stderr.splitlines() if line.startswith("chaos: env "))
    assert chaos_env.startswith("chaos-")

    # Its env is gone (the steps with its runs), the neighbour's rows are untouched.
    assert _rows_by_env(store_url) == before
    assert _query(store_url, "SELECT COUNT(*) FROM durably_steps") == steps_before
    if not store_url.startswith("sqlite"):
        side = _query(store_url, "SELECT table_name FROM information_schema.tables "
                                 "WHERE table_schema = '%SCHEMA%' AND table_name LIKE 'durably_chaos_%'")
        assert side == []


def test_chaos_refuses_an_unknown_scenario_and_a_missing_store(tmp_path):
    url = f"sqlite:///{tmp_path}/nothing.db"
    r = run_cli(["chaos", "--scenarios", "kill9,meteor"], cli_env(url))
    assert r.returncode == 1 and "unknown scenario 'meteor'" in r.stderr, r.stderr
    r = run_cli(["chaos", "--scenarios", "kill9", "--runs", "1"], cli_env(url))
    assert r.returncode == 1 and "no store at" in r.stderr, r.stderr
    assert not (tmp_path / "nothing.db").exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ctrl_c_kills_its_workers_and_deletes_its_env(store_url, tmp_path):
    _neighbour(store_url)
    before = _rows_by_env(store_url)
    with open(tmp_path / "chaos.err", "wb") as err:
        p = subprocess.Popen(durably_cmd("chaos", "--scenarios", "kill9", "--runs", "2000"),
                             env=cli_env(store_url, env="neighbour"), stdout=subprocess.DEVNULL, stderr=err)
    try:
        # Its workers are up (their rows are in the chaos env) and runs are executing: interrupt.
        pids = wait_for(lambda: [r[0] for r in _query(store_url, "SELECT pid FROM durably_workers "
                                                                  "WHERE env LIKE 'chaos-%'")], 60,
                        what="the battery's workers")
        wait_for(lambda: _query(store_url, "SELECT COUNT(*) FROM durably_runs WHERE env LIKE 'chaos-%' "
                                           "AND status = 'completed'")[0][0] > 0, 60, what="runs completing")
        p.send_signal(signal.SIGINT)
        assert p.wait(60) == 1, (tmp_path / "chaos.err").read_text()
        assert "aborted" in (tmp_path / "chaos.err").read_text()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    assert not [pid for pid in pids if _alive(pid)]
    assert _rows_by_env(store_url) == before
