"""Declarations: triggers, retry and flow-control options, and the function definition.

Everything here is validated when a function is declared: CEL compiles, cron parses,
durations parse. A function's ``config()`` is the JSON form that workers write to the
store's registry, so a server without the app's code knows every function.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Literal

from .core.durations import parse_duration
from .core.events import name_problem
from .errors import ExpressionError, InvalidInput
from .core.expressions import compile_expr


def _cel(expr: str | None, what: str) -> str | None:
    if expr is None:
        return None
    try:
        compile_expr(expr)
    except ExpressionError as exc:
        raise ExpressionError(f"{what}: {exc}") from None
    return expr


# --- triggers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventTrigger:
    event: str
    if_: str | None = None

    def to_dict(self) -> dict:
        return {"event": self.event, "if": self.if_}


@dataclass(frozen=True)
class CronTrigger:
    cron: str
    tz: str = "UTC"

    def to_dict(self) -> dict:
        return {"cron": self.cron, "tz": self.tz}


def on_event(name: str, if_: str | None = None) -> EventTrigger:
    """Trigger on every event called ``name`` (``if_``: a CEL filter over ``event``)."""
    problem = name_problem(name)
    if problem is not None:  # an event of that name could never be sent
        raise InvalidInput(f"on_event: {problem}")
    return EventTrigger(name, _cel(if_, f"on_event({name!r}) if_"))


def on_cron(expr: str, tz: str = "UTC") -> CronTrigger:
    """Trigger on a cron schedule, computed in time zone ``tz``.

    Five fields (minute hour day month weekday), or six with seconds first.
    """
    from .core.cron import validate_cron

    validate_cron(expr, tz)
    return CronTrigger(expr, tz)


# --- retries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Retry:
    """Retry policy: ``attempts`` in all (the first try included), exponential backoff.

    ``retries=4`` on a function is ``Retry(attempts=5)``.
    """

    attempts: int = 5
    initial: Any = "1s"
    max: Any = "10m"
    factor: float = 2.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise InvalidInput(f"Retry(attempts={self.attempts!r}): attempts must be an integer >= 1")
        object.__setattr__(self, "initial", parse_duration(self.initial, name="Retry initial"))
        object.__setattr__(self, "max", parse_duration(self.max, name="Retry max"))
        if self.factor < 1:
            raise InvalidInput(f"Retry(factor={self.factor!r}): factor must be >= 1")

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure (1-based)."""
        base = min(self.max, self.initial * (self.factor ** max(0, failures - 1)))
        if self.jitter:
            base = base * (0.5 + random.random() / 2)  # equal jitter: never less than half
        return base


def coerce_retry(retries: int | Retry | None) -> Retry:
    if retries is None:
        return Retry(attempts=4)  # three retries by default
    if isinstance(retries, Retry):
        return retries
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidInput(f"retries={retries!r}: use an integer >= 0 or durably.Retry(...)")
    return Retry(attempts=retries + 1)


# --- flow control ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Concurrency:
    """At most ``limit`` running runs (per value of ``key``; per function, or env-wide)."""

    limit: int
    key: str | None = None
    scope: Literal["fn", "env"] = "fn"

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise InvalidInput(f"Concurrency(limit={self.limit!r}): limit must be an integer >= 1")
        if self.scope not in ("fn", "env"):
            raise InvalidInput(f"Concurrency(scope={self.scope!r}): scope must be 'fn' or 'env'")
        if self.scope == "env" and self.key is None:
            raise InvalidInput("Concurrency(scope='env') needs a key shared by the functions that name it")
        _cel(self.key, "Concurrency key")


@dataclass(frozen=True)
class Throttle:
    """At most ``limit`` starts per ``period`` (per key); the excess is delayed, not dropped."""

    limit: int
    period: Any
    burst: int = 1
    key: str | None = None

    def __post_init__(self) -> None:
        if self.limit < 1 or self.burst < 1:
            raise InvalidInput("Throttle: limit and burst must be >= 1")
        object.__setattr__(self, "period", parse_duration(self.period, name="Throttle period"))
        if self.period <= 0:
            raise InvalidInput("Throttle: period must be > 0")
        _cel(self.key, "Throttle key")


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` runs per ``period`` (per key); the excess events create no run."""

    limit: int
    period: Any
    key: str | None = None

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise InvalidInput("RateLimit: limit must be >= 1")
        object.__setattr__(self, "period", parse_duration(self.period, name="RateLimit period"))
        if self.period <= 0:
            raise InvalidInput("RateLimit: period must be > 0")
        _cel(self.key, "RateLimit key")


@dataclass(frozen=True)
class Debounce:
    """Run once, ``period`` after the last event of a burst (per key), with that last event."""

    period: Any
    key: str | None = None
    timeout: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "period", parse_duration(self.period, name="Debounce period"))
        if self.timeout is not None:
            object.__setattr__(self, "timeout", parse_duration(self.timeout, name="Debounce timeout"))
        _cel(self.key, "Debounce key")


@dataclass(frozen=True)
class Batch:
    """One run receives up to ``max_size`` events (``ctx.events``), or fewer after ``timeout``."""

    max_size: int
    timeout: Any
    key: str | None = None

    def __post_init__(self) -> None:
        if self.max_size < 1:
            raise InvalidInput("Batch: max_size must be >= 1")
        object.__setattr__(self, "timeout", parse_duration(self.timeout, name="Batch timeout"))
        _cel(self.key, "Batch key")


@dataclass(frozen=True)
class Priority:
    """``run``: CEL giving seconds ahead of (positive) or behind (negative) others, -600..600."""

    run: str

    def __post_init__(self) -> None:
        _cel(self.run, "Priority run")


@dataclass(frozen=True)
class Singleton:
    """One run at a time (per key): a new one is skipped, or cancels the running one."""

    key: str | None = None
    mode: Literal["skip", "cancel"] = "skip"

    def __post_init__(self) -> None:
        if self.mode not in ("skip", "cancel"):
            raise InvalidInput(f"Singleton(mode={self.mode!r}): mode must be 'skip' or 'cancel'")
        _cel(self.key, "Singleton key")


@dataclass(frozen=True)
class CancelOn:
    """Cancel the run when ``event`` arrives whose ``match`` field equals the trigger's."""

    event: str
    match: str | None = None
    if_: str | None = None
    timeout: Any = None

    def __post_init__(self) -> None:
        problem = name_problem(self.event)
        if problem is not None:
            raise InvalidInput(f"CancelOn: {problem}")
        _cel(self.if_, "CancelOn if_")
        if self.timeout is not None:
            object.__setattr__(self, "timeout", parse_duration(self.timeout, name="CancelOn timeout"))


@dataclass(frozen=True)
class Timeouts:
    """``start``: cancel a run not started in time; ``finish``: fail a run not finished in time."""

    start: Any = None
    finish: Any = None

    def __post_init__(self) -> None:
        for name in ("start", "finish"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, parse_duration(v, name=f"Timeouts {name}"))


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

    def config(self) -> dict:
        """The JSON-able description stored in the registry (no code, no secrets)."""

        def opt(o: Any) -> Any:
            return None if o is None else asdict(o)

        return {
            "id": self.id,
            "name": self.name or self.id,
            "triggers": [t.to_dict() for t in self.triggers],
            "retry": asdict(self.retry),
            "concurrency": [asdict(c) for c in self.concurrency],
            "throttle": opt(self.throttle),
            "rate_limit": opt(self.rate_limit),
            "debounce": opt(self.debounce),
            "batch": opt(self.batch),
            "priority": opt(self.priority),
            "idempotency": self.idempotency,
            "singleton": opt(self.singleton),
            "cancel_on": [asdict(c) for c in self.cancel_on],
            "timeouts": opt(self.timeouts),
            "tenant": self.tenant,
            "has_on_failure": self.on_failure is not None,
            "internal": self.internal,
        }
