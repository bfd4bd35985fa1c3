"""Nothing stranded under a live worker (DESIGN §3).

A run whose finish or suspend could not be recorded (the store did not answer, or a COMMIT
whose outcome is unknown: ``SqlStore.faults``) is let go by its worker: the heartbeat no longer
renews its lease, and the worker hands it back, fenced by the lease token, once the store
answers. Another worker (or this one) resumes it within a lease period; the steps it had
committed are replayed from the memo, not run again. Effects are counted outside the engine
(a file per run and step).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import durably
from tests.helpers import get_run, make_app, running_worker, wait_for

LEASE = 2.0


def _app(url: str, effects: Path) -> durably.App:
    app = make_app(url, "stranded", lease_seconds=LEASE)

    def effect(ctx: durably.Context) -> str:
        with open(effects, "a") as f:
            f.write(f"{ctx.step_key}\n")
        return ctx.step_key

    @app.function(id="two-steps", trigger=durably.on_event("go"), retries=1)
    def two_steps(ctx: durably.Context) -> list:
        return [ctx.step.run(name, effect, ctx) for name in ("one", "two")]

    @app.function(id="then-sleep", trigger=durably.on_event("nap"), retries=1)
    def then_sleep(ctx: durably.Context) -> str:
        ctx.step.run("before", effect, ctx)
        ctx.step.sleep("nap", 0.2)
        return ctx.step.run("after", effect, ctx)

    return app


def _once(verb: str, mode: str, fired: threading.Event) -> dict:
    def hook() -> str | None:
        if fired.is_set():
            return None
        fired.set()
        return mode
    return {verb: hook}


def _effects(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.parametrize("mode", ["lost", "unknown"])
def test_a_run_whose_finish_failed_completes_within_a_lease(store_url, tmp_path, mode):
    effects = tmp_path / "effects"
    faulty, other = _app(store_url, effects), _app(store_url, effects)
    fired = threading.Event()
    faulty.store.faults = _once("finish_run", mode, fired)
    try:
        with running_worker(faulty, concurrency=2) as w1:
            run_id = faulty.send(durably.Event("go", {})).runs[0]
            wait_for(fired.is_set, 20, what="the finish to fail")
            failed_at = time.monotonic()
            with running_worker(other, concurrency=2):
                run = wait_for(lambda: (lambda r: r if r and r["status"] == "completed" else None)(get_run(other, run_id)),
                               LEASE + 5, what="the run to complete after its finish failed")
            took = time.monotonic() - failed_at
            assert not w1._let_go and run_id not in w1._held
        assert run["output"] == [f"{run_id}:one", f"{run_id}:two"]
        # Each committed step ran once: the resumed attempt replayed them from the memo.
        assert sorted(_effects(effects)) == [f"{run_id}:one", f"{run_id}:two"]
        assert run["attempt"] == 0  # the failed write cost no attempt
        print(f"{mode}: completed {took:.2f}s after its finish failed (lease {LEASE}s)")
    finally:
        faulty.close()
        other.close()


def test_a_run_whose_suspend_failed_is_handed_back_and_resumed(store_url, tmp_path):
    effects = tmp_path / "effects"
    app = _app(store_url, effects)
    fired = threading.Event()
    app.store.faults = _once("suspend_run", "lost", fired)
    try:
        with running_worker(app, concurrency=2):
            run_id = app.send(durably.Event("nap", {})).runs[0]
            wait_for(fired.is_set, 20, what="the suspend to fail")
            run = wait_for(lambda: (lambda r: r if r and r["status"] == "completed" else None)(get_run(app, run_id)),
                           LEASE + 5, what="the run to complete after its suspend failed")
        assert run["output"] == f"{run_id}:after"
        assert sorted(_effects(effects)) == [f"{run_id}:after", f"{run_id}:before"]
        assert run["attempt"] == 0
    finally:
        app.close()


def test_the_heartbeat_renews_only_the_runs_given(store_url, tmp_path):
    """The store's heartbeat with a list of (id, token) extends those leases and no others."""
    app = _app(store_url, tmp_path / "effects")
    try:
        store = app.store
        ids = app.send([durably.Event("go", {}), durably.Event("go", {})]).runs
        functions = '["two-steps", "then-sleep"]'
        runs, _next, _now = store.claim_runs("w1", functions, 2, LEASE).result()
        assert len(runs) == 2
        worker = {"id": "w1", "host": "h", "pid": 1, "functions": ["two-steps"], "concurrency": 2}
        keep, drop = runs
        assert store.heartbeat(worker, 60, [(keep.id, keep.lease_gen)]).result() == 1
        assert store.heartbeat(worker, 60, [(keep.id, keep.lease_gen + 1)]).result() == 0  # fenced
        # Handed back under its token: requeued once; a stale token or a second call changes nothing.
        assert store.hand_back([(drop.id, drop.lease_gen + 1)]).result() == []
        assert store.hand_back([(drop.id, drop.lease_gen)]).result() == [drop.id]
        assert store.hand_back([(drop.id, drop.lease_gen)]).result() == []
        assert get_run(app, drop.id)["status"] == "queued"
        assert get_run(app, keep.id)["status"] == "running"
        assert set(ids) == {keep.id, drop.id}
    finally:
        app.close()
