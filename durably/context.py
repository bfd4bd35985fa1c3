"""The ``ctx`` a durable function receives."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from .core.events import Event

if TYPE_CHECKING:
    from .steps import StepPort


class _ReplayFilter(logging.Filter):
    def __init__(self, execution: "StepPort"):
        super().__init__()
        self._ex = execution

    def filter(self, record: logging.LogRecord) -> bool:
        return not self._ex.replaying


class _RunLogger(logging.LoggerAdapter):
    """Logs with the run's id and function; silent while replaying finished steps."""

    def __init__(self, logger: logging.Logger, execution: "StepPort"):
        super().__init__(logger, {"run_id": execution.run.id, "function_id": execution.run.function_id})
        self._ex = execution

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging API
        return not self._ex.replaying and self.logger.isEnabledFor(level)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return f"[{self._ex.run.function_id} {self._ex.run.id}] {msg}", kwargs


class Context:
    """What a run knows about itself: its event(s), ids, attempt, tenant, steps and logger."""

    def __init__(self, execution: "StepPort", step: Any):
        self._ex = execution
        run = execution.run
        self.run_id: str = run.id
        self.function_id: str = run.function_id
        self.tenant: str = run.tenant
        self.step = step

    # Built on first use: a run that never reads them does not pay for them.

    @functools.cached_property
    def event(self) -> Event:
        """The trigger event; ``ctx.event.data`` is its JSON dict, ``ctx.event.model`` the data parsed
        with the function's schema (``on_event(name, schema=Model)``), None without one."""
        return self._typed(Event.from_dict(_strip(self._ex.run.event)))

    @functools.cached_property
    def events(self) -> list[Event]:
        run = self._ex.run
        return [self._typed(Event.from_dict(_strip(e))) for e in run.events] if run.events else [self.event]

    def _typed(self, event: Event) -> Event:
        fdef = getattr(self._ex, "fdef", None)
        adapter = fdef.event_adapter(event.name) if fdef is not None else None
        if adapter is not None:
            event.__dict__["_adapter"] = adapter  # ``event.model`` parses with it, on first use
        return event

    @functools.cached_property
    def logger(self) -> logging.LoggerAdapter:
        return _RunLogger(logging.getLogger(f"durably.run.{self.function_id}"), self._ex)

    @property
    def attempt(self) -> int:
        """0 on the first try. Inside a step: how many times that step failed before; outside
        steps: how many times the run was retried."""
        step_attempt = self._ex.current_attempt.get()
        return self._ex.run.attempt if step_attempt is None else step_attempt

    def patched(self, change_id: str) -> bool:
        """Whether this run takes the new code path of a deploy's change ``change_id``.

        True for a run that reaches this call on code that has the change (recorded, so its
        later replays answer True too); False for a run that old code, without the call, had
        already taken past this point: it keeps the old path. Write
        ``if ctx.patched("x"): new steps else: old steps``; once no run of the old code is
        left, drop the old branch (keep the call while runs that recorded it may replay).
        """
        return self._ex.patched(change_id)

    @property
    def step_key(self) -> str | None:
        """``run_id:step_id`` of the step running now: an idempotency key for side effects."""
        sid = self._ex.current_step.get()
        return f"{self.run_id}:{sid}" if sid else None

    def __repr__(self) -> str:
        return f"<Context run={self.run_id} function={self.function_id} event={self.event.name}>"


def _strip(e: dict) -> dict:
    return {k: e[k] for k in ("name", "data", "id", "ts", "user") if k in e}
