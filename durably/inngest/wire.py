"""The protocol's wire forms, shared by the driver and the endpoints (pure)."""

from __future__ import annotations

import hashlib
from typing import Any

from ..core.events import CRON_EVENT, FUNCTION_FAILED, FUNCTION_INVOKED

# durably's internal event names as the SDKs know them
SDK_EVENT_NAMES = {FUNCTION_FAILED: "inngest/function.failed", CRON_EVENT: "inngest/scheduled.timer",
                   FUNCTION_INVOKED: "inngest/function.invoked"}


def hashed(sid: str) -> str:
    """The SDK's id of a step: sha1 of its (numbered) id, as every Inngest SDK computes it."""
    return sid[1:] if sid.startswith("#") else hashlib.sha1(sid.encode()).hexdigest()


def step_id(op: dict) -> str:
    """The durably step id of an op: the id the user wrote, numbered as the SDK numbered it."""
    user = op.get("userland") or {}
    uid, index = user.get("id") or op.get("displayName") or op.get("name"), user.get("index")
    sid = uid if not index else f"{uid}:{index}"
    if not isinstance(sid, str) or hashed(sid) != op.get("id"):
        return "#" + str(op.get("id"))  # the SDK's hash is all we can key it by
    return sid


def memo_value(kind: str, status: str, output: Any, error: Any) -> tuple[bool, Any]:
    """What the SDK expects as the memo of a recorded step (decoded output and error), if settled."""
    if status == "completed":
        if kind in ("run", "invoke"):
            return True, {"data": output}
        if kind == "sleep":
            return True, None
        return True, output or None
    if status == "failed":
        err = error or {}
        return True, {"error": {k: err.get(k, "") for k in ("name", "message", "stack")}}
    return False, None


def sdk_event(e: dict) -> dict:
    """An event as the SDKs expect it: internal names as Inngest names them, a cron tick's
    data with Inngest's keys beside durably's."""
    name = str(e.get("name") or "")
    data = dict(e.get("data") or {})
    if name == CRON_EVENT and "tick" in data:
        data.setdefault("scheduledAt", data["tick"])
        data.setdefault("fireAt", data["tick"])
    return {"name": SDK_EVENT_NAMES.get(name, name), "data": data,
            "id": e.get("id") or "", "ts": e.get("ts") or 0, "user": e.get("user") or {}}
