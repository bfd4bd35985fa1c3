"""app.result woken by a commit of another process: NOTIFY on PostgreSQL, the file's change
counter on SQLite (the safety-net re-read is pushed past the test's deadline)."""

from __future__ import annotations

from pathlib import Path

import pytest

import durably
import durably.app as app_module
from tests.helpers import cli_env, make_app, wait_for

CRASH_APP = str(Path(__file__).resolve().parents[1] / "apps" / "crash_app.py")


@pytest.fixture
def no_recheck(monkeypatch):
    monkeypatch.setattr(app_module, "RESULT_RECHECK_SECONDS", 60.0)


def test_a_run_ended_by_another_process_wakes_the_waiter(store_url, tmp_path, procs, no_recheck):
    env = cli_env(store_url, DURABLY_TEST_SIDE_DB=str(tmp_path / "side.db"))
    worker = procs.start(["worker", CRASH_APP], env)
    app = make_app(store_url, "results-remote")
    try:
        wait_for(lambda: app.store.get_function("three-steps").result() or worker.poll() is not None,
                 timeout=30, what="the worker to register")
        assert worker.poll() is None, procs.log(worker)
        rid = app.send(durably.Event("crash.go")).runs[0]
        r = app.result(rid, timeout=30)  # no safety-net re-read: the other process's commit woke us
        assert r.status == "completed" and r.output == ["one", "two", "three"]
    finally:
        app.close()
    assert procs.stop(worker) == 0
