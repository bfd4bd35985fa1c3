"""Synchronous store code over an async driver, on greenlets.

The store's verbs are synchronous (they run on its writer thread). ``ingest_in_async`` runs
the same verb bodies on the caller's ``psycopg.AsyncConnection``, inside the caller's event
loop: ``run_sync`` starts the body in a greenlet, and each ``wait(awaitable)`` inside it
switches back to the loop, which awaits the awaitable and switches in again with its result.
The loop is never blocked and the body stays the one the store's own transactions run.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from ..errors import ConfigError


def _greenlet() -> Any:
    try:
        import greenlet  # type: ignore[import-untyped]  # no stubs published
    except ImportError:
        raise ConfigError("send_async(connection=...) needs the greenlet package: pip install greenlet") from None
    return greenlet


async def run_sync(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, where ``fn`` may call ``wait(awaitable)``, awaited on this loop."""
    gl = _greenlet()
    child = gl.greenlet(fn)
    value: Any = child.switch(*args)
    while not child.dead:
        try:
            result = await value
        except BaseException as exc:  # noqa: BLE001 - thrown into the body, where it belongs
            value = child.throw(exc)
        else:
            value = child.switch(result)
    return value


def wait(awaitable: Awaitable[Any]) -> Any:
    """Inside ``run_sync``: the result of ``awaitable``, awaited by the event loop."""
    gl = _greenlet()
    current = gl.getcurrent()
    if current.parent is None:
        raise RuntimeError("wait() called outside run_sync")
    return current.parent.switch(awaitable)
