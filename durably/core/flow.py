"""Flow control at run creation: filters, tenant, idempotency, concurrency keys, priority.

``plan`` is pure: given a function's stored config and an event, it says which run to
create (or why none). The store calls it inside the creating transaction and enforces
what it returns with unique keys and slot rows, so every process agrees.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..errors import ExpressionError
from .expressions import as_key, evaluate, evaluate_bool, evaluate_key
from .ids import new_id
from .jsonutil import dumps
from .records import BatchSpec, CancelSpec, DebounceSpec, Gcra, NewRun, SingletonSpec, Skip, Slot, UniqueKey

IDEMPOTENCY_TTL = 86400.0
DEFAULT_TENANT = "global"
# The one tenant rule (DESIGN §3, §5): a tenant is 1 to TENANT_MAX characters without NUL.
# It is checked here, where runs are planned, so every tenant that is stored can be read back
# by every filter (whose limits are at least this) and by `durably status`. 256 characters
# (at most 1 KiB of UTF-8) also keep (env, tenant, function) within PostgreSQL's index rows.
TENANT_MAX = 256
INVALID_TENANT = "invalid_tenant"


def valid_tenant(tenant: str) -> bool:
    return 0 < len(tenant) <= TENANT_MAX and "\x00" not in tenant


def fair_key(value: str) -> str:
    """A fairness key as stored: values too long for an index row (or holding NUL) by their digest."""
    if len(value) <= TENANT_MAX and "\x00" not in value:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def variables(event: dict[str, Any]) -> dict[str, Any]:
    return {"event": event}


def plan(config: dict[str, Any], event: dict[str, Any], if_expr: str | None, now: float, *, trigger: str = "event") -> NewRun | Skip | None:
    fid = config["id"]
    env_vars = variables(event)
    if if_expr:
        try:
            if not evaluate_bool(if_expr, env_vars):
                return None
        except ExpressionError as exc:
            return Skip(fid, f"filter failed: {exc}")
    run = NewRun(id=new_id(), function_id=fid, event=event, trigger=trigger)
    try:
        apply(config, run, env_vars)
    except ExpressionError as exc:
        run.plan_error = str(exc)
        run.slots, run.unique_keys = [], []
    if not valid_tenant(run.tenant):
        return Skip(fid, INVALID_TENANT)
    return run


def apply(config: dict[str, Any], run: NewRun, env_vars: dict[str, Any]) -> None:
    fid = config["id"]
    if config.get("tenant"):
        value = evaluate(config["tenant"], env_vars)
        run.tenant = DEFAULT_TENANT if value is None else as_key(value)  # "" is refused by plan
    if config.get("fairness") is not None:
        fkey = config["fairness"].get("key")
        run.fair_key = fair_key(evaluate_key(fkey, env_vars) if fkey else run.tenant or DEFAULT_TENANT)
    if config.get("idempotency"):
        key = evaluate_key(config["idempotency"], env_vars)
        run.idempotency_key = key
        run.unique_keys.append(UniqueKey("idempotency", f"idempotency:{fid}", key, IDEMPOTENCY_TTL))
    slots = []
    for i, c in enumerate(config.get("concurrency") or []):
        if c.get("key"):
            value = evaluate_key(c["key"], env_vars)
            slot = f"env:{c['key']}={value}" if c.get("scope") == "env" else f"fn:{fid}:{i}={value}"
        else:
            slot = f"fn:{fid}:{i}"
        slots.append(Slot(slot, int(c["limit"])))
    run.slots = slots
    if config.get("priority"):
        value = evaluate(config["priority"]["run"], env_vars)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ExpressionError(f"Priority run expression must give a number of seconds, got {value!r}")
        run.priority = float(max(-600, min(600, value)))
    timeouts = config.get("timeouts") or {}
    if timeouts.get("start"):
        run.start_timeout = float(timeouts["start"])
    if timeouts.get("finish"):
        run.finish_timeout = float(timeouts["finish"])
    if run.trigger not in ("event", "cron"):
        return  # invoke, manual and replay runs are not coalesced, throttled or dropped
    if config.get("throttle"):
        t = config["throttle"]
        run.throttle = _gcra(f"throttle:{fid}", t, env_vars, t["limit"], t.get("burst", 1))
    if config.get("rate_limit"):
        r = config["rate_limit"]
        run.rate_limit = _gcra(f"ratelimit:{fid}", r, env_vars, r["limit"], r["limit"])
    if config.get("debounce"):
        d = config["debounce"]
        run.debounce = DebounceSpec(_key(d, env_vars), float(d["period"]),
                                    None if d.get("timeout") is None else float(d["timeout"]))
    if config.get("batch"):
        b = config["batch"]
        run.batch = BatchSpec(_key(b, env_vars), int(b["max_size"]), float(b["timeout"]))
    if config.get("singleton"):
        sg = config["singleton"]
        run.singleton = SingletonSpec(_key(sg, env_vars), sg.get("mode", "skip"))
    for c in config.get("cancel_on") or []:
        path = c.get("match")
        if path and path.startswith("event."):
            path = path[len("event."):]
        run.cancel_on.append(CancelSpec(c["event"], path, match_value(run.event, path) if path else None,
                                        c.get("if_"), c.get("timeout")))


def _key(opt: dict[str, Any], env_vars: dict[str, Any]) -> str:
    return evaluate_key(opt["key"], env_vars) if opt.get("key") else ""


def _gcra(prefix: str, opt: dict[str, Any], env_vars: dict[str, Any], limit: int, burst: int) -> Gcra:
    """GCRA parameters: ``limit`` per ``period``, ``burst`` starts allowed back to back."""
    interval = float(opt["period"]) / int(limit)
    return Gcra(f"{prefix}={_key(opt, env_vars)}", interval, interval * (int(burst) - 1))


def gcra(tat: float | None, now: float, interval: float, tolerance: float) -> tuple[bool, float]:
    """Generic cell rate algorithm: (allowed, new tat if allowed else when it will be)."""
    tat = now if tat is None or tat < now else tat
    if tat - now > tolerance + 1e-9:
        return False, tat - tolerance
    return True, tat + interval


def get_path(obj: Any, path: str) -> Any:
    """``data.clientId`` -> obj["data"]["clientId"] (None when absent)."""
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def match_value(trigger_event: dict[str, Any], path: str) -> str:
    return dumps(get_path(trigger_event, path))


def match(wait: dict[str, Any], event: dict[str, Any]) -> bool:
    """Does ``event`` satisfy a pending wait (or cancel_on) registered by a run?"""
    from .jsonutil import loads

    if wait.get("match_path"):
        expected = loads(wait["match_value"])
        if expected is None:  # the trigger event has no such field: nothing can match it
            return False
        if get_path(event, wait["match_path"]) != expected:
            return False
    if wait.get("if_expr"):
        trigger = loads(wait["event"]) if isinstance(wait.get("event"), str) else wait.get("event")
        try:
            return evaluate_bool(wait["if_expr"], {"event": trigger, "async": event})
        except ExpressionError:
            return False
    return True
