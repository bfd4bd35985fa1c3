"""``ctx.step``: the durable step API.

Each step is keyed by its id (repeated ids become ``id``, ``id:1``, ``id:2`` in call
order). A finished step is committed before the function goes on and is never run again:
on resume its recorded result is returned instead. Suspending (sleep, wait, invoke, retry
backoff) unwinds the function with a ``BaseException`` so a user's ``except Exception``
cannot swallow it.
"""

from __future__ import annotations

import asyncio
import inspect
from datetime import datetime, timedelta, timezone
from contextvars import ContextVar
from typing import Any, Callable, Coroutine, Protocol

from .core.durations import parse_duration
from .errors import InvalidInput
from .core.events import Event, coerce_events


# True inside the branches of ``parallel``: their steps reach the memo in no fixed order.
in_parallel: ContextVar[bool] = ContextVar("durably_in_parallel", default=False)


class Interrupt(BaseException):
    """Unwinds a run to the executor: it suspends (or retries a step) and is resumed later."""


class RunView(Protocol):
    """What ``ctx`` reads of the run being executed."""

    id: str
    function_id: str
    event: dict[str, Any]
    events: list[dict[str, Any]] | None
    tenant: str
    attempt: int


class StepPort(Protocol):
    """What ``ctx.step`` and ``ctx`` call: one execution of a run. Two implement it, both on
    ``engine.replay``: ``engine.executor.Execution`` (the worker's, durable) and
    ``engine.inline.InlineExecution`` (the cron endpoint's emergency fallback)."""

    @property
    def run(self) -> RunView: ...

    current_step: ContextVar[str | None]
    current_attempt: ContextVar[int | None]

    @property
    def replaying(self) -> bool: ...

    async def step_run(self, id: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any: ...
    async def step_sleep(self, id: str, seconds: float) -> None: ...
    async def step_sleep_until(self, id: str, when: float) -> None: ...
    async def step_wait(self, id: str, event: str, match: str | None, if_: str | None,
                        timeout: Any) -> Event | None: ...
    async def step_send(self, id: str, events: list[Event]) -> list[str]: ...
    async def step_invoke(self, id: str, function: Any, data: dict[str, Any] | None, timeout: Any) -> Any: ...
    def patched(self, change_id: str) -> bool: ...


class Steps:
    """The async step API (``async def`` functions)."""

    def __init__(self, execution: StepPort):
        self._ex = execution

    async def run(self, id: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` (sync or async) once; its JSON-able result is memoized."""
        return await self._ex.step_run(id, fn, args, kwargs)

    async def sleep(self, id: str, duration: Any) -> None:
        """Pause the run for ``duration`` ("30s", "5m", timedelta, seconds); frees the worker."""
        await self._ex.step_sleep(id, parse_duration(duration, name="sleep duration"))

    async def sleep_until(self, id: str, when: datetime | str | float) -> None:
        """Pause until ``when`` (an aware datetime, ISO-8601 text, or epoch seconds)."""
        await self._ex.step_sleep_until(id, _when(when))

    async def wait_for_event(self, id: str, event: str, match: str | None = None, if_: str | None = None,
                             timeout: Any = None) -> Event | None:
        """Wait for an event called ``event`` received after the wait began; None on timeout."""
        return await self._ex.step_wait(id, event, match, if_, timeout)

    async def send_event(self, id: str, events: Any) -> list[str]:
        """Send events exactly once (committed with the step); returns their ids."""
        return await self._ex.step_send(id, coerce_events(events))

    async def invoke(self, id: str, function: Any, data: dict | None = None, timeout: Any = None) -> Any:
        """Run another function as a child run and return its result (StepError if it fails)."""
        return await self._ex.step_invoke(id, function, data, timeout)

    async def parallel(self, *branches: Any) -> list[Any]:
        """Run steps concurrently: ``await ctx.step.parallel(lambda: ctx.step.run(...), ...)``.

        Takes callables returning awaitables (or awaitables), returns their results in order.
        """
        if len(branches) == 1 and isinstance(branches[0], (list, tuple)):
            branches = tuple(branches[0])
        coros = []
        for b in branches:
            c = b() if callable(b) and not inspect.isawaitable(b) else b
            if not inspect.isawaitable(c):
                raise InvalidInput("parallel takes callables that return step awaitables, e.g. lambda: ctx.step.run(...)")
            coros.append(c)
        token = in_parallel.set(True)  # the branches' tasks copy the context as they are made
        try:
            results = await asyncio.gather(*coros, return_exceptions=True)
        finally:
            in_parallel.reset(token)
        interrupts = [r for r in results if isinstance(r, Interrupt)]
        if interrupts:
            raise interrupts[0]
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return list(results)


class SyncSteps:
    """The same API for plain ``def`` functions (they run in a worker thread)."""

    def __init__(self, steps: Steps, loop: asyncio.AbstractEventLoop):
        self._steps, self._loop = steps, loop

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def run(self, id: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._call(self._steps.run(id, fn, *args, **kwargs))

    def sleep(self, id: str, duration: Any) -> None:
        return self._call(self._steps.sleep(id, duration))

    def sleep_until(self, id: str, when: Any) -> None:
        return self._call(self._steps.sleep_until(id, when))

    def wait_for_event(self, id: str, event: str, match: str | None = None, if_: str | None = None,
                       timeout: Any = None) -> Event | None:
        return self._call(self._steps.wait_for_event(id, event, match, if_, timeout))

    def send_event(self, id: str, events: Any) -> list[str]:
        return self._call(self._steps.send_event(id, events))

    def invoke(self, id: str, function: Any, data: dict | None = None, timeout: Any = None) -> Any:
        return self._call(self._steps.invoke(id, function, data, timeout))

    def parallel(self, *branches: Callable[[], Any]) -> list[Any]:
        """Sync branches run one after another (each a callable using this step API)."""
        if len(branches) == 1 and isinstance(branches[0], (list, tuple)):
            branches = tuple(branches[0])
        return [b() for b in branches]


def _when(when: Any) -> float:
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise InvalidInput("sleep_until needs an aware datetime (with tzinfo), e.g. datetime.now(timezone.utc)")
        return when.timestamp()
    if isinstance(when, str):
        try:
            dt = datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(f"sleep_until: {when!r} is not an ISO-8601 time") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    if isinstance(when, (int, float)) and not isinstance(when, bool):
        return float(when)
    if isinstance(when, timedelta):
        raise InvalidInput("sleep_until takes a point in time; use sleep for a timedelta")
    raise InvalidInput(f"sleep_until: cannot use {when!r} as a time")
