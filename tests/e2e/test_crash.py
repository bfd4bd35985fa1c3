"""Done-when 2: kill -9 a worker in the middle of a step; a new worker completes the run and
every step that had been committed ran exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import durably
from tests.apps.sidefx import effects
from tests.helpers import cli_env, make_app, wait_for, wait_run

APP = str(Path(__file__).resolve().parents[1] / "apps" / "crash_app.py")


def test_kill_9_in_the_middle_of_a_step(store_url, tmp_path, procs):
    side = str(tmp_path / "side.db")
    env = cli_env(store_url, DURABLY_LEASE_SECONDS="1", DURABLY_TEST_SIDE_DB=side)
    first = procs.start(["worker", APP, "--concurrency", "2"], {**env, "DURABLY_TEST_BLOCK": "1"})
    app = make_app(store_url, "crash-test")
    try:
        wait_for(lambda: app.store.get_function("three-steps").result() or first.poll() is not None,
                 timeout=30, what="the first worker to register")
        assert first.poll() is None, procs.log(first)
        rid = app.send(durably.Event("crash.go")).runs[0]
        wait_for(lambda: any(w == "two:start" for _, w, _, _ in effects(side)), timeout=30,
                 what="step two to start")
        procs.kill9(first)  # mid-step: step one is committed, step two is executing
        steps = {s["step_id"]: s for s in app.store.get_run(rid).result()["steps"]}
        assert steps["one"]["status"] == "completed" and "two" not in steps

        second = procs.start(["worker", APP], env)
        run = wait_run(app, rid, timeout=30)
        assert run["status"] == "completed", (run, procs.log(second))
        assert run["output"] == ["one", "two", "three"]
    finally:
        app.close()
    fx = effects(side)
    counts = Counter(w for r, w, _, _ in fx if r == rid)
    # Committed before the crash: exactly once. Executing at the crash: again (at-least-once).
    assert counts == {"one": 1, "two:start": 2, "two:end": 1, "three": 1}
    pids = {w: p for r, w, p, _ in fx if r == rid and w != "two:start"}
    assert pids["one"] == first.pid and pids["two:end"] == second.pid == pids["three"]
    assert procs.stop(second) == 0, procs.log(second)


def test_sigterm_mid_step_hands_the_run_back_and_exits(store_url, tmp_path, procs):
    """A deploy's SIGTERM: the worker waits its grace period, gives the run back, and exits."""
    side = str(tmp_path / "side.db")
    env = cli_env(store_url, DURABLY_LEASE_SECONDS="1", DURABLY_TEST_SIDE_DB=side)
    first = procs.start(["worker", APP], {**env, "DURABLY_TEST_BLOCK": "1"})
    app = make_app(store_url, "crash-test")
    try:
        wait_for(lambda: app.store.get_function("three-steps").result() or first.poll() is not None,
                 timeout=30, what="the first worker to register")
        rid = app.send(durably.Event("crash.go")).runs[0]
        wait_for(lambda: any(w == "two:start" for _, w, _, _ in effects(side)), timeout=30, what="step two")
        assert procs.stop(first, timeout=15) == 0, procs.log(first)
        run = app.store.get_run(rid).result()
        assert run["status"] == "queued" and run["lease_owner"] is None, run
        second = procs.start(["worker", APP], env)
        assert wait_run(app, rid, timeout=30)["status"] == "completed", procs.log(second)
        assert procs.stop(second) == 0
    finally:
        app.close()
    counts = Counter(w for r, w, _, _ in effects(side) if r == rid)
    assert counts == {"one": 1, "two:start": 2, "two:end": 1, "three": 1}
