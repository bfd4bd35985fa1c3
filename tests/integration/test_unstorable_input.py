"""A value the store cannot hold is bad input, never an outage (DESIGN §3): on both stores the
store itself tells such a value (a NUL character, text that is not valid Unicode, a number out
of range, a value too large for an index) from an outage and raises ``InvalidInput``, writes
nothing of the operation it came with, and goes on serving the others."""

from __future__ import annotations

import concurrent.futures as cf
import os

import pytest

from durably.errors import InvalidInput, StoreUnavailable, UnstorableInput


def _event(id: str = "ok", name: str = "e", ts: int = 1_700_000_000_000, data: dict | None = None) -> dict:
    return {"name": name, "id": id, "ts": ts, "data": data or {}}


@pytest.fixture
def store(app_factory):
    app = app_factory()
    return app.store


@pytest.mark.parametrize("bad,sqlite_holds", [
    pytest.param(_event(id="a\x00b"), True, id="nul-id"),
    pytest.param(_event(name="a\x00b"), True, id="nul-name"),
    pytest.param(_event(id="\udcff"), False, id="surrogate-id"),
    pytest.param(_event(ts=10**30), False, id="ts-out-of-range"),
    pytest.param(_event(ts=2**63), False, id="ts-past-bigint"),
])
def test_a_write_the_store_cannot_hold_is_invalid_input_and_writes_nothing(store, bad, sqlite_holds):
    if store.dialect == "sqlite" and sqlite_holds:  # SQLite text holds NUL (events.py refuses it first)
        assert store.ingest([bad]).result(10).ids == [bad["id"]]
        return
    with pytest.raises(InvalidInput) as exc:
        store.ingest([_event(id="first"), bad]).result(10)
    assert not isinstance(exc.value, StoreUnavailable)
    assert exc.value.code in ("invalid_input", "not_serializable")  # the JSON text of an event is checked first
    assert "\n" not in str(exc.value)
    assert store.get_event("first").result() is None  # the whole operation rolled back
    assert store.ingest([_event(id="after")]).result(10).ids == ["after"]  # the store still serves


def test_an_id_too_large_for_an_index_is_invalid_input(store):
    # PostgreSQL refuses an index entry over ~2.7 kB (54000); SQLite holds it.
    huge = os.urandom(20_000).hex()  # incompressible: PostgreSQL compresses index entries
    try:
        res = store.ingest([_event(id=huge)]).result(10)
    except InvalidInput as exc:
        assert store.dialect == "postgres" and "too large" in str(exc)
    else:
        assert store.dialect == "sqlite" and res.ids == [huge]


def test_a_bad_operation_fails_alone_in_its_group_commit(store):
    # Operations queued together share one transaction: the bad one is rolled back alone.
    futs = [store.ingest([_event(id=f"good-{i}")]) for i in range(5)]
    futs.insert(2, store.ingest([_event(id="bad", ts=2**63)]))  # JSON holds it, bigint does not
    cf.wait(futs, 10)
    errors = [f.exception() for f in futs]
    assert isinstance(errors[2], UnstorableInput) and "out of range" in str(errors[2])
    assert errors.count(None) == 5
    for i in range(5):
        assert store.get_event(f"good-{i}").result() is not None


NUL = True  # SQLite holds NUL characters: a filter with one matches nothing there


@pytest.mark.parametrize("read,args,kwargs,sqlite_holds", [
    ("list_runs", (), {"function_id": "a\x00b"}, NUL),
    ("list_runs", (), {"tenant": "\x00"}, NUL),
    ("list_runs", (), {"cursor": (1.0, "a\x00")}, NUL),
    ("list_runs", (), {"function_id": "\udcff"}, False),
    ("list_runs", (), {"limit": 10**30}, False),
    ("list_events", (), {"name": "\x00"}, NUL),
    ("get_run", ("\x00",), {}, NUL),
    ("get_run", ("\ud800",), {}, False),
    ("get_event", ("a\x00",), {}, NUL),
    ("get_status", ("\x00", "f"), {}, NUL),
])
def test_a_read_the_store_cannot_take_is_invalid_input(store, read, args, kwargs, sqlite_holds):
    # Neither store calls it an outage. (The API, the dashboard and the CLI refuse these values
    # before they reach a store, the same way on both.)
    fut = getattr(store, read)(*args, **kwargs)
    if store.dialect == "sqlite" and sqlite_holds:
        assert fut.result(10) in (None, [])
    else:
        with pytest.raises(UnstorableInput) as exc:
            fut.result(10)
        assert "cannot hold this input" in str(exc.value) and "\n" not in str(exc.value)
    assert store.list_runs(limit=1).result(10) == []  # and the store still serves


def test_outages_stay_outages():
    import sqlite3

    import psycopg
    from psycopg import errors as pgerr

    from durably.store import postgres, sqlite

    assert postgres.unstorable(psycopg.OperationalError("connection refused")) is None
    assert postgres.unstorable(pgerr.AdminShutdown()) is None
    assert postgres.unstorable(pgerr.SerializationFailure()) is None
    assert postgres.unstorable(pgerr.UndefinedTable()) is None
    assert isinstance(postgres._translate(psycopg.OperationalError("server closed")), StoreUnavailable)
    assert isinstance(postgres._translate(pgerr.NumericValueOutOfRange("bigint out of range")), UnstorableInput)
    assert isinstance(postgres._translate(pgerr.CharacterNotInRepertoire("NUL")), UnstorableInput)
    assert isinstance(postgres._translate(pgerr.ProgramLimitExceeded("index row size")), UnstorableInput)
    assert sqlite.unstorable(sqlite3.OperationalError("database is locked")) is None
    assert isinstance(sqlite._translate(sqlite3.OperationalError("disk I/O error")), StoreUnavailable)
    assert isinstance(sqlite._translate(OverflowError("Python int too large")), UnstorableInput)


def test_a_key_too_large_for_an_index_is_bad_input_not_an_outage(app_factory):
    import durably

    app = app_factory()

    @app.function(id="k", trigger=durably.on_event("k"), idempotency="event.data.c")
    async def k(ctx):
        return 1

    huge = os.urandom(20_000).hex()  # an idempotency key PostgreSQL cannot index
    try:
        res = app.send(durably.Event("k", {"c": huge}, id="huge"))
    except InvalidInput as exc:
        assert app.store.dialect == "postgres" and "too large" in str(exc)
        assert app.store.get_event("huge").result() is None  # nothing of it was written
    else:
        assert app.store.dialect == "sqlite" and len(res.runs) == 1
    assert len(app.send(durably.Event("k", {"c": "small"})).runs) == 1
