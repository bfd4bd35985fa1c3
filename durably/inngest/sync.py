"""An SDK's sync payload (``POST /fn/register``) as durably registry entries.

Each SDK function becomes a ``FunctionConfig`` (its id is the SDK's composite id
``<app id>-<function id>``) plus an ``inngest`` block the driver reads: the app, the serve
URL to call, the SDK. Every option the SDK sends is either mapped onto durably's own or
refused with a clear error: nothing is silently ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from ..core.events import FUNCTION_FAILED
from ..core.options import (Batch, CancelOn, Concurrency, CronTrigger, Debounce, EventTrigger, FunctionConfig,
                            Priority, RateLimit, Retry, Singleton, Throttle, Timeouts)
from ..errors import DurablyError, InvalidInput

__all__ = ["SyncError", "AppSync", "translate", "INNGEST_FAILED"]

INNGEST_FAILED = "inngest/function.failed"
DEFAULT_RETRIES = 4  # Inngest's default: 4 retries, 5 attempts
MAX_RETRIES = 20

# The fields of an SDK function config this adapter understands (each one mapped below).
KNOWN_FIELDS = {"id", "name", "triggers", "steps", "concurrency", "throttle", "rateLimit", "debounce",
                "batchEvents", "priority", "idempotency", "cancel", "timeouts", "singleton"}
# The fields of each option's object (as Inngest's server reads them): any other one is refused.
OPTION_FIELDS = {"throttle": {"limit", "period", "burst", "key"}, "rateLimit": {"limit", "period", "key"},
                 "debounce": {"period", "key", "timeout"}, "batchEvents": {"maxSize", "timeout", "key", "if"},
                 "priority": {"run"}, "singleton": {"key", "mode"}, "timeouts": {"start", "finish"}}
CONCURRENCY_FIELDS = {"limit", "key", "scope"}
STEP_FIELDS = {"id", "name", "retries", "runtime"}
KNOWN_TOP = {"appname", "appName", "appVersion", "capabilities", "deploy_type", "deployType", "deployId",
             "framework", "functions", "sdk", "url", "v", "featureObservations"}


class SyncError(DurablyError):
    """The app's sync payload holds something durably cannot run (yet): the sync is refused."""

    status = 400
    code = "sync_refused"


@dataclass
class AppSync:
    app_id: str
    url: str
    sdk: str
    configs: list[dict]


def translate(payload: Any) -> AppSync:
    """The registry entries of a sync payload; ``SyncError`` naming every unsupported part."""
    if not isinstance(payload, dict):
        raise SyncError("sync payload: must be a JSON object")
    problems: list[str] = []
    app_id = payload.get("appname") or payload.get("appName")
    url = payload.get("url")
    if not isinstance(app_id, str) or not app_id:
        raise SyncError("sync payload: appname is required")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise SyncError("sync payload: url must be the app's http(s) serve URL")
    for k in sorted(set(payload) - KNOWN_TOP):
        problems.append(f"sync field {k!r} is not supported")
    functions = payload.get("functions") or []
    if not isinstance(functions, list):
        raise SyncError("sync payload: functions must be a list")
    configs = []
    for f in functions:
        try:
            configs.append(_function(f, app_id, url, str(payload.get("sdk") or ""), problems))
        except (InvalidInput, KeyError, TypeError, ValueError) as exc:
            fid = f.get("id") if isinstance(f, dict) else f
            problems.append(f"function {fid!r}: {exc}")
    if problems:
        raise SyncError("durably cannot run this app yet: " + "; ".join(problems))
    return AppSync(app_id, url, str(payload.get("sdk") or ""), configs)


def _function(f: Mapping[str, Any], app_id: str, url: str, sdk: str, problems: list[str]) -> dict:
    fid = f["id"]
    if not isinstance(fid, str) or not fid:
        raise InvalidInput("id must be a non-empty string")
    where = f"function {fid!r}"
    for k in sorted(set(f) - KNOWN_FIELDS):
        problems.append(f"{where}: option {k!r} is not supported")
    for name, allowed in OPTION_FIELDS.items():
        v = f.get(name)
        if v is not None and not isinstance(v, dict):
            raise InvalidInput(f"option {name!r} must be an object, got {v!r}")
        for k in sorted(set(v or {}) - allowed):
            problems.append(f"{where}: option {name}.{k} is not supported")
    steps = f.get("steps") or {}
    if set(steps) != {"step"}:
        problems.append(f"{where}: steps must be the single 'step' entry the SDKs send, got {sorted(steps)}")
    step = steps.get("step") or {}
    for k in sorted(set(step) - STEP_FIELDS):
        problems.append(f"{where}: step field {k!r} is not supported")
    for k in sorted(set(step.get("retries") or {}) - {"attempts"}):
        problems.append(f"{where}: retries.{k} is not supported")
    runtime = step.get("runtime") or {}
    for k in sorted(set(runtime) - {"type", "url"}):
        problems.append(f"{where}: runtime.{k} is not supported")
    if runtime.get("type", "http") != "http":
        problems.append(f"{where}: runtime {runtime.get('type')!r} is not supported (only http; the SDKs' "
                        "Connect transport over WebSocket is not served)")
    retries = (step.get("retries") or {}).get("attempts", DEFAULT_RETRIES)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        raise InvalidInput(f"retries.attempts must be an integer from 0 to {MAX_RETRIES}, got {retries!r}")

    triggers: list[EventTrigger | CronTrigger] = []
    for t in f.get("triggers") or []:
        if "event" in t:
            extra = set(t) - {"event", "expression"}
            if extra:
                problems.append(f"{where}: trigger fields {sorted(extra)} are not supported")
            name = t["event"]
            if name == INNGEST_FAILED:
                name = FUNCTION_FAILED
            triggers.append(EventTrigger(name, t.get("expression")))
        elif "cron" in t:
            extra = set(t) - {"cron", "jitter"}
            if extra:
                problems.append(f"{where}: trigger fields {sorted(extra)} are not supported")
            if t.get("jitter"):
                problems.append(f"{where}: cron jitter is not supported")
            expr, tz = _cron(t["cron"])
            triggers.append(CronTrigger(expr, tz))
        else:
            problems.append(f"{where}: trigger {t!r} is neither an event nor a cron trigger")

    conc = f.get("concurrency") or []
    if isinstance(conc, dict):  # the TypeScript SDK sends an object when the user wrote one
        conc = [conc]
    concurrency = []
    for c in conc:
        for k in sorted(set(c) - CONCURRENCY_FIELDS):
            problems.append(f"{where}: concurrency field {k!r} is not supported")
        scope = c.get("scope") or "fn"
        if scope not in ("fn", "env", "account"):
            problems.append(f"{where}: concurrency scope {scope!r} is not supported")
            continue
        # durably has one env per process: Inngest's account scope is env-wide here.
        concurrency.append(Concurrency(c["limit"], c.get("key"), "fn" if scope == "fn" else "env"))

    def opt(name: str, build: Any) -> Any:
        v = f.get(name)
        return None if v is None else build(v)

    throttle = opt("throttle", lambda v: Throttle(v["limit"], v["period"], v.get("burst") or 1, v.get("key")))
    rate_limit = opt("rateLimit", lambda v: RateLimit(v["limit"], v["period"], v.get("key")))
    debounce = opt("debounce", lambda v: Debounce(v["period"], v.get("key"), v.get("timeout")))
    batch = None
    if f.get("batchEvents") is not None:
        b = f["batchEvents"]
        if b.get("if"):
            problems.append(f"{where}: batchEvents.if is not supported")
        batch = Batch(b["maxSize"], b["timeout"], b.get("key"))
    priority = opt("priority", lambda v: Priority(v["run"]))
    singleton = opt("singleton", lambda v: Singleton(v.get("key"), v.get("mode") or "skip"))
    timeouts = opt("timeouts", lambda v: Timeouts(v.get("start"), v.get("finish")))
    cancel_on = []
    for c in f.get("cancel") or []:
        extra = set(c) - {"event", "if", "timeout"}
        if extra:
            problems.append(f"{where}: cancel fields {sorted(extra)} are not supported")
        cancel_on.append(CancelOn(c["event"], None, c.get("if"), c.get("timeout")))

    config = FunctionConfig(
        id=fid, name=f.get("name") or fid, triggers=tuple(triggers), retry=Retry(attempts=retries + 1),
        concurrency=tuple(concurrency), throttle=throttle, rate_limit=rate_limit, debounce=debounce, batch=batch,
        priority=priority, idempotency=f.get("idempotency"), singleton=singleton, cancel_on=tuple(cancel_on),
        timeouts=timeouts,
    ).to_json()
    config["inngest"] = {"app_id": app_id, "url": runtime.get("url") or url, "serve_url": url, "sdk": sdk,
                         "fn_id": fid}
    return config


_TZ = re.compile(r"^(?:CRON_TZ|TZ)=(\S+)\s+(.*)$")


def _cron(text: str) -> tuple[str, str]:
    m = _TZ.match(text.strip())
    return (m.group(2), m.group(1)) if m else (text.strip(), "UTC")
