"""The options of a durable function, and ``FunctionConfig``: one typed model of a
function's registry entry that round-trips its JSON.

Every option is validated when it is built: CEL compiles, cron parses, durations parse
(and are kept in seconds). ``FunctionDef.config()`` (the JSON workers write to the store's
registry) is ``FunctionConfig.of(fdef).to_json()``, and anything that reads the registry
without the app's code (``durably functions``, the dashboard, the store's planning) can
turn that JSON back into the same typed options with ``FunctionConfig.from_json``. A new
option is a field here, its use in ``core/flow.py``, and where it is shown.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Mapping

from . import eventschema
from .durations import parse_duration
from .events import name_problem
from ..errors import ExpressionError, InvalidInput
from .expressions import compile_expr


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
    # Typed events: the JSON Schema of the event's data (registered), and, where the code is
    # loaded, the pydantic TypeAdapter it came from (``app.send`` validates, ``ctx.event.model``).
    json_schema: dict[str, Any] | None = field(default=None, hash=False)
    adapter: Any = field(default=None, compare=False, hash=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"event": self.event, "if": self.if_}
        if self.json_schema is not None:
            d["schema"] = self.json_schema
        return d


@dataclass(frozen=True)
class CronTrigger:
    cron: str
    tz: str = "UTC"
    overlap: str = "allow"  # allow, skip, buffer_one: a tick while the previous tick's run is open

    def to_dict(self) -> dict[str, Any]:
        d = {"cron": self.cron, "tz": self.tz}
        if self.overlap != "allow":
            d["overlap"] = self.overlap
        return d


RESERVED_PREFIX = "durably/"  # durably's own events (cron ticks, Run now, failures): no schema


def on_event(name: str, if_: str | None = None, schema: Any = None) -> EventTrigger:
    """Trigger on every event called ``name`` (``if_``: a CEL filter over ``event``).

    ``schema``: the type of the event's data (a pydantic model, a TypedDict, a dataclass:
    anything pydantic's ``TypeAdapter`` takes). Its JSON Schema is registered with the
    function, and an event of that name whose data does not validate is refused where it
    is sent (``durably.InvalidEvent``); ``ctx.event.model`` is the parsed data.
    """
    problem = name_problem(name)
    if problem is not None:  # an event of that name could never be sent
        raise InvalidInput(f"on_event: {problem}")
    if_ = _cel(if_, f"on_event({name!r}) if_")
    if schema is None:
        return EventTrigger(name, if_)
    what = f"on_event({name!r})"
    if name.startswith(RESERVED_PREFIX):
        raise InvalidInput(f"{what}: events named {RESERVED_PREFIX}... are durably's own and take no schema")
    adapter = eventschema.adapter_of(schema, what)
    return EventTrigger(name, if_, eventschema.json_schema_of(adapter, what), adapter)


OVERLAPS = ("allow", "skip", "buffer_one")


def on_cron(expr: str, tz: str = "UTC", overlap: str = "allow") -> CronTrigger:
    """Trigger on a cron schedule, computed in time zone ``tz``.

    Five fields (minute hour day month weekday), or six with seconds first. ``overlap``: what a
    tick does while the previous tick's run has not ended: ``allow`` (start anyway), ``skip``
    (recorded as skipped, reason ``overlap``), ``buffer_one`` (one tick waits and starts when
    the open run ends; later ones are skipped).
    """
    from .cron import validate_cron

    validate_cron(expr, tz)
    if overlap not in OVERLAPS:
        raise InvalidInput(f"on_cron({expr!r}): overlap must be one of {', '.join(OVERLAPS)}, got {overlap!r}")
    return CronTrigger(expr, tz, overlap)


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
        return float(base)


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
class Fairness:
    """Round-robin claims across keys: when many runs of the function are ready, the oldest
    ready run of each key is taken in turn. ``key``: CEL over ``event`` (default the tenant)."""

    key: str | None = None

    def __post_init__(self) -> None:
        _cel(self.key, "Fairness key")


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


# --- the registry entry ----------------------------------------------------------------------


def _opt(cls: type, value: Any) -> Any:
    return None if value is None else cls(**value)


def _cancel_on(d: Mapping[str, Any]) -> CancelOn:
    return CancelOn(**{("if_" if k == "if" else k): v for k, v in d.items()})


def _trigger(d: Mapping[str, Any]) -> EventTrigger | CronTrigger:
    if "cron" in d:
        return CronTrigger(d["cron"], d.get("tz", "UTC"), d.get("overlap", "allow"))
    schema = d.get("schema")
    return EventTrigger(d["event"], d.get("if"), schema if isinstance(schema, dict) else None)


def event_schema_of(triggers: Any) -> dict[str, Any] | None:
    """A function's event schema: the JSON Schema of its first typed event trigger, or None."""
    return next((t.json_schema for t in triggers if isinstance(t, EventTrigger) and t.json_schema is not None), None)


def _schema_of(d: Mapping[str, Any]) -> dict[str, Any] | None:
    schema = d.get("event_schema")
    if isinstance(schema, dict):
        return schema
    return event_schema_of(_trigger(t) for t in d.get("triggers") or [])  # entries written before the field


@dataclass(frozen=True)
class FunctionConfig:
    """A function as its registry entry describes it: no code, no secrets, every option typed."""

    id: str
    name: str
    triggers: tuple[EventTrigger | CronTrigger, ...]
    retry: Retry
    concurrency: tuple[Concurrency, ...] = ()
    throttle: Throttle | None = None
    rate_limit: RateLimit | None = None
    debounce: Debounce | None = None
    batch: Batch | None = None
    priority: Priority | None = None
    idempotency: str | None = None
    singleton: Singleton | None = None
    cancel_on: tuple[CancelOn, ...] = ()
    timeouts: Timeouts | None = None
    tenant: str | None = None
    fairness: Fairness | None = None
    has_on_failure: bool = False
    internal: bool = False
    # The JSON Schema of the function's event data (its first typed trigger's), or None: what
    # GET /api/v1/functions shows, what Run now validates against and builds its form from.
    event_schema: dict[str, Any] | None = field(default=None, hash=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "FunctionConfig":
        """The typed config of a registry entry (``InvalidInput`` if it does not validate)."""
        try:
            return cls(
                id=d["id"], name=d.get("name") or d["id"],
                triggers=tuple(_trigger(t) for t in d.get("triggers") or []),
                retry=Retry(**d["retry"]) if d.get("retry") else Retry(attempts=4),
                concurrency=tuple(Concurrency(**c) for c in d.get("concurrency") or []),
                throttle=_opt(Throttle, d.get("throttle")), rate_limit=_opt(RateLimit, d.get("rate_limit")),
                debounce=_opt(Debounce, d.get("debounce")), batch=_opt(Batch, d.get("batch")),
                priority=_opt(Priority, d.get("priority")), idempotency=d.get("idempotency"),
                singleton=_opt(Singleton, d.get("singleton")),
                cancel_on=tuple(_cancel_on(c) for c in d.get("cancel_on") or []),
                timeouts=_opt(Timeouts, d.get("timeouts")), tenant=d.get("tenant"),
                fairness=_opt(Fairness, d.get("fairness")),
                has_on_failure=bool(d.get("has_on_failure")), internal=bool(d.get("internal")),
                event_schema=_schema_of(d),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidInput(f"function config {d.get('id')!r}: not a registry entry ({exc})") from None

    def to_json(self) -> dict[str, Any]:
        """The registry entry's JSON (what ``FunctionDef.config()`` returns)."""

        def opt(o: Any) -> Any:
            return None if o is None else asdict(o)

        return {
            "id": self.id,
            "name": self.name,
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
            "fairness": opt(self.fairness),
            "has_on_failure": self.has_on_failure,
            "internal": self.internal,
            "event_schema": self.event_schema,
        }

    def flow_control(self) -> list[str]:
        """One line per flow-control option, as ``durably functions`` and the dashboard show it."""
        lines = []
        for c in self.concurrency:
            per = f" per {c.key}" if c.key else ""
            lines.append(f"concurrency {c.limit}{per}" + (" (env-wide)" if c.scope == "env" else ""))
        if self.throttle is not None:
            t = self.throttle
            lines.append(f"throttle {t.limit}/{_seconds(t.period)}" + (f" burst {t.burst}" if t.burst > 1 else "")
                         + (f" per {t.key}" if t.key else ""))
        if self.rate_limit is not None:
            r = self.rate_limit
            lines.append(f"rate limit {r.limit}/{_seconds(r.period)}" + (f" per {r.key}" if r.key else ""))
        if self.debounce is not None:
            lines.append(f"debounce {_seconds(self.debounce.period)}" + (f" per {self.debounce.key}" if self.debounce.key else ""))
        if self.batch is not None:
            lines.append(f"batch {self.batch.max_size} or {_seconds(self.batch.timeout)}"
                         + (f" per {self.batch.key}" if self.batch.key else ""))
        if self.singleton is not None:
            lines.append(f"singleton ({self.singleton.mode})" + (f" per {self.singleton.key}" if self.singleton.key else ""))
        if self.idempotency:
            lines.append(f"idempotency {self.idempotency}")
        if self.priority is not None:
            lines.append(f"priority {self.priority.run}")
        if self.fairness is not None:
            lines.append(f"fair share per {self.fairness.key or 'tenant'}")
        return lines


def _seconds(s: float) -> str:
    """A duration in seconds as its shortest unit: 60 -> "1m", 90 -> "90s", 0.5 -> "500ms"."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size and s % size == 0:
            return f"{int(s // size)}{unit}"
    return f"{int(s)}s" if s >= 1 else f"{round(s * 1000)}ms"
