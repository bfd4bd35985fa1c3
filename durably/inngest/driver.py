"""The driver: SDK runs are claimed like native ones and driven over HTTP.

An SDK function is a ``FunctionDef`` whose body is ``drive``: it calls the app's serve URL
(``POST ?fnId=...&stepId=step``) with the run's event(s) and the memoized steps, and records
each answer through ``SdkExecution``, which is ``engine.executor.Execution`` with the step
ids the SDK reports. So every SDK step is a durably step: the same memo (and its kind check),
the same checkpoint under the run's lease (fencing), the same suspension and retry decision
(``engine.replay``). A step the ledger holds is sent to the SDK as memo and never run again.

Answers: 206 ``StepRun`` (a step's result), ``StepError`` (a step failed: retried with the
function's retry policy), ``StepFailed`` (failed for good: the SDK gets the error as memo),
``Sleep``, ``WaitForEvent`` (with its CEL ``if`` and timeout) and ``InvokeFunction``, several
of them in order; ``RunComplete`` among them, or 200, the function's output; an error answer
with ``x-inngest-no-retry: true`` fails the run, with ``retry-after`` sets the delay; other
errors, 5xx and connection failures retry the call.

Checkpointing (the TypeScript SDK v4's default): a call to a JS app carries ``ctx.fn_id`` and
a ``ctx.qi_id`` of its own, so the SDK runs step after step in that one call and reports each
to ``POST /v1/checkpoint/{run}/async`` (``api.py``) before it goes on. ``CHECKPOINTS`` hands
those steps to the call in flight in this process, which records them as it records a 206's
(in order, under the run's lease) before the endpoint answers. A report for a call this
process is not making is refused; the SDK then reports the steps in its answer instead.

Calls to plain-http apps go through ``calls.Connections`` (a lean keep-alive HTTP/1.1 client:
httpx's own cost per request was most of the driver's CPU), https ones through httpx.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping

import httpx
import orjson

from ..core.jsonutil import loads
from ..engine.executor import Execution
from ..engine.registry import Registry
from ..errors import NonRetriableError, RetryAfterError, StepError
from ..functions import FunctionConfig, FunctionDef
from ..steps import Interrupt
from ..store.base import aw
from .calls import CallError, Connections
from .signing import canonical, sign, verify
from .wire import hashed, memo_value, sdk_event, step_id

if TYPE_CHECKING:
    from ..context import Context

log = logging.getLogger("durably.inngest")

REQUEST_TIMEOUT = 300.0
REFRESH_SECONDS = 2.0  # how often a driver looks for functions synced through another server



class Checkpoints:
    """The calls in flight in this process that the SDK may report steps to, by ``qi_id``."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[str, Callable[[list[dict]], Awaitable[None]]]] = {}

    def open(self, run_id: str, record: Callable[[list[dict]], Awaitable[None]]) -> str:
        qi_id = uuid.uuid4().hex
        self._open[qi_id] = (run_id, record)
        return qi_id

    def close(self, qi_id: str) -> None:
        self._open.pop(qi_id, None)

    async def report(self, run_id: str, qi_id: str, steps: list[dict]) -> bool:
        """Record the steps of the call ``qi_id`` of run ``run_id``; False if it is not in flight here."""
        entry = self._open.get(qi_id)
        if entry is None or entry[0] != run_id:
            return False
        await entry[1](steps)
        return True


CHECKPOINTS = Checkpoints()


class SdkCallFailed(Exception):
    """The app's serve endpoint could not be reached or answered an error: the call is retried."""


class SdkUnsupported(NonRetriableError):
    """The app answered with something durably cannot drive yet."""


class SdkExecution(Execution):
    """An Execution whose step ids are the ones the SDK reports (already numbered)."""

    def _next_id(self, id: str) -> str:
        return id

    def _lookup(self, sid: str, kind: str) -> Any:
        # The SDK replays its function itself and reports only the steps it reaches anew, in
        # its own order: the kind check holds, but "a new step while recorded ones are ahead"
        # is no sign of changed code here (the SDK checks its own determinism).
        return self._memo.lookup(sid, kind, strict=False)


_ORDER = {"StepRun": 0, "StepFailed": 0, "RunComplete": 0, "WaitForEvent": 1}
_ERROR_TYPES: dict[tuple[str, bool], type] = {}


def _remote_error(err: dict, final: bool) -> Exception:
    """The SDK's step error as an exception named as the app named it."""
    name = str(err.get("name") or "Error")
    key = (name, final)
    cls = _ERROR_TYPES.get(key)
    if cls is None:
        base = NonRetriableError if final else SdkCallFailed
        cls = _ERROR_TYPES[key] = type(name if name.isidentifier() else "Error", (base,), {})
    return cls(str(err.get("message") or name))


def _wake_at(op: dict) -> float:
    opts = op.get("opts") or {}
    if opts.get("duration"):
        from ..core.durations import parse_duration
        return datetime.now(timezone.utc).timestamp() + parse_duration(opts["duration"], name="sleep")
    text = str(op.get("name") or "")
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        from ..core.durations import parse_duration
        return datetime.now(timezone.utc).timestamp() + parse_duration(text, name="sleep")
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


class Driver:
    """Drives the SDK functions of a store: their FunctionDefs (refreshed from the registry)
    and the HTTP client that calls the apps."""

    def __init__(self, store: Any, *, signing_key: str | None = None):
        self.store = store
        self.signing_key = signing_key
        self.functions = SdkFunctions()
        self.registry = Registry(store, self.functions)
        self._client: httpx.AsyncClient | None = None
        self.connections = Connections()  # plain-http apps: the lean client of calls.py
        self._changed = asyncio.Event()
        httpx_log = logging.getLogger("httpx")
        if httpx_log.level == logging.NOTSET:  # one INFO line per call to the app is noise here
            httpx_log.setLevel(logging.WARNING)

    def poke(self) -> None:
        """A sync happened in this process: look at the registry again now."""
        loop = getattr(self, "_loop", None)
        if loop is not None:
            loop.call_soon_threadsafe(self._changed.set)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=REQUEST_TIMEOUT)
        return self._client

    async def refresh(self) -> None:
        configs = await aw(self.store.registry())
        self.functions.update({fid: c for fid, c in configs.items() if isinstance(c, dict) and c.get("inngest")},
                              self._driver)

    async def run(self, worker: Any, stop: asyncio.Event) -> None:
        """Watch the registry; once it holds an SDK function, run ``worker`` (a process with no
        SDK app synced runs no worker for them, and counts none in its health)."""
        self._loop = asyncio.get_running_loop()
        task: asyncio.Task | None = None
        try:
            while not stop.is_set() and not (task is not None and task.done()):
                version = self.functions.version
                try:
                    await self.refresh()
                except Exception as exc:  # noqa: BLE001 - the store is down: retried on the next round
                    log.debug("could not refresh SDK functions: %s", exc)
                if task is None and self.functions:
                    task = asyncio.create_task(worker.run(stop), name="durably-inngest-worker")
                elif task is not None and self.functions.version != version:
                    worker.wake()
                self._changed.clear()
                waiters = [asyncio.create_task(self._changed.wait()), asyncio.create_task(stop.wait())]
                await asyncio.wait([*waiters, *([task] if task else [])], timeout=REFRESH_SECONDS,
                                   return_when=asyncio.FIRST_COMPLETED)
                for w in waiters:
                    w.cancel()
            if task is not None:
                await task
        finally:
            await self.connections.aclose()
            if self._client is not None:
                await self._client.aclose()
                self._client = None

    def _driver(self, config: dict) -> Callable[["Context"], Any]:
        async def drive(ctx: "Context") -> Any:
            return await self.drive(ctx._ex, config)  # type: ignore[arg-type]

        return drive

    # --- one attempt of a run ----------------------------------------------------------------

    async def drive(self, ex: SdkExecution, config: dict) -> Any:
        inn = config["inngest"]
        run = ex.run
        memo: dict[str, Any] = {}
        stack: list[str] = []
        attempt = run.attempt  # a call's attempt: the body's retries, or the retried step's
        for m in sorted(ex.memo.values(), key=lambda m: m["seq"]):
            sid = m["step_id"]
            settled, value = memo_value(m["kind"], m["status"], loads(m["output"]) if m.get("output") else None,
                                        loads(m["error"]) if m.get("error") else None)
            if not settled and m["wake_at"] is not None and m["wake_at"] <= ex.now():
                # came due while parked: settle it through the execution (sleep done, wait timed out)
                if m["kind"] == "sleep":
                    await ex.step_sleep_until(sid, m["wake_at"])
                    settled, value = True, None
                elif m["kind"] == "wait":
                    ev = await ex.step_wait(sid, "", None, None, None)
                    settled, value = True, (ev.to_dict() if ev is not None else None)
            if settled:
                memo[hashed(sid)] = value
                stack.append(hashed(sid))
            elif m["status"] == "retrying":
                attempt = m["attempts"]
        retrying = {m["step_id"]: m["attempts"] for m in ex.memo.values() if m["status"] == "retrying"}
        events = [sdk_event(e) for e in (run.events or [run.event])]
        url, fn_id = inn["url"], config["id"]
        planned_mode = False  # after a plan of parallel steps the SDK plans every new step first

        def body(att: int, targeted: bool) -> dict:
            return {"event": events[0], "events": events, "steps": memo, "use_api": False, "version": 2,
                    "ctx": {"run_id": run.id, "attempt": att, "max_attempts": ex.fdef.retry.attempts,
                            "disable_immediate_execution": targeted, "use_api": False,
                            "stack": {"stack": stack, "current": len(stack)}}}

        checkpointing = str(inn.get("sdk") or "").startswith("js:")  # the TypeScript SDK (v4) checkpoints
        fn_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, fn_id))
        lock = asyncio.Lock()
        done: list[Any] = []  # a RunComplete op's output

        async def record_all(ops: list[dict], *, waits_first: bool = True) -> None:
            if waits_first:  # results first, then waits, as Inngest does, then what suspends the run
                ops = sorted(ops, key=lambda op: _ORDER.get(str(op.get("op")), 2))
            async with lock:
                for op in ops:
                    if op.get("op") == "RunComplete":
                        done.append(op.get("data"))
                        continue
                    if op.get("op") == "DiscoveryRequest":  # the SDK ran out of time: call it again
                        continue
                    sid = step_id(op)
                    value = await self._record(ex, sid, op)
                    memo[hashed(sid)] = value
                    stack.append(hashed(sid))

        async def reported(ops: list[dict]) -> None:
            await record_all(ops, waits_first=False)

        async def call(att: int, targeted: bool, step: str = "step") -> tuple[int, Mapping[str, str], Any]:
            b = body(att, targeted)
            if not checkpointing or targeted:
                return await self._call(url, fn_id, b, run.id, step=step)
            qi_id = CHECKPOINTS.open(run.id, reported)
            b["ctx"].update(fn_id=fn_uuid, qi_id=qi_id)
            try:
                return await self._call(url, fn_id, b, run.id, step=step)
            finally:
                CHECKPOINTS.close(qi_id)

        async def run_planned(op: dict) -> None:
            sid = step_id(op)
            status, headers, answer = await call(retrying.get(sid, 0), True, step=str(op.get("id")))
            if status != 206:
                self._raise_call_error(status, headers, answer, url)
            await record_all(answer if isinstance(answer, list) else [answer])

        while True:
            status, headers, answer = await call(attempt, planned_mode)
            if status == 200:
                return answer
            if status != 206:
                self._raise_call_error(status, headers, answer, url)
            ops = answer if isinstance(answer, list) else [answer]
            planned = [op for op in ops if op.get("op") == "StepPlanned"]
            # steps reported in the answer (several with checkpointing), in order, then the plan
            await record_all([op for op in ops if op.get("op") != "StepPlanned"])
            if done:
                return done[0]
            if planned:
                if any((op.get("opts") or {}).get("parallelMode") == "race" for op in planned):
                    raise SdkUnsupported("parallel steps in race mode are not supported yet")
                planned_mode = True
                # each planned step is run by a call targeting it, concurrently, as Inngest does;
                # a retry or a wait in one branch suspends the run once every branch has settled
                results = await asyncio.gather(*(run_planned(op) for op in planned), return_exceptions=True)
                failures = [r for r in results if isinstance(r, BaseException)]
                failures.sort(key=lambda r: not isinstance(r, Interrupt))
                if failures:
                    raise failures[0]
            attempt = 0

    async def _record(self, ex: SdkExecution, sid: str, op: dict) -> Any:
        code = op.get("op")
        opts = op.get("opts") or {}
        if code == "StepRun":
            data = op.get("data")

            async def result() -> Any:
                return data
            return {"data": await ex.step_run(sid, result, (), {})}
        if code in ("StepError", "StepFailed"):
            exc = _remote_error(op.get("error") or {}, final=code == "StepFailed")

            async def fail() -> Any:
                raise exc
            try:
                await ex.step_run(sid, fail, (), {})
            except StepError as e:  # failed for good: the SDK raises it in the function
                return {"error": {k: e.error.get(k, "") for k in ("name", "message", "stack")}}
            raise SdkUnsupported(f"step {sid!r}: a failed step was recorded as a success")
        if code == "Sleep":
            await ex.step_sleep_until(sid, _wake_at(op))
            return None
        if code == "WaitForEvent":
            ev = await ex.step_wait(sid, str(op.get("name") or ""), None, opts.get("if"), opts.get("timeout"))
            return ev.to_dict() if ev is not None else None
        if code == "InvokeFunction":
            payload = opts.get("payload") or {}
            return {"data": await ex.step_invoke(sid, opts.get("function_id"), payload.get("data"),
                                                 opts.get("timeout"))}
        raise SdkUnsupported(f"step {sid!r}: opcode {code!r} is not supported yet")

    async def _call(self, url: str, fn_id: str, body: dict, run_id: str,
                    step: str = "step") -> tuple[int, Mapping[str, str], Any]:
        # Signed, the body is sent in canonical form (RFC 8785): the SDKs check the signature
        # against the canonical form of what they parsed.
        raw = canonical(body) if self.signing_key else orjson.dumps(body)
        headers = {"content-type": "application/json", "x-inngest-req-version": "2", "x-run-id": run_id,
                   "x-inngest-server-kind": "cloud" if self.signing_key else "dev"}
        if self.signing_key:
            headers["x-inngest-signature"] = sign(raw, self.signing_key)
        status: int
        answer_headers: Mapping[str, str]
        if url.startswith("http://"):
            try:
                status, answer_headers, content = await self.connections.post(url, fn_id, step, raw, headers,
                                                                               REQUEST_TIMEOUT)
            except CallError as exc:
                raise SdkCallFailed(f"the app at {url} could not be reached: {exc}") from None
        else:
            try:
                resp = await self.client.post(url, params={"fnId": fn_id, "stepId": step}, content=raw,
                                              headers=headers)
            except httpx.HTTPError as exc:
                raise SdkCallFailed(f"the app at {url} could not be reached: {type(exc).__name__}: {exc}") from None
            status, answer_headers, content = resp.status_code, resp.headers, resp.content
        if self.signing_key and status != 401 and not verify(
                content, answer_headers.get("x-inngest-signature"), self.signing_key):
            raise SdkCallFailed(f"the app at {url} answered {status} without a valid signature: "
                                "its INNGEST_SIGNING_KEY is not DURABLY_INNGEST_SIGNING_KEY (answer refused)")
        answer: Any = None
        if content:
            try:
                answer = orjson.loads(content)
            except orjson.JSONDecodeError:
                answer = content.decode("utf-8", "replace")
        return status, answer_headers, answer

    def _raise_call_error(self, status: int, headers: Mapping[str, str], answer: Any, url: str) -> None:
        err = answer if isinstance(answer, dict) else {"message": str(answer)[:500]}
        name = str(err.get("name") or err.get("code") or f"HTTP {status}")
        message = f"{name}: {err.get('message') or err.get('error') or ''}".rstrip(": ")
        if status == 401:
            raise SdkCallFailed(f"the app at {url} refused the call (401): its INNGEST_SIGNING_KEY is not "
                                "DURABLY_INNGEST_SIGNING_KEY" if self.signing_key else
                                f"the app at {url} refused the unsigned call (401): set DURABLY_INNGEST_SIGNING_KEY "
                                "to the app's INNGEST_SIGNING_KEY, or run the app with INNGEST_DEV=1")
        if (headers.get("x-inngest-no-retry") or "").lower() == "true":
            # the function failed for good: the run's error is named as the app named it
            raise _remote_error({"name": err.get("name") or "NonRetriableError",
                                 "message": err.get("message") or err.get("error") or name}, final=True)
        after = headers.get("retry-after")
        if after:
            raise RetryAfterError(message, after=_retry_after(after))
        raise SdkCallFailed(f"the app answered {status}: {message}")


def _retry_after(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        try:
            dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
            seconds = dt.timestamp() - datetime.now(timezone.utc).timestamp()
        except ValueError:
            from email.utils import parsedate_to_datetime
            seconds = parsedate_to_datetime(text).timestamp() - datetime.now(timezone.utc).timestamp()
    return min(max(seconds, 1.0), 86400.0)


class SdkFunctions(dict):
    """The SDK functions of the store's registry, as FunctionDefs whose body is the driver."""

    version = 0

    def update(self, configs: dict[str, dict], make: Callable[[dict], Any]) -> None:  # type: ignore[override]
        changed = False
        for fid in [f for f in self if f not in configs]:
            del self[fid]
            changed = True
        for fid, c in configs.items():
            old = self.get(fid)
            if old is not None and old._sdk_config == c:
                continue
            typed = FunctionConfig.from_json(c)
            fdef = FunctionDef(id=fid, fn=make(c), triggers=list(typed.triggers), retry=typed.retry,
                               concurrency=list(typed.concurrency), throttle=typed.throttle,
                               rate_limit=typed.rate_limit, debounce=typed.debounce, batch=typed.batch,
                               priority=typed.priority, idempotency=typed.idempotency, singleton=typed.singleton,
                               cancel_on=list(typed.cancel_on), timeouts=typed.timeouts, name=typed.name)
            fdef._sdk_config = c  # type: ignore[attr-defined]
            self[fid] = fdef
            changed = True
        if changed:
            self.version += 1
