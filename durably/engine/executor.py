"""One attempt of a run: call the function, replay finished steps from the memo, execute
new ones and commit each before going on; then finish, suspend, or schedule a retry.

Execution continues in process after each checkpoint: a 3-step run is one call of the
function and three commits. Replay from the memo happens only when a run resumes
(after a sleep, a wait, a retry backoff or a crash).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import time
import typing
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any, Callable

from ..context import Context
from ..core.durations import parse_duration
from ..errors import (InvalidEvent, InvalidInput, LeaseLost, NonRetriableError, StepError, StepMismatch,
                      StoreUnavailable, error_dict)
from ..core.events import FUNCTION_INVOKED, Event, failure_event
from ..core.expressions import compile_expr
from ..functions import FunctionDef
from ..core.jsonutil import STEP_OUTPUT_MAX_BYTES, dumps, loads
from ..steps import Interrupt, Steps, SyncSteps, in_parallel
from ..core.records import ClaimedRun, NewRun, StepWrite, WaitWrite
from ..store.base import aw
from ..core import eventschema, flow
from . import tracing
from .outage import Outage
from .replay import Memo, StepIds, retry_delay

if TYPE_CHECKING:
    from .registry import Registry

log = logging.getLogger("durably.executor")

_current_step = tracing.current_step
_current_attempt = tracing.current_attempt

FOREVER = 10 * 365 * 86400.0


class Execution:
    """One attempt of ``run`` (claimed under ``lease``) of ``fdef`` on ``store``.

    ``registry`` answers ``ctx.invoke``'s lookups of other functions; ``on_final`` is called
    once, just before the attempt's final write (finish or suspend) goes to the store: the
    worker frees the run's slot then, before that write has committed.
    """

    def __init__(self, store: Any, registry: "Registry", fdef: FunctionDef, run: ClaimedRun, *, pool: Executor,
                 lease: float, on_final: Callable[[], None] | None = None, outage: "Outage | None" = None):
        self.store, self.registry, self.fdef, self.run = store, registry, fdef, run
        self.pool, self.lease = pool, lease
        self._on_final = on_final
        self._memo = Memo(run.steps)
        self.memo = self._memo.steps
        self._seq = max((s["seq"] for s in run.steps), default=-1) + 1
        self._ids = StepIds()
        self._mono = time.monotonic()
        self.current_step = _current_step
        self.current_attempt = _current_attempt
        # What a suspension writes:
        self.pending_steps: list[StepWrite] = []
        self.waits: list[WaitWrite] = []
        self.children: list[NewRun] = []
        self.wake_times: list[float | None] = []
        self.retry_at: float | None = None
        self.retry_error: dict | None = None
        self.lease_lost: LeaseLost | None = None
        self.span: Any = None  # the attempt's span when tracing is on (engine/tracing.py)
        self._span_failed = False
        self._patches: dict[str, bool] = {}  # ctx.patched answers of this attempt
        self._marks: list[Future] = []  # patch markers submitted, awaited before the next write
        self.outage = outage if outage is not None else Outage(f"run {run.id}")
        # The finish of a completed run, not awaited by ``execute``: the worker learns from it
        # whether the run's end was recorded.
        self.final_write: Future | None = None

    # --- bookkeeping -----------------------------------------------------------------------

    def _final(self) -> None:
        """The attempt's final write is about to go out: tell the worker (once)."""
        on_final, self._on_final = self._on_final, None
        if on_final is not None:
            on_final()

    @property
    def replaying(self) -> bool:
        return self._memo.replaying

    def now(self) -> float:
        """The store's clock: read at claim, advanced by this host's monotonic clock."""
        return self.run.now + (time.monotonic() - self._mono)

    def _next_id(self, id: str) -> str:
        return self._ids.next(id)

    def _lookup(self, sid: str, kind: str) -> Any:
        return self._memo.lookup(sid, kind, strict=not in_parallel.get())

    def patched(self, change_id: str) -> bool:
        """``ctx.patched``: True where this run reaches the call on code that has the change
        (recorded as a marker step, so every later replay answers the same); False where it
        replays steps that code without the change recorded past this point."""
        if not isinstance(change_id, str) or not change_id:
            raise InvalidInput(f"ctx.patched: the change id must be a non-empty string, got {change_id!r}")
        known = self._patches.get(change_id)
        if known is not None:
            return known
        sid = f"patched:{change_id}"
        if self._memo.lookup(sid, "patch", strict=False) is not None:
            answer = True
        elif self._memo.replaying:
            answer = False  # old code recorded steps past this point without the marker: keep its path
        else:
            now = time.time()
            self._marks.append(self.store.checkpoint_step(
                self.run, self.lease, StepWrite(sid, "patch", "completed", self._seq_for(None), 1, "true", None,
                                                None, now, now)))
            answer = True
        self._patches[change_id] = answer
        return answer

    async def _markers_committed(self) -> bool:
        """Before a suspension: False if the lease was lost while writing the patch markers."""
        try:
            await self._marked()
        except Interrupt:
            log.info("%s", self.lease_lost)
            return False
        return True

    async def _marked(self) -> None:
        """The patch markers written so far have committed: no later step may commit without them."""
        marks, self._marks = self._marks, []
        for fut in marks:
            try:
                await aw(fut)
            except LeaseLost as exc:
                self.lease_lost = exc
                raise Interrupt() from exc

    def _seq_for(self, m: dict | None) -> int:
        if m is not None:
            return m["seq"]
        self._seq += 1
        return self._seq - 1

    async def _checkpoint(self, step: StepWrite, emit: list[dict] | None = None) -> dict | None:
        """Commit a step; returns the stored row if someone else resolved it first.

        The store being unreachable is no failure of the function: the write is tried again
        with backoff until the store answers (the function body never sees the outage, and no
        attempt is counted). Writing the same step again is safe: a step already completed is
        never overwritten (a COMMIT whose outcome was unknown may have written it), and a
        lease that expired meanwhile ends the attempt as a lease lost."""
        if self._marks:
            await self._marked()
        while True:
            try:
                res = await aw(self.store.checkpoint_step(self.run, self.lease, step, emit))
            except LeaseLost as exc:
                # Cancelled, or taken over by another worker: unwind with a BaseException so a broad
                # ``except Exception`` in the function cannot swallow it and go on running steps.
                self.lease_lost = exc
                raise Interrupt() from exc
            except StoreUnavailable as exc:
                await asyncio.sleep(self.outage.failed(exc))  # backoff while the store is down
                continue
            self.outage.answered()
            return res

    # --- steps -----------------------------------------------------------------------------

    async def step_run(self, id: str, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        if not callable(fn):
            raise InvalidInput(f"step.run({id!r}, ...): the second argument must be a function, got {fn!r}")
        sid = self._next_id(id)
        m = self._lookup(sid, "run")
        attempts = 0
        if m is not None:
            if m["status"] == "completed":
                return _decode(m["output"], fn)
            if m["status"] == "failed":
                raise StepError(sid, loads(m["error"]))
            attempts = m["attempts"]
        seq = self._seq_for(m)
        token = _current_step.set(sid)
        atoken = _current_attempt.set(attempts)
        started = time.time()
        try:
            with tracing.step_span(self.span, sid, attempts + 1) as span:
                try:
                    if inspect.iscoroutinefunction(fn):
                        result = await fn(*args, **kwargs)
                    else:
                        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
                        result = await asyncio.get_running_loop().run_in_executor(self.pool, call)
                        if inspect.isawaitable(result):
                            result = await result
                except Exception as exc:  # noqa: BLE001 - recorded on the step's span, handled below
                    tracing.failed(span, exc)
                    raise
        except (Interrupt, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - the step's failure, retried or recorded
            return await self._step_failed(sid, "run", seq, attempts, started, exc)
        finally:
            _current_step.reset(token)
            _current_attempt.reset(atoken)
        try:
            output = dumps(result, what=f"step {sid!r} output", limit=STEP_OUTPUT_MAX_BYTES)
        except InvalidInput as exc:
            return await self._step_failed(sid, "run", seq, attempts, started, NonRetriableError(str(exc)))
        attempts += 1
        finished = time.time()
        entry = dumps({"attempt": attempts, "started_at": started, "finished_at": finished, "error": None})
        await self._checkpoint(StepWrite(sid, "run", "completed", seq, attempts, output, None, entry, started, finished))
        return _decode(output, fn)

    async def _step_failed(self, sid: str, kind: str, seq: int, attempts: int, started: float,
                           exc: BaseException) -> Any:
        attempts += 1
        err = error_dict(exc)
        finished = time.time()
        entry = dumps({"attempt": attempts, "started_at": started, "finished_at": finished,
                       "error": {"name": err["name"], "message": err["message"]}})
        delay = retry_delay(exc, attempts, self.fdef.retry)
        if delay is None:
            log.warning("run %s step %r failed for good after %d attempt(s): %s", self.run.id, sid, attempts, exc)
            await self._checkpoint(StepWrite(sid, kind, "failed", seq, attempts, None, dumps(err), entry, started, finished))
            raise StepError(sid, err)
        log.info("run %s step %r attempt %d failed (%s); retrying in %.2fs", self.run.id, sid, attempts, exc, delay)
        self.pending_steps.append(StepWrite(sid, kind, "retrying", seq, attempts, None, dumps(err), entry, started, finished))
        at = self.now() + delay
        self.retry_at = at if self.retry_at is None else min(self.retry_at, at)
        self.retry_error = err
        raise Interrupt()

    async def step_sleep(self, id: str, seconds: float) -> None:
        sid = self._next_id(id)
        await self._sleep(sid, lambda: self.now() + seconds)

    async def step_sleep_until(self, id: str, when: float) -> None:
        sid = self._next_id(id)
        await self._sleep(sid, lambda: when)

    async def _sleep(self, sid: str, wake_fn: Callable[[], float]) -> None:
        m = self._lookup(sid, "sleep")
        if m is not None and m["status"] == "completed":
            return
        seq = self._seq_for(m)
        now = self.now()
        wake = m["wake_at"] if m is not None else wake_fn()
        started = m["started_at"] if m is not None else now
        if wake <= now:
            await self._checkpoint(StepWrite(sid, "sleep", "completed", seq, 1, None, None, None, started, now, wake))
            tracing.interval(self.span, sid, "sleep", started, now)
            return
        if m is None:
            self.pending_steps.append(StepWrite(sid, "sleep", "sleeping", seq, 0, None, None, None, started, None, wake))
        self.wake_times.append(wake)
        raise Interrupt()

    async def step_wait(self, id: str, event: str, match: str | None, if_: str | None, timeout: Any) -> Event | None:
        sid = self._next_id(id)
        m = self._lookup(sid, "wait")
        if m is not None and m["status"] == "completed":
            if self.span is not None and self._woke_by(m):
                tracing.interval(self.span, sid, "wait", m["started_at"], m["finished_at"], event=event,
                                 timed_out=m["output"] in (None, "null"))
            return _event_or_none(m["output"])
        seq = self._seq_for(m)
        now = self.now()
        if m is not None:  # still waiting: timed out, or resumed for another reason
            if m["wake_at"] is not None and m["wake_at"] <= now:
                row = await self._checkpoint(StepWrite(sid, "wait", "completed", seq, 1, "null", None, None,
                                                       m["started_at"], now, m["wake_at"]))
                tracing.interval(self.span, sid, "wait", m["started_at"], now, event=event,
                                 timed_out=not (row and row.get("status") == "completed"))
                if row and row.get("status") == "completed":
                    return _event_or_none(row.get("output"))
                return None
            self.wake_times.append(m["wake_at"])
            raise Interrupt()
        if not isinstance(event, str) or not event:
            raise InvalidInput("wait_for_event: event must be an event name")
        if if_ is not None:
            compile_expr(if_)
        path = _match_path(match)
        expires = now + parse_duration(timeout, name="wait_for_event timeout") if timeout is not None else None
        self.pending_steps.append(StepWrite(sid, "wait", "waiting", seq, 0, None, None, None, now, None, expires))
        self.waits.append(WaitWrite(sid, "wait", event, path,
                                    flow.match_value(self.run.event, path) if path else None, if_, expires,
                                    since=now))
        self.wake_times.append(expires)
        raise Interrupt()

    async def step_send(self, id: str, events: list[Event]) -> list[str]:
        sid = self._next_id(id)
        m = self._lookup(sid, "send")
        if m is not None and m["status"] == "completed":
            return loads(m["output"])
        seq = self._seq_for(m)
        for e in events:
            e.encode()  # validates: serializable, under 1 MiB
        dicts = [e.to_dict() for e in events]
        ids = [str(e.id) for e in events]  # set by Event itself
        now = time.time()
        await self._checkpoint(StepWrite(sid, "send", "completed", seq, 1, dumps(ids), None, None, now, now), emit=dicts)
        return ids

    async def step_invoke(self, id: str, function: Any, data: dict | None, timeout: Any) -> Any:
        sid = self._next_id(id)
        m = self._lookup(sid, "invoke")
        if m is not None:
            if m["status"] == "completed":
                return loads(m["output"])
            if m["status"] == "failed":
                raise StepError(sid, loads(m["error"]))
        seq = self._seq_for(m)
        now = self.now()
        if m is not None:
            if m["wake_at"] is not None and m["wake_at"] <= now:
                err = {"name": "InvokeTimeout", "message": "invoked function did not finish within the timeout"}
                row = await self._checkpoint(StepWrite(sid, "invoke", "failed", seq, 1, None, dumps(err), None,
                                                       m["started_at"], now, m["wake_at"]))
                if row and row.get("status") == "completed":
                    return loads(row["output"])
                raise StepError(sid, loads(row["error"]) if row and row.get("error") else err)
            self.wake_times.append(m["wake_at"])
            raise Interrupt()
        fid = function if isinstance(function, str) else getattr(function, "id", None)
        config = await self.registry.function_config(fid) if isinstance(fid, str) else None
        if config is None:
            err = error_dict(NonRetriableError(f"invoke: unknown function {fid or function!r}"))
            await self._checkpoint(StepWrite(sid, "invoke", "failed", seq, 1, None, dumps(err), None, now, now))
            raise StepError(sid, err)
        if data is not None and not isinstance(data, dict):
            raise InvalidInput(f"invoke({id!r}): data must be a dict")
        try:
            eventschema.check_config(config, data)  # a typed function: the data must fit its schema
        except InvalidEvent as exc:
            err = error_dict(NonRetriableError(f"invoke {fid!r}: {exc}"))
            await self._checkpoint(StepWrite(sid, "invoke", "failed", seq, 1, None, dumps(err), None, now, now))
            raise StepError(sid, err) from None
        ev = Event(FUNCTION_INVOKED, dict(data or {}))
        ev.encode()
        planned = flow.plan(config, ev.to_dict(), None, now, trigger="invoke")
        if not isinstance(planned, NewRun):  # the tenant rule skipped it: no child to wait for
            reason = getattr(planned, "reason", None)
            err = error_dict(NonRetriableError(f"invoke: function {fid!r} skipped the run ({reason})"))
            await self._checkpoint(StepWrite(sid, "invoke", "failed", seq, 1, None, dumps(err), None, now, now))
            raise StepError(sid, err)
        planned.parent_run_id, planned.parent_step_id = self.run.id, sid
        expires = now + parse_duration(timeout, name="invoke timeout") if timeout is not None else None
        self.pending_steps.append(StepWrite(sid, "invoke", "waiting", seq, 0, None, None, None, now, None, expires))
        self.children.append(planned)
        self.wake_times.append(expires)
        raise Interrupt()

    # --- the attempt -----------------------------------------------------------------------

    def _woke_by(self, m: dict) -> bool:
        """Whether the finished step ``m`` is what this attempt resumed from: the step that
        finished last (a wait resolved by an event, say), so its span is drawn once."""
        ends = [s["finished_at"] for s in self.memo.values() if s.get("finished_at") is not None]
        return m.get("finished_at") is not None and m["finished_at"] >= max(ends)

    async def execute(self) -> str:
        """Run this attempt to its end; returns what happened (for logs and tests)."""
        token = tracing.current_run.set(self.run)
        try:
            tr = tracing.tracer()
            if tr is None:
                return await self._attempt()
            self.span = tracing.start_run(tr, self.run, self.fdef.debounce is not None or self.fdef.batch is not None)
            outcome = "lease_lost"
            try:
                with tracing.use(self.span):
                    outcome = await self._attempt()
                return outcome
            finally:
                tracing.end_run(self.span, outcome)
        finally:
            tracing.current_run.reset(token)

    async def _attempt(self) -> str:
        steps = Steps(self)
        loop = asyncio.get_running_loop()
        deadline = self.run.finish_deadline
        timeout_err = {"name": "TimeoutError", "message": "the run did not finish within Timeouts.finish"}
        if deadline is not None and deadline <= self.now():
            return await self._fail(timeout_err, "timeout")
        try:
            if self.fdef.is_async:
                ctx = Context(self, steps)
                if deadline is None:
                    out = await self.fdef.fn(ctx)
                else:
                    try:
                        out = await asyncio.wait_for(self.fdef.fn(ctx), deadline - self.now())
                    except asyncio.TimeoutError:
                        if self.now() < deadline:
                            raise
                        return await self._fail(timeout_err, "timeout")
            else:
                ctx = Context(self, SyncSteps(steps, loop))
                call = functools.partial(contextvars.copy_context().run, self.fdef.fn, ctx)
                out = await loop.run_in_executor(self.pool, call)
        except Interrupt:
            if self.lease_lost is not None:
                log.info("%s", self.lease_lost)
                return "lease_lost"
            return await self._suspend()
        except LeaseLost as exc:
            log.info("%s", exc)
            return "lease_lost"
        except StepMismatch as exc:
            return await self._fail(error_dict(exc), "nondeterminism")
        except StepError as exc:
            return await self._fail(error_dict(exc), "non_retriable" if exc.non_retriable else "retries_exhausted")
        except (NonRetriableError, InvalidInput) as exc:  # bad input to durably (an unserializable
            # event, a bad step argument) is the same on every attempt: fail now, do not retry it
            return await self._fail(error_dict(exc), "non_retriable")
        except Exception as exc:  # noqa: BLE001 - the function body failed: retry the run or fail it
            return await self._body_failed(exc)
        try:
            output = dumps(out, what="the function's return value", limit=STEP_OUTPUT_MAX_BYTES)
        except InvalidInput as exc:
            return await self._fail(error_dict(exc), "non_retriable")
        # Not awaited: the worker's slot is free as soon as the write is submitted, and nothing
        # here depends on its commit. Its outcome is logged from the store's thread.
        self._final()
        fut = self.store.finish_run(self.run, status="completed", output=output, error=None, reason="completed")
        self.final_write = fut
        fut.add_done_callback(self._finish_logged)
        return "completed"

    def _finish_logged(self, fut: "Future") -> None:  # the store's thread, once the finish committed
        exc = fut.exception()
        if exc is None:
            return
        if isinstance(exc, LeaseLost):
            log.info("%s", exc)
        # Otherwise the worker logs it and lets the run go (``Worker._release_lease``).

    async def _body_failed(self, exc: BaseException) -> str:
        tracing.failed(self.span, exc)
        self._span_failed = True
        err = error_dict(exc)
        failures = self.run.attempt + 1
        delay = retry_delay(exc, failures, self.fdef.retry)
        if delay is None:
            return await self._fail(err, "retries_exhausted")
        log.info("run %s failed (%s); retry %d in %.2fs", self.run.id, exc, failures, delay)
        if not await self._markers_committed():
            return "lease_lost"
        self._final()
        try:
            await aw(self.store.suspend_run(self.run, steps=self.pending_steps, waits=[], children=[], status="queued",
                                            available_at=self.now() + delay, attempt_inc=1, error=dumps(err),
                                            lease=self.lease))
        except LeaseLost:
            return "lease_lost"
        return "retry"

    async def _suspend(self) -> str:
        if self.retry_at is not None:
            # A step's retry is counted on the step; the run's attempt counts body failures only,
            # so step retries never use up the retries of code outside steps.
            status, at, inc = "queued", self.retry_at, 0
            error = dumps(self.retry_error)
        else:
            pending_wait = bool(self.waits or self.children) or any(
                s["status"] == "waiting" for s in self.memo.values())
            status = "waiting" if pending_wait else "sleeping"
            times = [t for t in self.wake_times if t is not None]
            at = min(times) if times else self.now() + FOREVER
            inc, error = 0, None
        if not await self._markers_committed():
            return "lease_lost"
        self._final()
        try:
            await aw(self.store.suspend_run(self.run, steps=self.pending_steps, waits=self.waits,
                                            children=self.children, status=status, available_at=at,
                                            attempt_inc=inc, error=error, lease=self.lease))
        except LeaseLost as exc:
            log.info("%s", exc)
            return "lease_lost"
        return "retry" if self.retry_at is not None else status

    async def _fail(self, err: dict, reason: str) -> str:
        if not self._span_failed:
            tracing.failed(self.span, error=err)
        log.error("run %s of %s failed (%s): %s: %s", self.run.id, self.run.function_id, reason,
                  err.get("name"), err.get("message"))
        failed = failure_event(self.run.function_id, self.run.id, reason, err, self.run.event)
        self._final()
        try:
            await aw(self.store.finish_run(self.run, status="failed", output=None, error=dumps(err),
                                           reason=reason, emit=[failed]))
        except LeaseLost as exc:
            log.info("%s", exc)
            return "lease_lost"
        return "failed"


def _decode(output: str | None, fn: Callable[..., Any]) -> Any:
    value = loads(output)
    model = _model_of(fn)
    if model is not None and value is not None:
        try:
            return model.model_validate(value)
        except Exception:  # noqa: BLE001 - keep the plain value if the model changed
            return value
    return value


@functools.lru_cache(maxsize=1024)
def _model_of_cached(fn: Callable[..., Any]) -> Any:
    try:
        hint = typing.get_type_hints(fn).get("return")
    except Exception:  # noqa: BLE001
        return None
    return hint if hint is not None and hasattr(hint, "model_validate") else None


def _model_of(fn: Callable[..., Any]) -> Any:
    try:
        return _model_of_cached(fn)
    except TypeError:  # unhashable callable
        return None


def _event_or_none(output: str | None) -> Event | None:
    value = loads(output) if output is not None else None
    if not value:
        return None
    return Event.from_dict({k: value[k] for k in ("name", "data", "id", "ts", "user") if k in value})


def _match_path(match: str | None) -> str | None:
    if match is None:
        return None
    if not isinstance(match, str) or not match:
        raise InvalidInput("wait_for_event: match must be a field path such as 'data.clientId'")
    return match[len("event."):] if match.startswith("event.") else match
