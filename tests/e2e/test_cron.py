"""Done-when 5: a cron schedule fires exactly once per tick with two scheduler processes on
one store; a tick missed while everything was down fires once on restart."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from durably.core.blobs import iso
from tests.apps.sidefx import effects
from tests.helpers import cli_env, make_app, runs_of, wait_for

APP = str(Path(__file__).resolve().parents[1] / "apps" / "cron_app.py")
FAST = "*/2 * * * * *"  # six fields, seconds first: every 2 s


def _tick_of(run: dict) -> float:
    return datetime.fromisoformat(run["event"]["data"]["tick"].replace("Z", "+00:00")).timestamp()


def _set_last_tick(app, function_id: str, schedule: str, tick: float) -> None:
    """Move a schedule's last fired tick (as if everything had been down since then)."""

    def txn(tx):
        row = tx.one("cron_state", env=tx.env, function_id=function_id, schedule=schedule)
        assert row is not None, f"no cron row for {function_id}"
        assert tx.exec("advance_cron", env=tx.env, function_id=function_id, schedule=schedule, tick=tick,
                       last_tick=row[0]) == 1

    app.store._write(txn).result()


def test_cron_fires_once_per_tick_with_two_schedulers(store_url, tmp_path, procs):
    side = str(tmp_path / "side.db")
    env = cli_env(store_url, DURABLY_TEST_SIDE_DB=side, DURABLY_TEST_CRON=FAST)
    workers = [procs.start(["worker", APP], env) for _ in range(2)]
    app = make_app(store_url, "cron-test")
    try:
        wait_for(lambda: len(app.store.health(time.time(), 30).result()["workers"]) == 2
                 or any(w.poll() is not None for w in workers), timeout=30, what="two live workers")
        assert all(w.poll() is None for w in workers), [procs.log(w) for w in workers]

        def done_runs():
            rs = [r for r in runs_of(app, function_id="every-2s") if r["status"] == "completed"]
            return rs if len(rs) >= 3 else None

        wait_for(done_runs, timeout=30, what="three completed cron runs")
        assert all(w.poll() is None for w in workers)  # both schedulers were live the whole time
        for w in workers:
            assert procs.stop(w) == 0, procs.log(w)

        runs = runs_of(app, function_id="every-2s")
        ticks = [_tick_of(r) for r in runs]
        assert all(r["trigger"] == "cron" for r in runs)
        assert len(set(ticks)) == len(ticks), "a tick fired twice"
        assert all(t % 2 == 0 for t in ticks)  # on the schedule's ticks
        for r in runs:
            assert r["event_id"] == f"cron:every-2s:{iso(_tick_of(r))}"
        recorded = Counter(w for _, w, _, _ in effects(side) if w.startswith("tick:"))
        done = [r for r in runs if r["status"] == "completed"]
        assert len(done) >= 3
        for r in done:
            assert recorded["tick:" + r["event"]["data"]["tick"]] == 1
        assert all(n == 1 for n in recorded.values())
        # The hourly schedule saw no tick in this short window.
        assert runs_of(app, function_id="hourly") == []

        # Everything is down; pretend it has been for five hours, then start both again.
        schedule = "0 * * * *|Europe/Berlin"
        down_since = time.time() - 5 * 3600
        _set_last_tick(app, "hourly", schedule, down_since)
        restart = time.time()
        workers = [procs.start(["worker", APP], env) for _ in range(2)]
        hourly = wait_for(lambda: [r for r in runs_of(app, function_id="hourly") if r["status"] == "completed"],
                          timeout=30, what="the missed hourly tick")
        wait_for(lambda: len(app.store.health(time.time(), 30).result()["workers"]) == 2, timeout=30,
                 what="both workers back")
        wait_for(lambda: len([r for r in runs_of(app, function_id="every-2s") if _tick_of(r) > restart]) >= 2,
                 timeout=30, what="two more 2-second ticks")  # both schedulers have had their chances
        for w in workers:
            assert procs.stop(w) == 0, procs.log(w)
        ended = time.time()
        hourly = runs_of(app, function_id="hourly")
        ticks = sorted(_tick_of(r) for r in hourly)
        if restart // 3600 == ended // 3600:
            # Five missed hours fire once, for the latest tick that was due.
            assert ticks == [(restart // 3600) * 3600], [r["event"]["data"]["tick"] for r in hourly]
        else:  # an hour began during the test: that tick may have come first, or fired as well
            assert len(ticks) in (1, 2) and len(set(ticks)) == len(ticks) and ticks[-1] == (ended // 3600) * 3600
        assert Counter(w for _, w, _, _ in effects(side) if w.startswith("hourly:")) == {
            "hourly:" + r["event"]["data"]["tick"]: 1 for r in hourly}
    finally:
        app.close()
