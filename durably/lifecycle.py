"""Long-running commands (``dev``, ``worker``, ``server``): their event loop, and stopping
on SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import signal
import threading
from typing import Any, Callable, Coroutine

from .errors import ConfigError, StoreUnavailable


def loop_factory(choice: str = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop a long-running command runs on (``DURABLY_EVENT_LOOP``): uvloop's where
    it is installed (``auto``, the default) or required (``uvloop``), else asyncio's (None).

    On uvloop a worker spends about a seventh less CPU per run: tasks, timers, wake-ups from
    the store's threads and the sockets of an async job body all cost less than on asyncio's
    pure-Python loop. ``asyncio`` is there for code that needs the standard loop.
    """
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("DURABLY_EVENT_LOOP=uvloop, but uvloop is not installed (pip install uvloop)") from None
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, Any], choice: str = "auto") -> Any:
    """``asyncio.run(main)`` on the loop ``loop_factory(choice)`` names."""
    try:
        factory = loop_factory(choice)
    except ConfigError:
        main.close()  # never started: no "coroutine was never awaited" warning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:  # None: asyncio's, as asyncio.run
        return runner.run(main)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (call inside the running event loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
            pass
    return stop


def within_seconds(fn: Callable[[], Any], seconds: float) -> Any:
    """``fn()``, or StoreUnavailable once ``seconds`` have passed (``fn`` goes on in its thread,
    which does not keep the process alive)."""
    fut: cf.Future = cf.Future()

    def run() -> None:
        try:
            fut.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            fut.set_exception(exc)

    threading.Thread(target=run, name="durably-open", daemon=True).start()
    try:
        return fut.result(timeout=seconds)
    except cf.TimeoutError:
        raise StoreUnavailable(f"the store did not answer within DURABLY_DISPATCH_TIMEOUT={seconds:g} s") from None
