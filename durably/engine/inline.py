"""Emergency inline execution for the cron endpoint, when the store is unreachable.

With ``DURABLY_INLINE_FALLBACK=true``, and only where the app's code is loaded (``durably
dev`` or ``app.asgi()``), a cron ping whose dispatch fails because the store is down runs
the functions its event triggers here, in the request, so a store outage is not also a
gap in the work. Nothing is durable on this path:

- steps run in order with the function's retry policy (backoff waits in the request);
  a repeated step id is numbered as usual; a finished step is not run again when the
  function body is retried;
- ``sleep`` waits in the request; ``wait_for_event`` returns None at once (no event can
  reach a run without a store, as if it timed out); ``send_event`` tries the store and
  fails the step if it is still down; ``invoke`` runs the other function inline;
- flow control (concurrency, throttle, idempotency, ...) is not applied: it lives in
  the store;
- the whole tick has a deadline; what has not finished by then is reported as
  ``timeout`` (a sync function's thread cannot be stopped and ends on its own).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from ..context import Context
from ..errors import InvalidInput, NonRetriableError, StepError, error_dict
from ..core.events import FUNCTION_INVOKED, Event
from ..core.expressions import evaluate_bool
from ..functions import EventTrigger, FunctionDef
from ..core.ids import new_id
from ..core.jsonutil import STEP_OUTPUT_MAX_BYTES, dumps, loads
from ..steps import Steps, SyncSteps
from .replay import StepIds, retry_delay

Send = Callable[[list[dict]], Awaitable[Any]]  # records events (dicts); its result has ``.ids``

log = logging.getLogger("durably.inline")

DEADLINE_SECONDS = 25.0


@dataclass
class _Run:
    """What ``Context`` reads from a run."""

    id: str
    function_id: str
    event: dict
    events: list[dict] | None = None
    tenant: str = "global"
    attempt: int = 0
    steps: list[dict] = field(default_factory=list)


class InlineExecution:
    """Runs one function to its end in process, with the same step API as the executor."""

    replaying = False

    def __init__(self, functions: Mapping[str, FunctionDef], send: Send, fdef: FunctionDef, event: dict,
                 pool: ThreadPoolExecutor, deadline: float):
        self.functions, self.send = functions, send
        self.fdef, self.pool, self.deadline = fdef, pool, deadline
        self.run = _Run(id=new_id(), function_id=fdef.id, event=event)
        self.current_step: ContextVar[str | None] = ContextVar(f"durably_inline_step_{self.run.id}", default=None)
        self.current_attempt: ContextVar[int | None] = ContextVar(f"durably_inline_attempt_{self.run.id}",
                                                                  default=None)
        self.done: dict[str, Any] = {}  # step id -> output of a finished step (kept across body retries)
        self._ids = StepIds()

    def patched(self, change_id: str) -> bool:
        """An inline run has no history: it always takes the new path."""
        if not isinstance(change_id, str) or not change_id:
            raise InvalidInput(f"ctx.patched: the change id must be a non-empty string, got {change_id!r}")
        return True

    def _next_id(self, id: str) -> str:
        return self._ids.next(id)

    async def _wait(self, seconds: float) -> None:
        if time.monotonic() + seconds > self.deadline:
            raise asyncio.TimeoutError
        await asyncio.sleep(seconds)

    async def _call(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        if inspect.iscoroutinefunction(fn):
            return await fn(*args, **kwargs)
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        result = await asyncio.get_running_loop().run_in_executor(self.pool, call)
        return await result if inspect.isawaitable(result) else result

    # --- the step API (called through durably.steps.Steps) ------------------------------------

    async def step_run(self, id: str, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        if not callable(fn):
            raise InvalidInput(f"step.run({id!r}, ...): the second argument must be a function, got {fn!r}")
        sid = self._next_id(id)
        if sid in self.done:
            return self.done[sid]
        attempt = 0
        while True:
            token = self.current_step.set(sid)
            atoken = self.current_attempt.set(attempt)
            attempt += 1
            try:
                result = await self._call(fn, args, kwargs)
                try:
                    value = loads(dumps(result, what=f"step {sid!r} output", limit=STEP_OUTPUT_MAX_BYTES))
                except InvalidInput as exc:  # as the executor: an output it cannot keep fails the step
                    raise NonRetriableError(str(exc)) from None
            except (asyncio.CancelledError, asyncio.TimeoutError):
                raise
            except Exception as exc:  # noqa: BLE001 - the step failed: retry it or give up
                delay = retry_delay(exc, attempt, self.fdef.retry)
                if delay is None:
                    raise StepError(sid, error_dict(exc)) from exc
                await self._wait(delay)
                continue
            finally:
                self.current_step.reset(token)
                self.current_attempt.reset(atoken)
            self.done[sid] = value
            return value

    async def step_sleep(self, id: str, seconds: float) -> None:
        sid = self._next_id(id)
        if sid not in self.done:
            await self._wait(seconds)
            self.done[sid] = None

    async def step_sleep_until(self, id: str, when: float) -> None:
        await self.step_sleep(id, max(0.0, when - time.time()))

    async def step_wait(self, id: str, event: str, match: str | None, if_: str | None, timeout: Any) -> Event | None:
        self._next_id(id)
        return None

    async def step_send(self, id: str, events: list[Event]) -> list[str]:
        sid = self._next_id(id)
        if sid in self.done:
            return self.done[sid]
        try:
            res = await self.send([e.to_dict() for e in events])
        except Exception as exc:  # noqa: BLE001 - the store is still down: the step fails
            raise StepError(sid, error_dict(exc)) from exc
        self.done[sid] = list(res.ids)
        return self.done[sid]

    async def step_invoke(self, id: str, function: Any, data: dict | None, timeout: Any) -> Any:
        sid = self._next_id(id)
        if sid in self.done:
            return self.done[sid]
        fid = function if isinstance(function, str) else getattr(function, "id", None)
        fdef = self.functions.get(fid) if isinstance(fid, str) else None
        if fdef is None:
            raise StepError(sid, error_dict(NonRetriableError(f"invoke: unknown function {fid or function!r}")))
        child = InlineExecution(self.functions, self.send, fdef, Event(FUNCTION_INVOKED, dict(data or {})).to_dict(), self.pool,
                                self.deadline)
        outcome = await child.execute()
        if outcome["status"] != "completed":
            raise StepError(sid, outcome.get("error") or {"name": "InvokeFailed", "message": outcome["status"]})
        self.done[sid] = outcome["output"]
        return outcome["output"]

    # --- the run -----------------------------------------------------------------------------

    async def execute(self) -> dict:
        out: dict[str, Any] = {"function_id": self.fdef.id, "run_id": self.run.id}
        loop = asyncio.get_running_loop()
        while True:
            self._ids.reset()
            steps = Steps(self)
            try:
                if self.fdef.is_async:
                    result = await self.fdef.fn(Context(self, steps))
                else:
                    ctx = Context(self, SyncSteps(steps, loop))
                    call = functools.partial(contextvars.copy_context().run, self.fdef.fn, ctx)
                    result = await loop.run_in_executor(self.pool, call)
                out.update(status="completed", output=loads(dumps(result, what="the function's return value")))
                return out
            except asyncio.TimeoutError:
                return {**out, "status": "timeout", "error": {"name": "Timeout", "message": "inline deadline passed"}}
            except (StepError, NonRetriableError, InvalidInput) as exc:
                return {**out, "status": "failed", "error": _short(exc)}
            except Exception as exc:  # noqa: BLE001 - the body failed: retry it (finished steps are kept)
                self.run.attempt += 1
                delay = retry_delay(exc, self.run.attempt, self.fdef.retry)
                if delay is None:
                    return {**out, "status": "failed", "error": _short(exc)}
                try:
                    await self._wait(delay)
                except asyncio.TimeoutError:
                    return {**out, "status": "timeout", "error": _short(exc)}


def _short(exc: BaseException) -> dict:
    err = error_dict(exc)
    return {"name": err["name"], "message": err["message"]}


def triggered(functions: Mapping[str, FunctionDef], event: dict) -> list[FunctionDef]:
    """The functions that ``event`` triggers (name and ``if_`` filter)."""
    out = []
    for fdef in functions.values():
        for t in fdef.triggers:
            if isinstance(t, EventTrigger) and t.event == event["name"]:
                try:
                    if t.if_ and not evaluate_bool(t.if_, {"event": event}):
                        continue
                except Exception:  # noqa: BLE001 - a failing filter skips, as in the store
                    continue
                out.append(fdef)
                break
    return out


async def run_inline(functions: Mapping[str, FunctionDef], send: Send, event: dict, *,
                     deadline_seconds: float = DEADLINE_SECONDS) -> list[dict]:
    """Run every function of ``functions`` that ``event`` triggers, concurrently, within the
    deadline; ``send`` records the events their steps send (it fails while the store is down)."""
    fdefs = triggered(functions, event)
    if not fdefs:
        return []
    deadline = time.monotonic() + deadline_seconds
    pool = ThreadPoolExecutor(max_workers=max(2, len(fdefs) * 2), thread_name_prefix="durably-inline")
    executions = [InlineExecution(functions, send, f, event, pool, deadline) for f in fdefs]
    tasks = [asyncio.ensure_future(e.execute()) for e in executions]
    try:
        done, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
        for t in pending:
            t.cancel()
        results = []
        for e, t in zip(executions, tasks):
            if t in done and not t.cancelled() and t.exception() is None:
                results.append(t.result())
            else:
                results.append({"function_id": e.fdef.id, "run_id": e.run.id, "status": "timeout",
                                "error": {"name": "Timeout", "message": "inline deadline passed"}})
        return results
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
