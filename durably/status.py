"""Status blobs: one small JSON document per (tenant, function), written on run start and end.

The store sink writes them in the same transaction as the run's state change. The Redis
sink (``DURABLY_REDIS_URL``) writes them to ``durably:{env}:job:v1:{tenant}:{function}``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import orjson

from .core.blobs import blob, iso, redis_key

log = logging.getLogger("durably.status")


class RedisStatusSink:
    """Writes status blobs to Redis (``DURABLY_REDIS_URL``) without ever holding up a run.

    ``put`` only records the blob in a small map of pending writes (the latest blob per
    key: an older one is never worth writing once a newer exists) and returns. A thread
    writes the map in one pipelined round trip. When Redis is unreachable the writes stay
    pending: the failure is logged (once per outage, not once per write), counted
    (``failures``, and ``on_error`` for metrics), and retried on the next ``put`` and every
    ``retry_interval`` seconds, so the blobs catch up as soon as Redis is back. The map is
    bounded: past ``max_pending`` keys the oldest pending key is dropped (``dropped``).
    """

    def __init__(self, url: str, *, env: str, template: str, on_error: Callable[[BaseException], None] | None = None,
                 max_pending: int = 10_000, retry_interval: float = 1.0, timeout: float = 1.0, client: Any = None):
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self.url, self.env, self.template = url, env, template
        self.on_error = on_error
        self.max_pending = max_pending
        self.retry_interval = retry_interval
        if client is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # No retries inside the client: a failed write stays pending and is retried by
            # this sink's thread, which never blocks a run.
            client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                          retry=Retry(NoBackoff(), 0), retry_on_timeout=False)
        self.client = client
        self.written = 0
        self.failures = 0
        self.dropped = 0
        self._pending: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closing = False
        self._down_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="durably-redis-status", daemon=True)
        self._thread.start()

    def key(self, tenant: str, function_id: str) -> str:
        return redis_key(self.template, self.env, tenant or "global", function_id)

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def healthy(self) -> bool:
        return self._down_since is None

    def put(self, tenant: str, function_id: str, value: dict) -> None:
        """Queue the blob of (tenant, function); returns at once."""
        key = self.key(tenant, function_id)
        data = orjson.dumps(value)
        with self._lock:
            if key in self._pending:
                del self._pending[key]  # re-insert: the map's order is the order of last writes
            elif len(self._pending) >= self.max_pending:
                oldest = next(iter(self._pending))
                del self._pending[oldest]
                self.dropped += 1
            self._pending[key] = data
            self._idle.clear()
        self._wake.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every pending blob is written (True) or ``timeout`` passes (False)."""
        self._wake.set()
        return self._idle.wait(timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Write what is pending (for up to ``timeout`` seconds), then stop."""
        self.flush(timeout)
        self._closing = True
        self._wake.set()
        self._thread.join(timeout=timeout + 1.0)
        try:
            self.client.close()
        except Exception:  # noqa: BLE001
            pass

    def _run(self) -> None:
        while not self._closing:
            self._wake.wait(self.retry_interval if self._pending else None)
            self._wake.clear()
            if self._closing:
                return
            with self._lock:
                batch = dict(self._pending)
                if not batch:
                    self._idle.set()
            if not batch:
                continue
            try:
                pipe = self.client.pipeline(transaction=False)
                for k, v in batch.items():
                    pipe.set(k, v)
                pipe.execute()
            except Exception as exc:  # noqa: BLE001 - Redis down: keep the blobs, try again later
                self.failures += 1
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    log.warning("status blobs: Redis at %s is unreachable (%s); %d blob(s) pending, retrying",
                                _safe_redis_url(self.url), exc, len(batch))
                if self.on_error is not None:
                    try:
                        self.on_error(exc)
                    except Exception:  # noqa: BLE001
                        pass
                continue
            with self._lock:
                for k, v in batch.items():
                    if self._pending.get(k) is v:
                        del self._pending[k]
                if not self._pending:
                    self._idle.set()
            self.written += len(batch)
            if self._down_since is not None:
                log.warning("status blobs: Redis is back after %.1fs; %d blob(s) caught up",
                            time.monotonic() - self._down_since, len(batch))
                self._down_since = None


def _safe_redis_url(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    p = urlsplit(url)
    host = p.netloc.rsplit("@", 1)[-1]
    return urlunsplit((p.scheme, host, p.path, "", ""))


def read_redis_blob(url: str, *, env: str, template: str, tenant: str, function_id: str) -> dict | None:
    """The blob of (tenant, function) in Redis; StoreUnavailable if Redis cannot be reached."""
    import redis

    from .errors import StoreUnavailable

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        raw = client.get(redis_key(template, env, tenant or "global", function_id))
    except redis.RedisError as exc:
        raise StoreUnavailable(f"Redis at {_safe_redis_url(url)} is unreachable: {exc}") from None
    finally:
        client.close()
    return orjson.loads(raw) if raw is not None else None
