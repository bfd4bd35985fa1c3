"""Fixtures. ``store_url`` is parametrized over every store: SQLite (a fresh file) and
PostgreSQL (a fresh, migrated schema named on the URL; see tests/pg.py). In CI (``CI=true``) an
unreachable PostgreSQL or Redis is an error, never a skip."""

from __future__ import annotations

import os

import pytest

from tests.helpers import make_app

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_DSN = os.environ.get("DURABLY_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("DURABLY_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


def _stores() -> list[str]:
    out = ["sqlite"]
    try:
        import durably.store.postgres  # noqa: F401
        out.append("postgres")
    except ImportError:
        pass
    return out


@pytest.fixture(params=_stores())
def store_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/durably.db"
        return
    yield from _pg_url(request)


@pytest.fixture(scope="session")
def pg_schemas():
    """Fresh, migrated PostgreSQL schemas, one per test (see tests/pg.py)."""
    from tests.pg import SchemaPool

    try:
        pool = SchemaPool(PG_DSN)
    except Exception as exc:  # noqa: BLE001
        if CI:
            pytest.fail(f"PostgreSQL at {PG_DSN} is unreachable in CI: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    yield pool
    pool.close()


def _pg_url(request):
    """A fresh schema per test, named on the URL (``?schema=``) so that every way a test
    opens the store (an App, the CLI in a subprocess, a worker process) lands in it."""
    from tests.pg import schema_url

    pool = request.getfixturevalue("pg_schemas")
    schema = pool.take()
    try:
        yield schema_url(PG_DSN, schema)
    finally:
        pool.give_back(schema)


@pytest.fixture
def pg_url(request):
    """A PostgreSQL store URL (fresh migrated schema) for PostgreSQL-only tests."""
    yield from _pg_url(request)


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path}/durably.db"


@pytest.fixture
def app_factory(store_url):
    apps = []

    def factory(name: str = "test", **settings):
        app = make_app(store_url, name, **settings)
        apps.append(app)
        return app

    yield factory
    for a in apps:
        a.close()
