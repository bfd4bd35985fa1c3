"""Stores: where durably keeps events, runs, steps and the rest. See ``base.Store``."""

from __future__ import annotations

from ..config import Settings
from ..errors import ConfigError
from .base import ClaimedRun, IngestResult, NewRun, Skip, StepWrite, Store, WaitWrite, aw

__all__ = ["open_store", "Store", "ClaimedRun", "IngestResult", "NewRun", "Skip", "StepWrite", "WaitWrite", "aw"]


def open_store(settings: Settings, *, migrate: bool = True, clock=None):
    """Open the store that ``DURABLY_DATABASE_URL`` names (and apply migrations)."""
    url = settings.database_url
    status_in_store = not settings.redis_url
    if url.startswith("sqlite:"):
        from .sqlite import SqliteStore

        store = SqliteStore(url, env=settings.env, synchronous=settings.sqlite_synchronous,
                            status_in_store=status_in_store, **({"clock": clock} if clock else {}))
    elif url.startswith(("postgresql:", "postgres:")):
        try:
            from .postgres import PostgresStore  # type: ignore[import-not-found]
        except ImportError:
            raise ConfigError("the PostgreSQL store is not available in this build") from None
        store = PostgresStore(url, env=settings.env, schema=settings.schema_, status_in_store=status_in_store)
    else:
        raise ConfigError(f"DURABLY_DATABASE_URL {url!r}: use sqlite:///path or postgresql://...")
    if settings.redis_url:
        from ..status import RedisStatusSink

        store.status_sink = RedisStatusSink(settings.redis_url, env=settings.env, template=settings.status_key)
    if migrate:
        store.migrate().result()
    return store
