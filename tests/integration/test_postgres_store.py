"""What is PostgreSQL's own in the PostgreSQL store: parity with SQLite (queries, schema,
verbs), the server clock, schemas and migrations, SKIP LOCKED claims across connections,
LISTEN/NOTIFY wake-ups, lost connections, locks on read-then-write decisions."""

from __future__ import annotations

import inspect
import time
import re
import sqlite3
import threading
import uuid

import psycopg
import pytest

import durably
from durably.config import Settings
from durably.errors import ConfigError, StoreUnavailable
from durably.core.ids import new_id
from durably.core.jsonutil import dumps
from durably.core.records import NewRun
from durably.runtime import open_store
from durably.store.postgres import PostgresStore, Row, split_url
from durably.store.queries import load, migrations, to_pyformat
from durably.store.sqlite import SqliteStore
from tests.conftest import PG_DSN
from tests.helpers import cli_env, make_app, run_cli, running_worker, wait_for, wait_run
from tests.pg import drop_schema, new_schema_name, schema_url

PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def _params(sql: str) -> set[str]:
    return set(PARAM.findall(re.sub(r"'(?:[^']|'')*'", "", sql)))


# --- parity with SQLite (no database needed) ---------------------------------------------------


def test_every_sqlite_query_exists_in_postgres_with_the_same_parameters():
    lite, pg = load("sqlite"), load("postgres")
    assert sorted(set(lite) - set(pg)) == [], "queries missing from sql/postgres/queries.sql"
    assert sorted(set(pg) - set(lite)) == [], "queries only in sql/postgres/queries.sql"
    for name in lite:
        assert _params(lite[name]) == _params(pg[name]), f"query {name}: parameters differ"


def test_both_dialects_have_the_same_migration_versions():
    assert [v for v, _n, _s in migrations("sqlite")] == [v for v, _n, _s in migrations("postgres")]


def test_both_stores_offer_the_same_verbs_with_the_same_signatures():
    def verbs(cls):
        return {n: inspect.signature(f) for n, f in vars(cls).items()
                if callable(f) and not n.startswith("_")}

    lite, pg = verbs(SqliteStore), verbs(PostgresStore)
    assert sorted(set(lite) - set(pg)) == []
    for name, sig in lite.items():
        assert list(sig.parameters) == list(pg[name].parameters), f"verb {name}: signature differs"


def test_pyformat_rewrites_names_but_not_literals_or_casts():
    sql = "SELECT :a::text, ':b %', x % 2 FROM t WHERE c = :c_1 AND d = CAST(:a AS int)"
    assert to_pyformat(sql) == ("SELECT %(a)s::text, ':b %%', x %% 2 FROM t WHERE c = %(c_1)s "
                                "AND d = CAST(%(a)s AS int)")


def test_rows_read_by_name_by_index_and_as_dict():
    r = Row(("a", 2), {"id": 0, "n": 1})
    assert r["id"] == "a" and r[1] == 2 and dict(r) == {"id": "a", "n": 2} and list(r) == ["a", 2]


def test_schema_comes_from_the_url_or_the_setting():
    assert split_url("postgresql://u@h/db?schema=s1&sslmode=disable")[1] == "s1"
    assert "schema" not in split_url("postgresql://u@h/db?schema=s1&sslmode=disable")[0]
    assert split_url("postgresql://u@h/db", "s2")[1] == "s2"
    assert split_url("postgres://u@h/db")[1] == "durably"
    with pytest.raises(ConfigError, match="invalid schema name"):
        split_url("postgresql://u@h/db?schema=bad-name;drop")


def test_schema_parity_with_sqlite(pg_url, tmp_path):
    lite = SqliteStore(f"sqlite:///{tmp_path}/p.db")
    lite.migrate().result()
    lite.close()
    conn = sqlite3.connect(f"{tmp_path}/p.db")
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'durably%'")]
    lite_cols = {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")} for t in tables}
    lite_idx = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    dsn, schema = split_url(pg_url)
    with psycopg.connect(dsn) as pg:
        rows = pg.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s",
                          [schema]).fetchall()
        pg_idx = {r[0] for r in pg.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s AND "
                                           "indexname NOT LIKE '%%_pkey'", [schema])}
    pg_cols: dict[str, set] = {}
    for t, c in rows:
        pg_cols.setdefault(t, set()).add(c)
    assert pg_cols == lite_cols
    assert pg_idx == lite_idx


# --- the store on a real PostgreSQL --------------------------------------------------------------


@pytest.fixture
def pg_apps(pg_url):
    """Apps on one PostgreSQL schema, each with its own store (its own connections)."""
    apps = []

    def factory(name: str = "test", **settings):
        app = make_app(pg_url, name, **settings)
        apps.append(app)
        return app

    yield factory
    for a in apps:
        a.close()


@pytest.fixture
def empty_schema():
    """A schema name nobody has created yet (dropped afterwards)."""
    schema = new_schema_name()
    yield schema
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        drop_schema(conn, schema)


def test_migrate_creates_the_schema_and_tracks_versions(empty_schema):
    url = schema_url(PG_DSN, empty_schema)
    env = cli_env(url)
    first = run_cli(["migrate"], env)
    versions = [v for v, _n, _s in migrations("postgres")]
    assert first.returncode == 0, first.stderr
    assert "applied migrations: " + ", ".join(map(str, versions)) in first.stdout
    second = run_cli(["migrate"], env)
    assert second.returncode == 0 and "up to date" in second.stdout
    with psycopg.connect(PG_DSN) as conn:
        assert conn.execute(f'SELECT version FROM "{empty_schema}".durably_migrations ORDER BY version').fetchall() == [
            (v,) for v in versions]
        assert conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' "
                            "AND table_name = 'durably_runs'").fetchone()[0] == 0


def test_concurrent_migrations_apply_once(empty_schema):
    url = schema_url(PG_DSN, empty_schema)
    stores = [PostgresStore(url, env="test") for _ in range(4)]
    try:
        futs = [s.migrate() for s in stores]
        applied = [f.result() for f in futs]
    finally:
        for s in stores:
            s.close()
    assert sorted(applied) == [[], [], [], [v for v, _n, _s in migrations("postgres")]]


def test_durably_schema_setting_is_used(empty_schema):
    s = Settings.load({"DURABLY_DATABASE_URL": PG_DSN, "DURABLY_SCHEMA": empty_schema, "DURABLY_ENV": "test"})
    store = open_store(s)
    try:
        assert store.schema == empty_schema
    finally:
        store.close()
    with psycopg.connect(PG_DSN) as conn:
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [empty_schema]).fetchone()


def test_the_store_clock_is_the_database_clock(pg_url):
    store = PostgresStore(pg_url, env="test")
    try:
        dsn, _ = split_url(pg_url)
        with psycopg.connect(dsn) as conn:
            before = float(conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()[0])
        now = store.now().result()
        with psycopg.connect(dsn) as conn:
            after = float(conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()[0])
        assert before <= now <= after
    finally:
        store.close()


def test_unreachable_postgres_is_a_one_line_error(tmp_path):
    with pytest.raises(StoreUnavailable, match="cannot open the PostgreSQL store"):
        PostgresStore("postgresql://postgres@127.0.0.1:1/test?connect_timeout=2", env="test")
    r = run_cli(["runs"], cli_env("postgresql://nobody:secret@127.0.0.1:1/test?connect_timeout=2"))
    assert r.returncode == 1
    assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    assert "secret" not in r.stderr  # the password never shows


def _queued_runs(store, n: int, function_id: str = "f") -> list[str]:
    runs = [NewRun(id=new_id(), function_id=function_id, event={"name": "x", "id": new_id(), "data": {}})
            for _ in range(n)]
    store.create_runs(runs).result()
    return [r.id for r in runs]


def test_workers_on_separate_connections_never_claim_one_run(pg_url):
    stores = [PostgresStore(pg_url, env="test") for _ in range(4)]
    try:
        ids = set(_queued_runs(stores[0], 300))
        claimed: list[list[str]] = [[] for _ in stores]
        barrier = threading.Barrier(len(stores))

        def claimer(i: int) -> None:
            barrier.wait()
            while True:
                runs, _next, _now = stores[i].claim_runs(f"w{i}", dumps(["f"]), 7, 30.0).result()
                if not runs:
                    return
                claimed[i].extend(r.id for r in runs)

        threads = [threading.Thread(target=claimer, args=(i,)) for i in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        every = [rid for c in claimed for rid in c]
        assert len(every) == len(set(every)) == len(ids) and set(every) == ids
        assert sum(1 for c in claimed if c) >= 2  # they really raced
    finally:
        for s in stores:
            s.close()


def test_a_commit_wakes_a_subscriber_in_another_process_through_notify(pg_url):
    a, b = PostgresStore(pg_url, env="test"), PostgresStore(pg_url, env="test")
    other_env = PostgresStore(pg_url, env="elsewhere")
    woke, woke_other = threading.Event(), threading.Event()
    try:
        a.subscribe(woke.set)
        other_env.subscribe(woke_other.set)
        woke.clear()
        woke_other.clear()
        _queued_runs(b, 1)  # committed by another store (its own connections)
        assert woke.wait(10)
        assert not woke_other.is_set()  # the channel is per env (and schema)
    finally:
        for s in (a, b, other_env):
            s.close()


def test_an_idle_worker_starts_work_sent_from_another_process(pg_apps, pg_url):
    app = pg_apps()

    @app.function(id="ping", trigger=durably.on_event("ping"))
    async def ping(ctx):
        return "pong"

    with running_worker(app, poll_interval=60):  # no polling: only NOTIFY can wake it
        r = run_cli(["send", "ping"], cli_env(pg_url))
        assert r.returncode == 0, r.stderr
        import json

        rid = json.loads(r.stdout)["runs"][0]
        assert wait_run(app, rid, timeout=10)["status"] == "completed"


def test_a_lost_write_connection_is_replaced(pg_url):
    store = PostgresStore(pg_url, env="test")
    try:
        _queued_runs(store, 1)
        pid = store._wconn.backend_pid
        dsn, _ = split_url(pg_url)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])
        ids = _queued_runs(store, 2)  # retried on a new connection
        assert store._wconn.backend_pid != pid
        assert store.get_run(ids[1]).result()["status"] == "queued"
    finally:
        store.close()


def test_a_lost_listen_connection_reconnects_and_wakes(pg_url):
    a, b = PostgresStore(pg_url, env="test"), PostgresStore(pg_url, env="test")
    woke = threading.Event()
    try:
        a.subscribe(woke.set)
        wait_for(lambda: a._listen_conn is not None, 10, what="LISTEN connection")
        pid = a._listen_conn.info.backend_pid
        dsn, _ = split_url(pg_url)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])
        wait_for(lambda: a._listen_conn is not None and a._listen_conn.info.backend_pid != pid, 15,
                 what="a new LISTEN connection")
        woke.clear()
        _queued_runs(b, 1)
        assert woke.wait(10)
    finally:
        a.close()
        b.close()


def _send_at_once(apps, make_event, times: int) -> list[list[str]]:
    """Every app sends ``times`` events, all apps released together: the run ids each send created."""
    barrier = threading.Barrier(len(apps))
    created: list[list[str]] = []

    def sender(app) -> None:
        app.register()
        barrier.wait()
        for _ in range(times):
            created.append(app.send(make_event()).runs)

    threads = [threading.Thread(target=sender, args=(a,)) for a in apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return created


def test_rate_limit_holds_across_concurrent_transactions(pg_apps):
    """Processes admitting events at once cannot both pass on the same GCRA state."""
    apps = [pg_apps(f"rl{i}") for i in range(4)]
    for app in apps:
        @app.function(id="limited", trigger=durably.on_event("rl"), rate_limit=durably.RateLimit(limit=3, period="1h"))
        async def limited(ctx):
            return None

    created = _send_at_once(apps, lambda: durably.Event("rl"), 5)
    assert sum(len(runs) for runs in created) == 3


def test_singleton_holds_across_concurrent_transactions(pg_apps):
    apps = [pg_apps(f"s{i}") for i in range(4)]
    for app in apps:
        @app.function(id="single", trigger=durably.on_event("one"), singleton=durably.Singleton(mode="skip"))
        async def single(ctx):
            return None

    created = _send_at_once(apps, lambda: durably.Event("one"), 3)
    assert sum(len(runs) for runs in created) == 1


def test_debounce_takes_every_event_across_concurrent_transactions(pg_apps):
    apps = [pg_apps(f"d{i}") for i in range(4)]
    for app in apps:
        @app.function(id="deb", trigger=durably.on_event("deb"), debounce=durably.Debounce(period="1h"))
        async def deb(ctx):
            return None

    created = _send_at_once(apps, lambda: durably.Event("deb", {"n": uuid.uuid4().hex}), 5)
    assert len({rid for runs in created for rid in runs}) == 1  # twenty concurrent events, one debounced run


def test_a_postgres_outage_mid_run_is_ridden_out(pg_url):
    """PostgreSQL unreachable for a few seconds while a run is between two steps: the
    writer reconnects, the worker and its LISTEN connection come back, the run completes."""
    from tests.tcp_proxy import TcpProxy

    proxy = TcpProxy(5432)
    proxy.start()
    url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    assert url != pg_url
    app = make_app(url, "outage")
    gate = threading.Event()
    try:
        @app.function(id="two", trigger=durably.on_event("two"))
        async def two(ctx):
            await ctx.step.run("first", lambda: gate.wait(20))
            return await ctx.step.run("second", lambda: "done")

        with running_worker(app):
            rid = app.send(durably.Event("two")).runs[0]
            wait_for(lambda: app.store.get_run(rid).result()["status"] == "running", 10, what="the run to start")
            proxy.cut()
            gate.set()  # the first step ends while the store is unreachable: its checkpoint waits
            time.sleep(3)  # an outage of a few seconds (the point of the test, not a synchronization)
            proxy.start()
            assert wait_run(app, rid, timeout=30)["output"] == "done"
            # And the worker goes on taking new work.
            rid2 = app.send(durably.Event("two")).runs[0]
            assert wait_run(app, rid2, timeout=30)["status"] == "completed"
    finally:
        app.close()
        proxy.cut()


def test_a_lost_read_connection_is_replaced(pg_url):
    store = PostgresStore(pg_url, env="test", readers=1)
    try:
        assert store.ping().result()
        dsn, schema = split_url(pg_url)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s "
                         "AND pid <> %s AND pid <> pg_backend_pid()", [f"durably {schema}", store._wconn.backend_pid])
        assert store.ping().result()  # the pooled connection was dead: the read ran again on a new one
    finally:
        store.close()
