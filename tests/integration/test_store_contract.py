"""The store contract, verb by verb, on every dialect (``store_url``: SQLite and PostgreSQL).

Drives the verbs of ``durably.store.base.Store`` and the reads of ``Ledger`` directly, with
no App and no worker: what each verb does to the ledger, how a write under a lease that is
no longer held is refused, and which keys each read returns (the ``core.ledger`` records).
Waiting on the store's clock (an expired lease, a retention cut-off) polls a row with a
deadline; nothing sleeps to synchronize.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest

from durably.core import ledger
from durably.core.events import Event
from durably.core.jsonutil import dumps
from durably.core.records import ClaimedRun, IngestResult, StepWrite, WaitWrite
from durably.errors import LeaseLost
from durably.store.base import StoreBackend
from tests.helpers import wait_for

ENV = "contract"
LEASE = 30.0


def config(fid: str, *triggers: dict[str, Any], **options: Any) -> dict[str, Any]:
    """A function's registry config, as ``FunctionDef.config()`` writes it."""
    return {"id": fid, "name": fid, "triggers": list(triggers),
            "retry": {"attempts": 4, "initial": 1.0, "max": 600.0, "factor": 2.0, "jitter": True},
            "concurrency": [], "throttle": None, "rate_limit": None, "debounce": None, "batch": None,
            "priority": None, "idempotency": None, "singleton": None, "cancel_on": [], "timeouts": None,
            "tenant": None, "has_on_failure": False, "internal": False, **options}


def on(event: str) -> dict[str, Any]:
    return {"event": event, "if": None}


def event(name: str, data: dict[str, Any] | None = None, id: str | None = None) -> dict[str, Any]:
    return Event(name, data or {}, id=id).to_dict()


def open_store(url: str) -> StoreBackend:
    store: StoreBackend
    if url.startswith("sqlite:"):
        from durably.store.sqlite import SqliteStore

        store = SqliteStore(url, env=ENV)
    else:
        from durably.store.postgres import PostgresStore

        store = PostgresStore(url, env=ENV)
    store.migrate().result()
    return store


@pytest.fixture
def store(store_url: str) -> Iterator[StoreBackend]:
    s = open_store(store_url)
    try:
        yield s
    finally:
        s.close()


def send(store: StoreBackend, fid: str = "f", n: int = 1, name: str = "go") -> list[str]:
    """Register ``fid`` on event ``name`` and ingest ``n`` of them; the runs created."""
    store.register("app", [config(fid, on(name))]).result()
    res = store.ingest([event(name, {"i": i}) for i in range(n)]).result()
    assert len(res.runs) == n
    return res.runs


def claim(store: StoreBackend, owner: str = "w1", fid: str = "f", limit: int = 10,
          lease: float = LEASE) -> list[ClaimedRun]:
    runs, _next_at, _now = store.claim_runs(owner, dumps([fid]), limit, lease).result()
    return runs


def step(sid: str, output: Any, at: float) -> StepWrite:
    return StepWrite(sid, "run", "completed", 0, 1, dumps(output), None, dumps({"attempt": 1}), at, at)


def finish(store: StoreBackend, run: ClaimedRun, output: Any = "done") -> None:
    store.finish_run(run, status="completed", output=dumps(output), error=None, reason="completed").result()


def get(store: StoreBackend, run_id: str) -> ledger.RunRecord:
    r = store.get_run(run_id).result()
    assert r is not None, f"no run {run_id}"
    return r


# --- runs from events -----------------------------------------------------------------------


def test_register_and_ingest_create_runs_and_ignore_duplicate_event_ids(store: StoreBackend) -> None:
    store.register("app", [config("f", on("go")), config("g", on("go")), config("other", on("else"))]).result()
    res = store.ingest([event("go", {"n": 1}, id="e1"), event("go", {"n": 2}, id="e2")]).result()
    assert isinstance(res, IngestResult)
    assert res.ids == ["e1", "e2"] and res.duplicates == [] and len(res.runs) == 4
    again = store.ingest([event("go", {"n": 1}, id="e1"), event("go", id="e3")]).result()
    assert again.duplicates == ["e1"] and len(again.runs) == 2  # e1 triggers nothing a second time
    runs = store.list_runs(limit=100).result()
    assert sorted(r["function_id"] for r in runs) == ["f", "f", "f", "g", "g", "g"]
    r = get(store, res.runs[0])
    assert r["status"] == "queued" and r["trigger"] == "event" and r["event"]["name"] == "go"
    assert r["event_id"] in ("e1", "e2") and r["lease_gen"] == 0 and r["steps"] == []
    e1 = store.get_event("e1").result()
    assert e1 is not None and sorted(x["function_id"] for x in e1["runs"]) == ["f", "g"]
    assert store.registry().result().keys() == {"f", "g", "other"}
    assert store.get_function("f").result() == config("f", on("go"))
    assert store.get_function("nope").result() is None


def test_create_runs_plans_nothing_itself_and_returns_the_ids(store: StoreBackend) -> None:
    from durably.core.records import NewRun, UniqueKey

    store.register("app", [config("f", on("go"))]).result()
    ids = store.create_runs([NewRun(id="r1", function_id="f", event=event("go"), trigger="manual"),
                             NewRun(id="r2", function_id="f", event=event("go"), trigger="manual",
                                    unique_keys=[UniqueKey("idempotency", "idempotency:f", "k", 60.0)]),
                             NewRun(id="r3", function_id="f", event=event("go"), trigger="manual",
                                    unique_keys=[UniqueKey("idempotency", "idempotency:f", "k", 60.0)])]).result()
    assert ids == ["r1", "r2", None]  # r3's key is held by r2: flow control created no run
    assert get(store, "r1")["trigger"] == "manual"


# --- claiming and the lease -----------------------------------------------------------------


def test_claim_runs_leases_ready_runs_with_a_fencing_token(store: StoreBackend) -> None:
    ids = send(store, n=3)
    runs, next_at, now = store.claim_runs("w1", dumps(["f"]), 2, LEASE).result()
    assert len(runs) == 2 and all(isinstance(r, ClaimedRun) for r in runs)
    assert isinstance(now, float) and (next_at is None or isinstance(next_at, float))
    for r in runs:
        assert r.id in ids and r.function_id == "f" and r.attempt == 0 and r.lease_gen >= 1 and not r.resumed
        row = get(store, r.id)
        assert row["status"] == "running" and row["lease_owner"] == "w1" and row["lease_gen"] == r.lease_gen
        assert row["lease_expires_at"] is not None and row["lease_expires_at"] >= now + LEASE - 1
    rest = claim(store, "w2")
    assert [r.id for r in rest] == [i for i in ids if i not in {r.id for r in runs}]
    assert claim(store, "w3") == []  # every run is leased
    assert claim(store, "w3", fid="other") == []


def test_checkpoint_step_commits_under_the_lease_and_refuses_a_stale_lease_gen(store: StoreBackend) -> None:
    (rid,) = send(store)
    (run,) = claim(store)
    at = store.now().result()
    assert store.checkpoint_step(run, LEASE, step("a", {"x": 1}, at)).result() is None
    (s,) = get(store, rid)["steps"]
    assert s["step_id"] == "a" and s["status"] == "completed" and s["output"] == {"x": 1}
    assert s["attempts"] == 1 and s["log"] == [{"attempt": 1}]
    stale = dataclasses.replace(run, lease_gen=run.lease_gen - 1)
    with pytest.raises(LeaseLost):
        store.checkpoint_step(stale, LEASE, step("b", "zombie", at)).result()
    assert [x["step_id"] for x in get(store, rid)["steps"]] == ["a"]  # nothing written
    # A step someone else already finished: its stored outcome comes back.
    done = store.checkpoint_step(run, LEASE, step("a", {"x": 2}, at)).result()
    assert done is not None and done["status"] == "completed"
    assert get(store, rid)["steps"][0]["output"] == {"x": 1}


def test_a_run_taken_over_cannot_suspend_or_finish_under_its_old_lease(store: StoreBackend) -> None:
    (rid,) = send(store)
    (zombie,) = claim(store, "zombie")
    assert store.release_runs("zombie", [rid]).result() == 1  # as after its lease expired
    (heir,) = claim(store, "heir")
    assert heir.id == rid and heir.lease_gen > zombie.lease_gen
    at = store.now().result()
    with pytest.raises(LeaseLost):
        store.suspend_run(zombie, steps=[step("z", "zombie", at)], waits=[], children=[], status="sleeping",
                          available_at=at + 60, lease=LEASE).result()
    with pytest.raises(LeaseLost):
        store.finish_run(zombie, status="completed", output=dumps("zombie"), error=None, reason="completed").result()
    with pytest.raises(LeaseLost):
        store.checkpoint_step(zombie, LEASE, step("z", "zombie", at)).result()
    row = get(store, rid)
    assert row["status"] == "running" and row["lease_owner"] == "heir" and row["steps"] == []
    finish(store, heir, "heir")
    row = get(store, rid)
    assert row["status"] == "completed" and row["output"] == "heir" and row["terminal_reason"] == "completed"
    with pytest.raises(LeaseLost):  # a finished run takes no second finish, even from its holder
        finish(store, heir, "again")


def test_suspend_run_parks_a_run_until_it_is_due(store: StoreBackend) -> None:
    (rid,) = send(store)
    (run,) = claim(store)
    at = store.now().result()
    nap = StepWrite("nap", "sleep", "sleeping", 0, 0, started_at=at, wake_at=at + 3600)
    store.suspend_run(run, steps=[nap], waits=[], children=[], status="sleeping", available_at=at + 3600,
                      lease=LEASE).result()
    row = get(store, rid)
    assert row["status"] == "sleeping" and row["lease_owner"] is None and row["available_at"] == at + 3600
    assert [s["step_id"] for s in row["steps"]] == ["nap"]
    assert claim(store) == []  # not due for an hour
    # Waiting: an event matching the wait resolves it and makes the run ready at once.
    (rid2,) = send(store, "w", name="go.w")
    (run2,) = claim(store, fid="w")
    at = store.now().result()
    wait = WaitWrite("reply", "wait", "reply", "data.id", dumps("a"), None, at + 3600, since=at)
    store.suspend_run(run2, steps=[StepWrite("reply", "wait", "waiting", 0, 0, started_at=at, wake_at=at + 3600)],
                      waits=[wait], children=[], status="waiting", available_at=at + 3600, lease=LEASE).result()
    assert get(store, rid2)["status"] == "waiting"
    store.ingest([event("reply", {"id": "a"})]).result()
    (resumed,) = claim(store, fid="w")
    assert resumed.id == rid2 and resumed.resumed and resumed.lease_gen > run2.lease_gen
    assert {s["step_id"]: s["status"] for s in resumed.steps}["reply"] == "completed"


def test_cancel_run_of_a_finished_run_returns_false(store: StoreBackend) -> None:
    queued, running = send(store, n=2)
    assert store.cancel_run(queued, "by test").result() is True
    row = get(store, queued)
    assert row["status"] == "cancelled" and row["terminal_reason"] == "by test" and row["finished_at"] is not None
    assert store.cancel_run(queued, "again").result() is False
    (run,) = claim(store)
    assert run.id == running
    finish(store, run)
    assert store.cancel_run(running, "too late").result() is False
    assert get(store, running)["status"] == "completed"
    assert store.cancel_run("no-such-run", "x").result() is False


def test_cancel_fences_out_the_worker_holding_the_run(store: StoreBackend) -> None:
    (rid,) = send(store)
    (run,) = claim(store)
    assert store.cancel_run(rid, "by user").result() is True
    with pytest.raises(LeaseLost):
        store.checkpoint_step(run, LEASE, step("a", 1, store.now().result())).result()
    with pytest.raises(LeaseLost):
        finish(store, run)
    assert get(store, rid)["status"] == "cancelled"


def test_release_runs_requeues_only_the_owners_runs(store: StoreBackend) -> None:
    (rid,) = send(store)
    (run,) = claim(store, "w1")
    assert store.release_runs("w2", [rid]).result() == 0  # not w2's
    assert get(store, rid)["status"] == "running"
    assert store.release_runs("w1", [rid]).result() == 1
    row = get(store, rid)
    assert row["status"] == "queued" and row["lease_owner"] is None and row["lease_gen"] == run.lease_gen + 1
    (again,) = claim(store, "w2")
    assert again.id == rid and again.lease_gen > run.lease_gen
    assert store.release_runs("w1", [rid]).result() == 0


def test_recover_leases_requeues_an_expired_lease(store: StoreBackend) -> None:
    held, short = send(store, n=2)
    claim(store, "alive", limit=1)
    (run,) = claim(store, "gone", limit=1, lease=0.2)
    assert run.id == short
    assert held not in store.recover_leases().result()  # a 30 s lease is not expired
    recovered = wait_for(lambda: store.recover_leases().result(), timeout=10, what="the 0.2 s lease to expire")
    assert recovered == [short]
    row = get(store, short)
    assert row["status"] == "queued" and row["lease_owner"] is None
    assert get(store, held)["status"] == "running"
    (heir,) = claim(store, "heir")
    assert heir.id == short and heir.lease_gen > run.lease_gen


def test_heartbeat_extends_the_workers_leases_and_remove_worker_forgets_it(store: StoreBackend) -> None:
    send(store, n=2)
    claim(store, "w1", lease=5.0)
    worker = {"id": "w1", "host": "h", "pid": 1, "functions": ["f"], "concurrency": 2}
    assert store.heartbeat(worker, LEASE).result() == 2
    now = store.now().result()
    assert all(r["lease_expires_at"] >= now + LEASE - 1 for r in store.list_runs(status="running").result())
    now = store.now().result()  # after the backlog's run was created
    h = store.health(now, LEASE).result()
    assert [w["id"] for w in h["workers"]] == ["w1"] and h["workers"][0]["functions"] == ["f"]
    store.remove_worker("w1").result()
    assert store.health(store.now().result(), LEASE).result()["workers"] == []


def test_leadership_is_held_by_one_owner_at_a_time(store: StoreBackend) -> None:
    assert store.acquire_leadership("scheduler", "a", 30).result() is True
    assert store.acquire_leadership("scheduler", "a", 30).result() is True  # renewed
    assert store.acquire_leadership("scheduler", "b", 30).result() is False
    assert store.release_leadership("scheduler", "b").result() is False  # b does not hold it
    assert store.release_leadership("scheduler", "a").result() is True
    assert store.acquire_leadership("scheduler", "b", 30).result() is True
    assert store.acquire_leadership("other", "a", 30).result() is True  # names are independent


# --- cron, dispatch, timeouts, retention ----------------------------------------------------


YEARLY = "0 0 1 1 *"  # a tick due once a year: no new tick comes due during the test
DAILY = "0 0 * * *"  # a missed tick within the scheduler's look-back (two days) fires once


def _move_last_tick(store: Any, fid: str, schedule: str, tick: float) -> None:
    """Set a schedule's last fired tick back (as if the scheduler had been down since)."""

    def txn(tx: Any) -> None:
        row = tx.one("cron_state", env=tx.env, function_id=fid, schedule=schedule)
        assert row is not None
        assert tx.exec("advance_cron", env=tx.env, function_id=fid, schedule=schedule, tick=tick,
                       last_tick=row[0]) == 1

    store._write(txn).result()


def test_fire_cron_fires_a_due_tick_once(store: StoreBackend) -> None:
    store.register("app", [config("daily", {"cron": DAILY, "tz": "UTC"})]).result()
    assert store.fire_cron("daily", DAILY, "UTC").result() is None  # no tick since registration
    now = store.now().result()
    _move_last_tick(store, "daily", f"{DAILY}|UTC", now - 1.5 * 86400)
    rid = store.fire_cron("daily", DAILY, "UTC").result()
    assert rid is not None
    assert store.fire_cron("daily", DAILY, "UTC").result() is None  # that tick fired already
    row = get(store, rid)
    assert row["trigger"] == "cron" and row["event"]["name"] == "durably/cron" and row["status"] == "queued"
    assert row["event"]["data"]["cron"] == DAILY
    (f,) = store.list_functions(now - 86400).result()
    assert f["cron"] == [{"schedule": f"{DAILY}|UTC", "last_tick": f["cron"][0]["last_tick"]}]
    assert f["cron"][0]["last_tick"] > now - 1.5 * 86400
    (o,) = store.functions_overview(now - 86400).result()
    assert o["last_cron_run"] is not None and o["last_cron_run"]["id"] == rid


def test_dispatch_sends_once_per_window_and_counts_later_pings(store: StoreBackend) -> None:
    store.register("app", [config("nightly", on("nightly.go"))]).result()
    first = store.dispatch("nightly.go", 86400, {"name": "nightly.go", "data": {}}).result()
    assert first["duplicate"] is False and len(first["runs"]) == 1 and first["pings"] == 1
    second = store.dispatch("nightly.go", 86400, {"name": "nightly.go", "data": {}}).result()
    assert second["duplicate"] is True and second["runs"] == [] and second["pings"] == 2
    assert second["event_id"] == first["event_id"] and second["window_start"] == first["window_start"]
    assert len(store.list_runs(function_id="nightly").result()) == 1
    ev = store.get_event(first["event_id"]).result()
    assert ev is not None and ev["event"]["data"]["window"] == 86400


def test_expire_runs_cancels_a_run_not_started_in_time(store: StoreBackend) -> None:
    store.register("app", [config("slow", on("go"), timeouts={"start": 0.2})]).result()
    (rid,) = store.ingest([event("go")]).result().runs
    expired = wait_for(lambda: store.expire_runs().result()["cancelled"], timeout=10,
                       what="the start timeout to pass")
    assert expired == [rid]
    row = get(store, rid)
    assert row["status"] == "cancelled" and row["terminal_reason"] == "start_timeout"
    assert store.expire_runs().result() == {"cancelled": [], "failed": []}


def test_prune_removes_old_finished_runs_and_keeps_live_ones(store: StoreBackend) -> None:
    done, live = send(store, n=2)
    (run,) = claim(store, limit=1)
    assert run.id == done
    store.checkpoint_step(run, LEASE, step("a", 1, store.now().result())).result()
    finish(store, run)
    # Retention 0: a run that finished before the store's now goes (polled: the clock may not have moved yet).
    counts = wait_for(lambda: (lambda c: c if c["runs"] else None)(store.prune(0.0).result()), timeout=10,
                      what="the finished run to be older than the store's now")
    assert counts["runs"] == 1 and counts["steps"] == 1
    assert store.get_run(done).result() is None
    assert get(store, live)["status"] == "queued"
    assert store.prune(0.0).result()["runs"] == 0


# --- the ledger reads return their records' keys --------------------------------------------


def keys(td: Any) -> set[str]:
    return set(td.__required_keys__)


def every_key(td: Any) -> set[str]:
    return set(td.__required_keys__) | set(td.__optional_keys__)


def test_each_ledger_read_returns_the_documented_keys(store: StoreBackend) -> None:
    store.register("app", [config("f", on("go"), concurrency=[{"limit": 2, "key": None, "scope": "fn"}],
                                  idempotency="event.data.k"),
                           config("c", {"cron": YEARLY, "tz": "UTC"})]).result()
    res = store.ingest([event("go", {"k": "a"}, id="e1"), event("go", {"k": "a"}, id="e2"),
                        event("go", {"k": "b"}, id="e3"), event("go", {"k": "c"}, id="e4")]).result()
    assert len(res.runs) == 3 and [s["event_id"] for s in res.skipped] == ["e2"]
    ok, bad = claim(store, fid="f", limit=2)
    at = store.now().result()
    store.checkpoint_step(ok, LEASE, StepWrite("a", "run", "completed", 0, 1, dumps(1), None,
                                               dumps({"attempt": 1}), at - 0.02, at)).result()
    finish(store, ok)
    store.finish_run(bad, status="failed", output=None, error=dumps({"name": "Boom", "message": "no"}),
                     reason="non_retriable").result()
    (held,) = claim(store, fid="f", limit=1)
    store.heartbeat({"id": "w1", "host": "h", "pid": 1, "functions": ["f"], "concurrency": 2}, LEASE).result()
    now = store.now().result()
    store.register("app", [config("f", on("go"), concurrency=[{"limit": 2, "key": None, "scope": "fn"}],
                                  idempotency="event.data.k"),
                           config("c", {"cron": YEARLY, "tz": "UTC"}), config("q", on("queue"))]).result()
    store.ingest([event("queue")]).result()  # one run in the backlog

    run = store.get_run(ok.id).result()
    assert run is not None and set(run) == every_key(ledger.RunRecord)
    assert run["error"] is None and run["output"] == "done"
    (s,) = run["steps"]
    assert set(s) == keys(ledger.StepRecord) and s["log"] == [{"attempt": 1}]
    brief = store.get_run(bad.id, with_steps=False).result()
    assert brief is not None and set(brief) == keys(ledger.RunRecord)
    assert brief["error"] == {"name": "Boom", "message": "no"}
    assert store.get_run("nope").result() is None

    runs = store.list_runs(function_id="f").result()
    assert len(runs) == 3 and all(set(r) == keys(ledger.RunRecord) for r in runs)
    page = store.list_runs(function_id="f", limit=1).result()
    nxt = store.list_runs(function_id="f", limit=5, cursor=(page[0]["created_at"], page[0]["id"])).result()
    assert [r["id"] for r in page + nxt] == [r["id"] for r in runs]
    assert [r["id"] for r in store.list_runs(status="failed").result()] == [bad.id]

    events = store.list_events(limit=100).result()
    assert events and all(set(e) == keys(ledger.EventRecord) for e in events)
    assert all(set(r) == keys(ledger.RunRef) for e in events for r in e["runs"])
    assert [e["id"] for e in store.list_events(name="queue").result()] == [events[0]["id"]]
    e2 = store.get_event("e2").result()
    assert e2 is not None and set(e2) == keys(ledger.EventDetail) and e2["runs"] == []
    (skip,) = e2["skipped"]
    assert set(skip) == keys(ledger.EventSkip) and skip["function_id"] == "f"
    assert store.get_event("nope").result() is None

    (sk,) = store.list_skips(function_id="f").result()
    assert set(sk) == keys(ledger.SkipRecord) and sk["event_id"] == "e2"
    assert store.list_skips(function_id="c").result() == []

    (slot,) = store.list_slots().result()
    assert set(slot) == keys(ledger.SlotRecord) and slot["run_id"] == held.id

    functions = store.list_functions(now - 3600).result()
    assert [f["id"] for f in functions] == ["c", "f", "q"]
    for f in functions:
        assert set(f) == keys(ledger.FunctionRecord)
        assert all(set(c) == keys(ledger.CronRecord) for c in f["cron"])
    f = functions[1]
    assert f["last_run"] is not None and set(f["last_run"]) == keys(ledger.RunBrief)
    assert f["stats_24h"] == {"completed": 1, "failed": 1, "running": 1}
    overview = store.functions_overview(now - 3600).result()
    assert all(set(o) == keys(ledger.FunctionOverview) for o in overview)
    assert [o["last_cron_run"] for o in overview] == [None, None, None]  # "c" has not fired
    assert store.get_function("f").result() == store.registry().result()["f"]

    blob = store.get_status("global", "f").result()
    assert blob is not None and set(blob) == keys(ledger.StatusBlob)
    assert store.get_status("global", "q").result() is None

    now = store.now().result()  # after the backlog's run was created
    h = store.health(now, LEASE).result()
    assert set(h) == keys(ledger.HealthSnapshot)
    (b,) = h["backlog"]
    assert set(b) == keys(ledger.BacklogEntry) and b["function_id"] == "q" and b["n"] == 1
    (w,) = h["workers"]
    assert set(w) == keys(ledger.WorkerRecord) and w["id"] == "w1"
    assert h["stale_leases"] == 0 and h["counts"] == {"completed": 1, "failed": 1, "running": 1, "queued": 1}

    m = store.metrics(now, LEASE).result()
    assert set(m) == keys(ledger.MetricsSnapshot)
    assert all(set(r) == keys(ledger.RunCount) for r in m["runs"])
    assert {(r["function_id"], r["status"]): r["n"] for r in m["runs"]} == {
        ("f", "completed"): 1, ("f", "failed"): 1, ("f", "running"): 1, ("q", "queued"): 1}
    assert m["dead_letters"] == {"f": 1} and m["workers"] == 1 and m["stale_leases"] == 0
    assert set(m["steps"]["f"]) == keys(ledger.StepHistogram) and sum(m["steps"]["f"]["buckets"]) == 1
    assert m["step_retries"] == {}
    (br,) = m["backlog"]
    assert set(br) == keys(ledger.BacklogRow) and br["function_id"] == "q"

    buckets = store.finished_per_minute(now - 3600).result()
    assert all(set(x) == keys(ledger.FinishedBucket) for x in buckets)
    assert sorted((x["status"], x["n"]) for x in buckets) == [("completed", 1), ("failed", 1)]

    originals = store.replay_candidates(function_id="f", status="failed", since=None, until=None, limit=10).result()
    assert [r["id"] for r in originals] == [bad.id] and set(originals[0]) == keys(ledger.RunRecord)


def test_both_stores_declare_every_verb_of_the_protocols(store: StoreBackend) -> None:
    from durably.store import base

    for proto in (base.Store, base.Wakeups, base.Ledger):
        members = [n for n in vars(proto) if not n.startswith("_")] + list(proto.__annotations__)
        missing = [n for n in members if not hasattr(store, n)]
        assert missing == [], f"{type(store).__name__} lacks {proto.__name__}: {missing}"
    assert store.dialect in ("sqlite", "postgres") and store.env == ENV and store.status_sink is None
    assert store.ping().result() is True
    assert isinstance(store.now().result(), float)
    assert abs(store.now().result() - time.time()) < 60  # the database's clock, near this host's


def test_wake_and_handoff_reach_this_process(store: StoreBackend) -> None:
    import threading

    woke = threading.Event()
    unsubscribe = store.subscribe(woke.set)
    try:
        store.wake()
        assert woke.wait(10)
        got: list[list[ClaimedRun]] = []
        delivered = threading.Event()

        def deliver(runs: list[ClaimedRun]) -> None:
            got.append(runs)
            delivered.set()

        remove = store.handoff("idle", dumps(["f"]), LEASE, lambda: 1, deliver)
        try:
            (rid,) = send(store)  # the ingest that made the run ready claims it for the idle worker
            assert delivered.wait(10)
        finally:
            remove()
        assert [r.id for r in got[0]] == [rid]
        assert get(store, rid)["lease_owner"] == "idle"
    finally:
        unsubscribe()
