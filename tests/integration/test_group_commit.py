"""Group commit and the worker's fast paths keep their guarantees.

- An operation that fails inside a batch changes nothing, and the others of the batch
  commit (the batch is rolled back and run again without it).
- An idle worker of the sending process is handed its runs by the send's own transaction.
- Runs claimed ahead by a worker are never lost: two workers drain a queue of short runs,
  each run executes once, and after both stop no run is left leased.
"""

from __future__ import annotations

import sqlite3
import threading

import pytest

import durably
from durably.store.writer import BatchWriter
from tests.helpers import make_app, running_worker, runs_of, wait_for


def _writer(path: str, commits: list[int]) -> BatchWriter:
    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY)")
        return conn

    def begin(conn: sqlite3.Connection) -> sqlite3.Connection:
        conn.execute("BEGIN IMMEDIATE")
        return conn

    return BatchWriter(
        name="test", connect=connect, begin=begin, commit=lambda c: c.execute("COMMIT"),
        rollback=lambda c: c.execute("ROLLBACK") if c.in_transaction else None,
        savepoint=lambda c, s: c.execute(s), is_retryable=lambda e: False, translate=lambda e: e,
        on_commit=lambda tx: commits.append(1),
    )


def test_a_failed_operation_changes_nothing_and_the_rest_of_its_batch_commits(tmp_path):
    commits: list[int] = []
    w = _writer(str(tmp_path / "w.db"), commits)
    gate, holding = threading.Event(), threading.Event()

    def insert(tx, k):
        tx.execute("INSERT INTO t (k) VALUES (?)", (k,))
        return k

    def insert_then_fail(tx, k):
        tx.execute("INSERT INTO t (k) VALUES (?)", (k,))
        raise ValueError(f"op {k} failed after writing")

    try:
        blocker = w.submit(lambda tx: holding.set() or gate.wait(10))  # holds the writer while a batch queues
        assert holding.wait(10)
        futs = [w.submit(insert, 1), w.submit(insert_then_fail, 2), w.submit(insert, 3),
                w.submit(insert_then_fail, 4), w.submit(insert, 5)]
        gate.set()
        assert blocker.result(10) is True
        assert [futs[i].result(10) for i in (0, 2, 4)] == [1, 3, 5]
        for i in (1, 3):
            with pytest.raises(ValueError, match="failed after writing"):
                futs[i].result(10)
        assert len(commits) == 2, "the blocker's batch, then one commit for the five queued operations"
        rows = w.submit(lambda tx: [r[0] for r in tx.execute("SELECT k FROM t ORDER BY k")]).result(10)
        assert rows == [1, 3, 5]
    finally:
        w.close()


def test_an_idle_worker_gets_its_run_in_the_transaction_of_the_send(tmp_path):
    app = make_app(f"sqlite:///{tmp_path}/durably.db")
    seen = []

    @app.function(id="hello", trigger=durably.on_event("hello"))
    async def hello(ctx: durably.Context) -> None:
        seen.append(ctx.run_id)

    try:
        with running_worker(app, concurrency=4) as worker:
            handed = []
            # The worker leaves its idle state for a moment at each poll; a send landing in that
            # moment takes the ordinary claim path. Without the hand-off, no attempt ever matches.
            for attempt in range(5):
                wait_for(lambda: worker._idle, 10, what="the worker to be idle")
                res = app.send(durably.Event("hello"))
                wait_for(lambda: len(seen) == attempt + 1, 10, what="the run to start")
                run = next(r for r in runs_of(app, function_id="hello") if r["id"] == res.runs[0])
                # Claimed by the commit that created it: one store clock reading for both.
                if run["started_at"] == run["created_at"]:
                    handed.append(run["id"])
                    break
            assert handed, "no run was handed to the idle worker in the transaction of its send"
    finally:
        app.close()


def test_two_workers_claiming_ahead_run_every_run_once_and_leave_none_leased(tmp_path):
    url = f"sqlite:///{tmp_path}/durably.db"
    apps = [make_app(url), make_app(url)]
    counts: dict[str, int] = {}
    lock = threading.Lock()
    for app in apps:
        @app.function(id="short", trigger=durably.on_event("short"))
        async def short(ctx: durably.Context) -> None:
            with lock:
                counts[ctx.event.data["i"]] = counts.get(ctx.event.data["i"], 0) + 1

    try:
        apps[0].send([durably.Event("short", {"i": str(i)}) for i in range(400)])
        with running_worker(apps[0], concurrency=4), running_worker(apps[1], concurrency=4):
            wait_for(lambda: len(counts) == 400, 60, what="400 runs executed")
            apps[0].send([durably.Event("short", {"i": f"late{i}"}) for i in range(100)])
        assert all(n == 1 for n in counts.values()), "a run executed twice"
        runs = runs_of(apps[0], function_id="short")
        assert len(runs) == 500
        assert not [r for r in runs if r["status"] == "running"], "a worker stopped holding a run"
        done = [r for r in runs if r["status"] == "completed"]
        assert len(done) == len(counts)
    finally:
        for app in apps:
            app.close()


def test_operations_of_one_kind_run_together_and_fail_alone(tmp_path):
    """A ``many`` variant runs a batch's operations of its kind in one call: an operation it
    rejects fails alone; when ``many`` itself fails, they run one by one and only the
    failing one is left out."""
    from durably.store.writer import Rejected

    commits: list[int] = []
    w = _writer(str(tmp_path / "w.db"), commits)
    calls: list[list[int]] = []

    def insert(tx, k):
        if k == 13:
            raise ValueError("13 is refused")
        tx.execute("INSERT INTO t (k) VALUES (?)", (k,))
        return k

    def insert_many(tx, items):
        ks = [k for (k,) in items]
        calls.append(ks)
        if 13 in ks:
            raise ValueError("the bulk statement failed")
        tx.executemany("INSERT INTO t (k) VALUES (?)", [(k,) for k in ks if k % 2 == 0])
        return [k if k % 2 == 0 else Rejected(LookupError(f"{k} is odd")) for k in ks]

    insert.many = insert_many
    gate, holding = threading.Event(), threading.Event()
    try:
        for ks in ([2, 3, 4, 5], [6, 13, 8]):
            blocker = w.submit(lambda tx: holding.set() or gate.wait(10))
            assert holding.wait(10)
            futs = {k: w.submit(insert, k) for k in ks}
            gate.set()
            blocker.result(10)
            for k, fut in futs.items():
                if k == 13:
                    with pytest.raises(ValueError, match="13 is refused"):
                        fut.result(10)
                elif k % 2:
                    with pytest.raises(LookupError, match=f"{k} is odd"):
                        fut.result(10)
                else:
                    assert fut.result(10) == k
            gate.clear()
            holding.clear()
        assert calls == [[2, 3, 4, 5], [6, 13, 8]], "one call per batch; after a failure, one by one"
        rows = w.submit(lambda tx: [r[0] for r in tx.execute("SELECT k FROM t ORDER BY k")]).result(10)
        assert rows == [2, 4, 6, 8]
    finally:
        w.close()


def _noop_app(store_url: str) -> durably.App:
    """A registered app with one function ``f`` (on event ``go``) that does nothing."""
    app = make_app(store_url)

    @app.function(id="f", trigger=durably.on_event("go"))
    async def f(ctx: durably.Context) -> None:
        return None

    app.register()
    return app


def test_runs_finishing_in_one_batch_fail_alone_when_their_lease_is_lost(store_url):
    """Finishes and checkpoints of several runs share one statement; a run whose lease was
    lost (here: cancelled) is refused alone, and a step someone else finished keeps its
    outcome."""
    from durably.errors import LeaseLost
    from durably.core.records import StepWrite

    app = _noop_app(store_url)
    try:
        app.send([durably.Event("go", {"i": i}) for i in range(6)])
        store = app.store
        runs, _next, _now = store.claim_runs("w1", '["f"]', 6, 30.0).result(10)
        assert len(runs) == 6
        store.cancel_run(runs[1].id, "test").result(10)
        store.cancel_run(runs[4].id, "test").result(10)
        first = StepWrite("a", "run", "completed", 0, 1, '"first"', None, None, 1.0, 2.0)
        store.checkpoint_step(runs[5], 30.0, first).result(10)
        retrying = StepWrite("a", "run", "retrying", 0, 1, None, '{"name": "E"}', '{"attempt": 1}', 1.0, 2.0)
        store.checkpoint_step(runs[3], 30.0, retrying).result(10)

        gate, holding = threading.Event(), threading.Event()
        blocker = store._write(lambda tx: holding.set() or gate.wait(10))
        assert holding.wait(10)
        step = StepWrite("a", "run", "completed", 0, 2, '"second"', None, '{"attempt": 2}', 3.0, 4.0)
        checkpoints = [store.checkpoint_step(r, 30.0, step) for r in runs[3:]]
        finishes = [store.finish_run(r, status="completed", output='"done"', error=None, reason="completed")
                    for r in runs[:3]]
        gate.set()
        blocker.result(10)

        assert finishes[0].result(10) and finishes[2].result(10)
        with pytest.raises(LeaseLost):
            finishes[1].result(10)
        assert checkpoints[0].result(10) is None  # written
        with pytest.raises(LeaseLost):
            checkpoints[1].result(10)
        kept = checkpoints[2].result(10)  # already completed before: the stored outcome wins
        assert kept is not None and kept["output"] == '"first"'

        by_id = {r["id"]: r for r in runs_of(app, function_id="f")}
        assert [by_id[r.id]["status"] for r in runs] == ["completed", "cancelled", "completed", "running",
                                                         "cancelled", "running"]
        steps = app.store.get_run(runs[3].id).result(10)["steps"]
        assert [(s["step_id"], s["status"], s["output"], s["attempts"], s["log"]) for s in steps] == [
            ("a", "completed", "second", 2, [{"attempt": 1}, {"attempt": 2}])]
    finally:
        app.close()


def test_a_claim_returns_its_runs_as_stored_in_claim_order(store_url):
    """A claim's runs carry the stored timestamps to the last bit (SQLite hands them back in
    one JSON value), the new fencing token, and come in claim order (priority, then age)."""
    app = _noop_app(store_url)
    try:
        app.send([durably.Event("go", {"i": i}) for i in range(40)])
        stored = {r["id"]: r for r in runs_of(app, function_id="f")}
        expected = sorted(stored.values(), key=lambda r: (r["created_at"], r["id"]))
        runs, _next, _now = app.store.claim_runs("w1", '["f"]', 40, 30.0).result(10)
        assert [r.id for r in runs] == [r["id"] for r in expected]
        after = {r["id"]: r for r in runs_of(app, function_id="f")}
        for run in runs:
            assert run.created_at == stored[run.id]["created_at"]
            assert run.started_at == after[run.id]["started_at"] and after[run.id]["status"] == "running"
            assert run.lease_gen == 1 and not run.resumed and not run.holds
            assert run.event["data"] == stored[run.id]["event"]["data"]
    finally:
        app.close()
