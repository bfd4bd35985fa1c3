"""Fixtures. ``store_url`` is parametrized over every store: SQLite (a fresh file) and
PostgreSQL (a fresh schema) once the PostgreSQL store exists. In CI (``CI=true``) an
unreachable PostgreSQL or Redis is an error, never a skip."""

from __future__ import annotations

import os
import uuid

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


def _pg_url(request):
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        conn = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
    except Exception as exc:  # noqa: BLE001
        if CI:
            pytest.fail(f"PostgreSQL at {PG_DSN} is unreachable in CI: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    sep = "&" if "?" in PG_DSN else "?"
    try:
        yield f"{PG_DSN}{sep}options=-csearch_path%3D{schema}#schema={schema}"
    finally:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.close()


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
