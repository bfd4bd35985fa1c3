"""Property test of claiming under concurrency limits.

Random interleavings of sends, claims by several workers, completions, suspensions
(a sleeping run gives its slot back) and worker crashes (their runs go back to the
queue, the same path as lease recovery) never exceed a per-key or function-wide limit,
keep the slot rows equal to the running runs, and lose no run.
"""

from __future__ import annotations

import time

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import durably
from durably.core.records import StepWrite
from tests.helpers import make_app

KEY_LIMIT, FN_LIMIT = 1, 3
WORKERS = ("w1", "w2", "w3")


class Claiming(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        import tempfile

        self.dir = tempfile.TemporaryDirectory()
        self.app = make_app(f"sqlite:///{self.dir.name}/p.db", "prop")

        @self.app.function(id="f", trigger=durably.on_event("e"),
                           concurrency=[durably.Concurrency(limit=KEY_LIMIT, key="event.data.k"),
                                        durably.Concurrency(limit=FN_LIMIT)])
        async def f(ctx):
            return None

        self.app.register()
        self.store = self.app.store
        self.sent: set[str] = set()
        self.finished: set[str] = set()
        self.held: dict[str, dict] = {w: {} for w in WORKERS}  # worker -> run id -> ClaimedRun

    def teardown(self):
        self.app.close()
        self.dir.cleanup()

    @rule(keys=st.lists(st.sampled_from("abcd"), min_size=1, max_size=4))
    def send(self, keys):
        res = self.app.send([durably.Event("e", {"k": k}) for k in keys])
        self.sent.update(res.runs)

    @rule(worker=st.sampled_from(WORKERS), n=st.integers(1, 4))
    def claim(self, worker, n):
        runs, _next, _now = self.store.claim_runs(worker, '["f"]', n, 60.0).result()
        for r in runs:
            assert r.id not in self.finished
            assert all(r.id not in h for h in self.held.values()), "a run was claimed twice"
            self.held[worker][r.id] = r

    @precondition(lambda self: any(self.held.values()))
    @rule(data=st.data())
    def complete(self, data):
        worker = data.draw(st.sampled_from([w for w in WORKERS if self.held[w]]))
        rid = data.draw(st.sampled_from(sorted(self.held[worker])))
        run = self.held[worker].pop(rid)
        self.store.finish_run(run, status="completed", output="null", error=None, reason="completed").result()
        self.finished.add(rid)

    @precondition(lambda self: any(self.held.values()))
    @rule(data=st.data())
    def sleep(self, data):
        worker = data.draw(st.sampled_from([w for w in WORKERS if self.held[w]]))
        rid = data.draw(st.sampled_from(sorted(self.held[worker])))
        run = self.held[worker].pop(rid)
        step = StepWrite(f"s{time.monotonic_ns()}", "sleep", "sleeping", 0, 0, wake_at=time.time())
        self.store.suspend_run(run, steps=[step], waits=[], children=[], status="sleeping",
                               available_at=time.time(), lease=60.0).result()

    @rule(worker=st.sampled_from(WORKERS))
    def crash(self, worker):
        ids = list(self.held[worker])
        self.held[worker].clear()
        self.store.release_runs(worker, ids).result()

    @invariant()
    def limits_hold(self):
        running = self.store.list_runs(status="running", limit=1000).result()
        assert len(running) <= FN_LIMIT
        per_key: dict[str, int] = {}
        for r in running:
            per_key[r["event"]["data"]["k"]] = per_key.get(r["event"]["data"]["k"], 0) + 1
        assert all(v <= KEY_LIMIT for v in per_key.values()), per_key
        slots = self.store.list_slots().result()
        assert {s["run_id"] for s in slots} == {r["id"] for r in running}
        assert {r["id"] for r in running} == {rid for h in self.held.values() for rid in h}

    def drain(self):
        for _ in range(500):
            for w in WORKERS:
                for rid, run in list(self.held[w].items()):
                    self.store.finish_run(run, status="completed", output="null", error=None,
                                          reason="completed").result()
                    self.finished.add(rid)
                self.held[w].clear()
            runs, _n, _t = self.store.claim_runs("drainer", '["f"]', 8, 60.0).result()
            if not runs:
                break
            self.held["w1"].update({r.id: r for r in runs})

    @invariant()
    def nothing_lost(self):
        total = self.store.list_runs(function_id="f", limit=10_000).result()
        assert {r["id"] for r in total} == self.sent


Claiming.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None,
                                      suppress_health_check=[HealthCheck.too_slow])
TestClaiming = Claiming.TestCase


def test_drain_completes_everything():
    """After any interleaving, every run can still be claimed and completed."""
    m = Claiming()
    try:
        m.send(["a", "a", "b", "c", "d", "a"])
        m.claim("w1", 4)
        m.crash("w1")
        m.claim("w2", 2)
        m.drain()
        done = m.store.list_runs(function_id="f", status="completed", limit=100).result()
        assert {r["id"] for r in done} == m.sent
    finally:
        m.teardown()
