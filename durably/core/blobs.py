"""Status blobs as data: the blob of a run's state and the key it is kept under (DESIGN §5)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..errors import InvalidInput


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def blob(status: str, run_id: str, started_at: float | None, finished_at: float | None,
         attempt: int, last_error: Any) -> dict[str, Any]:
    duration = None
    if started_at is not None and finished_at is not None:
        duration = int(round((finished_at - started_at) * 1000))
    if isinstance(last_error, dict):
        last_error = f"{last_error.get('name', 'Error')}: {last_error.get('message', '')}"
    return {
        "status": status,
        "runId": run_id,
        "startedAt": iso(started_at),
        "finishedAt": iso(finished_at),
        "durationMs": duration,
        "attempt": attempt,
        "lastError": last_error,
    }


def check_function_id(function_id: str) -> str:
    """A function id may not contain ``:``, the separator of status-blob keys (DESIGN §5)."""
    if ":" in function_id:
        raise InvalidInput(f"function id {function_id!r} contains ':'; status-blob keys use ':' as their separator, "
                           "so function ids may not (use '-' or '.')")
    return function_id


def key_tenant(tenant: str) -> str:
    """The tenant as written in a key: ``%`` and ``:`` percent-encoded (``a:x`` -> ``a%3Ax``),
    so no (tenant, function) pair can spell another pair's key."""
    return tenant.replace("%", "%25").replace(":", "%3A")


def redis_key(template: str, env: str, tenant: str, function_id: str) -> str:
    t = key_tenant(tenant)
    return template.format(env=env, tenant=t, function=function_id, jobName=function_id, clientId=t)


def env_template(template: str, env: str, production_env: str = "production") -> str:
    """The key template an env writes with (DESIGN §5): outside ``production_env``, a template
    without ``{env}`` gets the prefix ``{env}:``, so no other env writes a key production reads."""
    if "{env}" in template or env == production_env:
        return template
    return "{env}:" + template


def blob_attempt(body_attempts: int, step_attempts: int | None) -> int:
    """A blob's ``attempt``: the 1-based attempt now running or last ended, the largest of the
    run's own attempts and its steps' (a step's third try shows 3)."""
    return max(body_attempts, step_attempts or 0)
