"""``FunctionDef``: a declared function, its code and its options.

The options themselves (triggers, ``Retry``, ``Concurrency``, ``Throttle``, ...) live in
``durably.core.options`` and are re-exported here. A function's ``config()`` is the JSON
form (``core.options.FunctionConfig``) that workers write to the store's registry, so a
server without the app's code knows every function.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from .core.events import FUNCTION_INVOKED, MANUAL_EVENT
from .core.options import (Batch, CancelOn, Concurrency, CronTrigger, Debounce, EventTrigger, Fairness, FunctionConfig, Priority,
                           RateLimit, Retry, Singleton, Throttle, Timeouts, _cel, coerce_retry, event_schema_of, on_cron,
                           on_event)

__all__ = ["FunctionDef", "FunctionConfig", "EventTrigger", "CronTrigger", "on_event", "on_cron", "Retry", "coerce_retry",
           "Concurrency", "Throttle", "RateLimit", "Debounce", "Batch", "Priority", "Singleton", "CancelOn", "Timeouts", "Fairness"]


# --- the function ----------------------------------------------------------------------------


@dataclass
class FunctionDef:
    id: str
    fn: Callable[..., Any]
    triggers: list[EventTrigger | CronTrigger]
    retry: Retry
    concurrency: list[Concurrency] = field(default_factory=list)
    throttle: Throttle | None = None
    rate_limit: RateLimit | None = None
    debounce: Debounce | None = None
    batch: Batch | None = None
    priority: Priority | None = None
    idempotency: str | None = None
    singleton: Singleton | None = None
    cancel_on: list[CancelOn] = field(default_factory=list)
    timeouts: Timeouts | None = None
    tenant: str | None = None
    fairness: Fairness | None = None
    on_failure: Callable[..., Any] | None = None
    name: str | None = None
    is_async: bool = True
    internal: bool = False  # e.g. a function's on_failure handler

    def __post_init__(self) -> None:
        self.is_async = asyncio.iscoroutinefunction(self.fn) or inspect.iscoroutinefunction(
            getattr(self.fn, "__call__", None)
        )

    @property
    def event_triggers(self) -> list[EventTrigger]:
        return [t for t in self.triggers if isinstance(t, EventTrigger)]

    @property
    def cron_triggers(self) -> list[CronTrigger]:
        return [t for t in self.triggers if isinstance(t, CronTrigger)]

    @property
    def event_schema(self) -> dict | None:
        """The JSON Schema of this function's event data (its first typed trigger's), or None."""
        return event_schema_of(self.triggers)

    def event_adapter(self, name: str) -> Any:
        """The pydantic adapter of event ``name``'s data: the trigger of that name's (None if it
        is untyped); for a manual run (Run now) or an invoke, the function's first
        typed trigger's; None for a function without a schema and for other events (cron ticks)."""
        named = [t for t in self.event_triggers if t.event == name]
        if named:
            return next((t.adapter for t in named if t.adapter is not None), None)
        if name not in (MANUAL_EVENT, FUNCTION_INVOKED):
            return None
        return next((t.adapter for t in self.event_triggers if t.adapter is not None), None)

    def config(self) -> dict:
        """The JSON-able description stored in the registry (no code, no secrets)."""
        return FunctionConfig(
            id=self.id, name=self.name or self.id, triggers=tuple(self.triggers), retry=self.retry,
            concurrency=tuple(self.concurrency), throttle=self.throttle, rate_limit=self.rate_limit,
            debounce=self.debounce, batch=self.batch, priority=self.priority, idempotency=self.idempotency,
            singleton=self.singleton, cancel_on=tuple(self.cancel_on), timeouts=self.timeouts, tenant=self.tenant,
            fairness=self.fairness, has_on_failure=self.on_failure is not None, internal=self.internal,
            event_schema=self.event_schema,
        ).to_json()
