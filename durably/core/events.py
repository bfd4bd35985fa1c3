"""Events: what triggers functions."""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInput
from .ids import new_id
from .jsonutil import EVENT_MAX_BYTES, dumps, loads

FUNCTION_FAILED = "durably/function.failed"
FUNCTION_FINISHED = "durably/function.finished"
FUNCTION_INVOKED = "durably/function.invoked"
CRON_EVENT = "durably/cron"
MANUAL_EVENT = "durably/function.run"

# --- the grammar of event names ---------------------------------------------------------------
#
# An event name is 1 to 256 characters: one or more segments separated by '/' (such as
# ``inbox.counts.dirty``, ``app/user.created``, ``background/process.requested``), none of
# them empty, '.' or '..' (so no leading, trailing or doubled '/'); no control characters
# (C0, DEL, C1), no line or paragraph separators, no '\\', no lone surrogates; no whitespace
# at either end. The HTTP API documents the same grammar as a pattern (``NAME_PATTERN``).
EVENT_NAME_MAX = 256
EVENT_ID_MAX = 512  # the ids durably makes (cron:{event_name}:{window_start}) fit; so does an index entry
MAX_TS_MS = 253402300799999  # 9999-12-31T23:59:59.999Z

# As regex escapes: the pattern is JSON text too. Lone surrogates cannot travel in JSON (nor be
# written in a pattern most regex engines take), so only the Python check names them.
_FORBIDDEN = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
_SURROGATES = r"\ud800-\udfff"
_SEGMENT = f"[^{_FORBIDDEN}\\\\/]+"
NAME_PATTERN = (r"^(?!\s)(?!.*\s$)(?!(?:.*/)?\.\.?(?:/|$))"  # no whitespace at the ends, no . or .. segment
                + f"{_SEGMENT}(?:/{_SEGMENT})*$")
_NAME_RE = re.compile(NAME_PATTERN.replace(_FORBIDDEN, _FORBIDDEN + _SURROGATES))
_BAD_CHAR = re.compile(f"[{_FORBIDDEN}{_SURROGATES}]")


def _short(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


def name_problem(name: Any) -> str | None:
    """Why ``name`` is not a valid event name (one line), or None when it is one."""
    if not isinstance(name, str) or not name:
        return f"event name must be a non-empty string, got {name!r}"
    if len(name) <= EVENT_NAME_MAX and _NAME_RE.match(name):
        return None
    if len(name) > EVENT_NAME_MAX:
        return f"event name {_short(name)} is {len(name):,} characters; at most {EVENT_NAME_MAX}"
    bad = _BAD_CHAR.search(name)
    if bad is not None:
        return (f"event name {_short(name)} holds the character {bad.group()!r} at position {bad.start()}: "
                "control characters, line separators and invalid Unicode are not allowed")
    if not name.strip():
        return f"event name must be a non-empty string, got {name!r}"
    if name != name.strip():
        return f"event name {_short(name)} must not start or end with whitespace"
    if "\\" in name:
        return f"event name {_short(name)} must not hold '\\'"
    return (f"event name {_short(name)}: segments are separated by single '/' and none may be empty, '.' or '..' "
            "(e.g. 'app/user.created')")


def check_name(name: Any) -> str:
    """``name`` if it is a valid event name; else InvalidInput saying why."""
    problem = name_problem(name)
    if problem is not None:
        raise InvalidInput(problem)
    return str(name)


def id_problem(value: str, what: str = "id", limit: int = EVENT_ID_MAX) -> str | None:
    """Why an id cannot be stored (NUL, lone surrogates, over ``limit`` characters), or None."""
    if len(value) > limit:
        return f"{what} is {len(value):,} characters; at most {limit}"
    if "\x00" in value:
        return f"{what} {_short(value)} holds a NUL character"
    bad = re.search(f"[{_SURROGATES}]", value)
    if bad is not None:
        return f"{what} {_short(value)} is not valid Unicode text ({bad.group()!r} at position {bad.start()})"
    return None


_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")  # \u0000 not itself escaped, in JSON text


def nul_path(value: Any, path: str = "") -> str | None:
    """Where the first NUL character is in a JSON value (``data.a[2]``, or a key), or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and "\x00" in k:
                return f"{path} (key {_short(k)})"
            found = nul_path(v, f"{path}.{k}")
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = nul_path(v, f"{path}[{i}]")
            if found is not None:
                return found
    return None


# The W3C trace context an event carries from the code that sent it (``traceparent`` and
# ``tracestate`` headers, https://www.w3.org/TR/trace-context/): the run's span joins that trace.
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
TRACESTATE_MAX = 512


def check_trace(value: Any, what: str = "trace") -> dict[str, str]:
    """``value`` as a trace context ``{"traceparent": ..., "tracestate": ...}``; else InvalidInput."""
    if not isinstance(value, dict) or set(value) - {"traceparent", "tracestate"} or "traceparent" not in value:
        raise InvalidInput(f"{what} must be an object with 'traceparent' and optionally 'tracestate'")
    parent = value["traceparent"]
    if not isinstance(parent, str) or not TRACEPARENT.match(parent):
        raise InvalidInput(f"{what}: traceparent {_short(str(parent))} is not a W3C traceparent "
                           "(00-<32 hex>-<16 hex>-<2 hex>)")
    state = value.get("tracestate")
    if state is not None and (not isinstance(state, str) or len(state) > TRACESTATE_MAX
                              or _BAD_CHAR.search(state)):
        raise InvalidInput(f"{what}: tracestate must be text of at most {TRACESTATE_MAX} characters")
    return {k: v for k, v in value.items() if v is not None}


@dataclass
class Event:
    """An event: ``Event(name, data=None, id=None, ts=None, user=None)``.

    ``id`` defaults to a time-ordered unique id and ``ts`` to now in milliseconds. Sending
    an id that the env saw within 24 h is accepted and triggers nothing again.
    """

    name: str
    data: dict[str, Any] | None = None
    id: str | None = None
    ts: int | None = None
    user: dict[str, Any] | None = None
    trace: dict[str, str] | None = field(default=None, repr=False, compare=False)
    _extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.data is None:
            self.data = {}
        if not isinstance(self.data, dict):
            raise InvalidInput(f"event {self.name!r}: data must be a JSON object, got {type(self.data).__name__}")
        if self.user is not None and not isinstance(self.user, dict):
            raise InvalidInput(f"event {self.name!r}: user must be a JSON object")
        if self.id is None or self.id == "":
            self.id = new_id()
        elif not isinstance(self.id, str):
            raise InvalidInput(f"event {self.name!r}: id must be a string, got {self.id!r}")
        else:
            problem = id_problem(self.id)
            if problem is not None:
                raise InvalidInput(f"event {self.name!r}: {problem}")
        if self.trace is not None:
            self.trace = check_trace(self.trace, f"event {self.name!r}: trace")
        if self.ts is None:
            self.ts = int(time.time() * 1000)
        elif isinstance(self.ts, bool) or not isinstance(self.ts, (int, float)):
            raise InvalidInput(f"event {self.name!r}: ts must be milliseconds since the epoch")
        elif not 0 <= self.ts <= MAX_TS_MS:  # False for NaN too
            raise InvalidInput(f"event {self.name!r}: ts must be milliseconds since the epoch, from 0 to "
                               f"{MAX_TS_MS} (9999-12-31), got {self.ts!r}")
        else:
            self.ts = int(self.ts)

    @functools.cached_property
    def model(self) -> Any:
        """The data parsed with the schema its function declared (``on_event(name, schema=Model)``):
        a ``Model`` instance, on ``ctx.event`` and ``ctx.events`` inside a run; None where no schema
        applies (an untyped trigger, an event not received by a run). ``data`` stays the dict."""
        adapter = self.__dict__.get("_adapter")
        if adapter is None:
            return None
        from .eventschema import check_model

        return check_model(adapter, self.name, self.data)

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "data": self.data, "id": self.id, "ts": self.ts}
        if self.user is not None:
            out["user"] = self.user
        if self.trace:
            out["trace"] = self.trace
        return out

    def encode(self) -> str:
        """The stored JSON form; raises a clear error if not serializable, over 1 MiB, or
        holding a NUL character (which PostgreSQL cannot store: refused on every store)."""
        d = self.to_dict()
        text = dumps(d, what=f"event {self.name!r}", limit=EVENT_MAX_BYTES)
        if "\\u0000" in text and _JSON_NUL.search(text):
            where = nul_path(d.get("data"), "data") or nul_path(d.get("user"), "user") or "the event"
            raise InvalidInput(f"event {self.name!r}: {where} holds a NUL character (\\u0000), which the "
                               "store cannot hold")
        return text

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Event":
        if not isinstance(d, dict):
            raise InvalidInput("an event must be a JSON object with at least a 'name'")
        unknown = set(d) - {"name", "data", "id", "ts", "user", "trace", "v"}
        if unknown:
            raise InvalidInput(f"unknown event field(s): {', '.join(sorted(unknown))}")
        if "name" not in d:
            raise InvalidInput("event field 'name' is required")
        return cls(name=d["name"], data=d.get("data"), id=d.get("id"), ts=d.get("ts"), user=d.get("user"),
                   trace=d.get("trace"))

    @classmethod
    def decode(cls, text: str | None) -> "Event | None":
        return None if text is None else cls.from_dict(loads(text))


def coerce_events(events: Any) -> list[Event]:
    if isinstance(events, Event):
        return [events]
    if isinstance(events, dict):
        return [Event.from_dict(events)]
    if isinstance(events, (list, tuple)):
        out = []
        for e in events:
            out.extend(coerce_events(e) if not isinstance(e, (list, tuple)) else [])
        if len(out) != len(events):
            raise InvalidInput("send takes an Event, a dict, or a flat list of them")
        return out
    raise InvalidInput(f"cannot send {type(events).__name__}: pass a durably.Event or a list of them")


def failure_event(function_id: str, run_id: str, reason: str, error: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """The ``durably/function.failed`` event emitted when a run fails for good."""
    return Event(FUNCTION_FAILED, {
        "function_id": function_id, "run_id": run_id, "reason": reason,
        "error": {k: error[k] for k in ("name", "message") if k in error}, "event": event,
    }).to_dict()
