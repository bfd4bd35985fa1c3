"""app.send(..., connection=conn): events and their runs in the caller's transaction, on both
stores, with psycopg, sqlite3 and SQLAlchemy connections (sync and async)."""

from __future__ import annotations

import asyncio
import sqlite3

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import durably
from durably.errors import InvalidInput
from tests.helpers import make_app, running_worker, wait_run


def dsn(store_url: str) -> str:
    return store_url.split("?")[0]  # the store's database; ?schema= is durably's own


def connect(store_url: str):
    if store_url.startswith("sqlite"):
        return sqlite3.connect(store_url[len("sqlite:///"):])
    return psycopg.connect(dsn(store_url))


def sa_url(store_url: str, driver: str = "psycopg") -> str:
    if store_url.startswith("sqlite"):
        return store_url
    return dsn(store_url).replace("postgresql://", f"postgresql+{driver}://", 1)


def txn_app(store_url: str) -> durably.App:
    app = make_app(store_url, "txn", env="test")

    @app.function(id="recount", trigger=durably.on_event("inbox.counts.dirty"))
    async def recount(ctx):
        return await ctx.step.run("count", lambda: ctx.event.data["client"])

    @app.function(id="ping", trigger=durably.on_event("ping"))
    async def ping(ctx):
        return "pong"

    return app


def make_messages(conn) -> None:
    if isinstance(conn, sqlite3.Connection):
        conn.execute("CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, body TEXT)")
        conn.commit()
    else:
        conn.execute("CREATE TEMP TABLE messages (id serial PRIMARY KEY, body text)")
        conn.commit()


def count_messages(conn) -> int:
    return conn.execute("SELECT count(*) FROM messages").fetchone()[0]


def test_rollback_leaves_nothing_and_commit_starts_the_run(store_url):
    app = txn_app(store_url)
    conn = connect(store_url)
    make_messages(conn)
    with running_worker(app):
        conn.execute("INSERT INTO messages (body) VALUES ('hello')")
        sent = app.send(durably.Event("inbox.counts.dirty", {"client": "c1"}, id="e-rolled-back"), connection=conn)
        (rid,) = sent.runs
        assert app.store.get_run(rid).result() is None  # not visible outside the transaction
        if not store_url.startswith("sqlite"):  # (SQLite's single writer waits for this transaction)
            # a worker that is polling and claiming meanwhile does not see it either
            assert app.result(app.send(durably.Event("ping")).runs[0], timeout=20).output == "pong"
            assert app.store.get_run(rid).result() is None
        conn.rollback()
        assert count_messages(conn) == 0
        assert app.store.get_run(rid).result() is None and app.store.get_event("e-rolled-back").result() is None

        conn.execute("INSERT INTO messages (body) VALUES ('hello')")
        path = conn.execute("SHOW search_path").fetchone()[0] if isinstance(conn, psycopg.Connection) else None
        (rid,) = app.send(durably.Event("inbox.counts.dirty", {"client": "c2"}), connection=conn).runs
        if path is not None:
            assert conn.execute("SHOW search_path").fetchone()[0] == path  # the caller's, as it was
        conn.commit()
        assert app.result(rid, timeout=20).output == "c2"  # woken by the commit
    assert count_messages(conn) == 1
    conn.close()
    app.close()


def test_sqlalchemy_connection_and_session(store_url):
    app = txn_app(store_url)
    engine = sa.create_engine(sa_url(store_url))
    with running_worker(app):
        with engine.connect() as c:
            (rolled,) = app.send(durably.Event("inbox.counts.dirty", {"client": "r"}), connection=c).runs
            c.rollback()
        with engine.begin() as c:
            (one,) = app.send(durably.Event("inbox.counts.dirty", {"client": "conn"}), connection=c).runs
        with Session(engine) as session, session.begin():
            (two,) = app.send(durably.Event("inbox.counts.dirty", {"client": "session"}), connection=session).runs
        assert app.result(one, timeout=20).output == "conn"
        assert app.result(two, timeout=20).output == "session"
        assert app.store.get_run(rolled).result() is None
    engine.dispose()
    app.close()


def test_another_database_or_no_transaction_is_refused(store_url, tmp_path):
    app = txn_app(store_url)
    if store_url.startswith("sqlite"):
        other = sqlite3.connect(str(tmp_path / "other.db"))
        auto = sqlite3.connect(store_url[len("sqlite:///"):], isolation_level=None)
    else:
        other = psycopg.connect(dsn(store_url).rsplit("/", 1)[0] + "/postgres")
        auto = psycopg.connect(dsn(store_url), autocommit=True)
    with pytest.raises(InvalidInput, match="not to the store|of another server"):
        app.send(durably.Event("ping"), connection=other)
    with pytest.raises(InvalidInput, match="autocommit"):
        app.send(durably.Event("ping"), connection=auto)
    with pytest.raises(InvalidInput, match="connection="):
        app.send(durably.Event("ping"), connection=object())
    other.close()
    auto.close()
    assert app.store.list_runs().result() == []
    app.close()


def test_send_async_in_an_async_transaction(store_url):
    app = txn_app(store_url)
    if store_url.startswith("sqlite"):
        with pytest.raises(InvalidInput, match="sqlite3.Connection"):
            asyncio.run(app.send_async(durably.Event("ping"), connection=sqlite3.connect(":memory:")))
        app.close()
        return

    async def main() -> tuple[str, str, str]:
        async with await psycopg.AsyncConnection.connect(dsn(store_url)) as conn:
            (rolled,) = (await app.send_async(durably.Event("inbox.counts.dirty", {"client": "r"}),
                                              connection=conn)).runs
            await conn.rollback()
            async with conn.transaction():
                (kept,) = (await app.send_async(durably.Event("inbox.counts.dirty", {"client": "a"}),
                                                connection=conn)).runs
        engine = create_async_engine(sa_url(store_url))
        async with AsyncSession(engine) as session, session.begin():
            (orm,) = (await app.send_async(durably.Event("inbox.counts.dirty", {"client": "orm"}),
                                           connection=session)).runs
        await engine.dispose()
        return rolled, kept, orm

    with running_worker(app):
        rolled, kept, orm = asyncio.run(main())
        assert app.result(kept, timeout=20).output == "a"
        assert app.result(orm, timeout=20).output == "orm"
        assert app.store.get_run(rolled).result() is None
    app.close()


def test_a_first_send_registers_the_functions_in_the_same_transaction(store_url):
    app = txn_app(store_url)
    app.store  # noqa: B018 - the store exists (durably dev or migrate made it); nothing is registered yet
    conn = connect(store_url)
    make_messages(conn)
    conn.execute("INSERT INTO messages (body) VALUES ('first')")  # the caller holds its write lock (SQLite)
    (rid,) = app.send(durably.Event("inbox.counts.dirty", {"client": "first"}), connection=conn).runs
    conn.commit()
    assert app.store.get_function("recount").result() is not None
    with running_worker(app):
        assert app.result(rid, timeout=20).output == "first"
    conn.close()
    app.close()
