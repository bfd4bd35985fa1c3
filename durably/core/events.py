"""Events: what triggers functions."""

from __future__ import annotations

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
    _extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidInput(f"event name must be a non-empty string, got {self.name!r}")
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
        if self.ts is None:
            self.ts = int(time.time() * 1000)
        elif isinstance(self.ts, bool) or not isinstance(self.ts, (int, float)):
            raise InvalidInput(f"event {self.name!r}: ts must be milliseconds since the epoch")
        else:
            self.ts = int(self.ts)

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "data": self.data, "id": self.id, "ts": self.ts}
        if self.user is not None:
            out["user"] = self.user
        return out

    def encode(self) -> str:
        """The stored JSON form; raises a clear error if not serializable or over 1 MiB."""
        return dumps(self.to_dict(), what=f"event {self.name!r}", limit=EVENT_MAX_BYTES)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Event":
        if not isinstance(d, dict):
            raise InvalidInput("an event must be a JSON object with at least a 'name'")
        unknown = set(d) - {"name", "data", "id", "ts", "user", "v"}
        if unknown:
            raise InvalidInput(f"unknown event field(s): {', '.join(sorted(unknown))}")
        if "name" not in d:
            raise InvalidInput("event field 'name' is required")
        return cls(name=d["name"], data=d.get("data"), id=d.get("id"), ts=d.get("ts"), user=d.get("user"))

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


def failure_event(function_id: str, run_id: str, reason: str, error: dict, event: dict) -> dict:
    """The ``durably/function.failed`` event emitted when a run fails for good."""
    return Event(FUNCTION_FAILED, {
        "function_id": function_id, "run_id": run_id, "reason": reason,
        "error": {k: error[k] for k in ("name", "message") if k in error}, "event": event,
    }).to_dict()
