"""Operators' controls: pausing and resuming a function, and the audit log.

Every operator action writes its audit row with ``record`` inside the transaction of the
action itself; ``audited`` wraps any verb body so that the row is written exactly when the
verb did something (a cancel of a finished run, which changes nothing, leaves no row).
"""

from __future__ import annotations

from typing import Any, Callable

from ...core.ids import new_id
from ...core.jsonutil import dumps
from ...core.records import Audit
from .tx import Tx


def record(tx: Tx, audit: Audit) -> None:
    """Write the audit row of an action, in the action's transaction."""
    tx.exec("insert_audit", id=new_id(), env=tx.env, now=tx.now, role=audit.role, action=audit.action,
            target=audit.target, params=dumps(audit.params), client=audit.client)


def audited(body: Callable[..., Any], audit: Audit | None,
            happened: Callable[[Any], bool] = bool) -> Callable[..., Any]:
    """``body`` (a verb's body, ``body(tx, *args)``) that also records ``audit`` when
    ``happened(result)`` says the action took place."""
    if audit is None:
        return body

    def run(tx: Tx, *args: Any) -> Any:
        out = body(tx, *args)
        if happened(out):
            record(tx, audit)
        return out

    return run


def pause(tx: Tx, function_id: str, mode: str, audit: Audit | None) -> str | None:
    """Pause ``function_id`` in ``mode`` (``queue`` or ``skip``): none of its runs is claimed
    from now on (the claim statements read the paused table). Returns the mode it was paused
    in before (None: it was running); only a change is recorded in the audit log."""
    row = tx.one("paused_functions_one", env=tx.env, function_id=function_id)
    before = row["mode"] if row is not None else None
    if before != mode:
        tx.exec("pause_function", env=tx.env, function_id=function_id, mode=mode, now=tx.now)
        if audit is not None:
            record(tx, audit)
    return before


def resume(tx: Tx, function_id: str, audit: Audit | None) -> bool:
    """Resume ``function_id``: its waiting runs become claimable at once, in their order
    (workers are woken at commit). Returns whether it was paused (only then is it recorded)."""
    was = bool(tx.exec("resume_function", env=tx.env, function_id=function_id))
    if was:
        tx.woke = True
        if audit is not None:
            record(tx, audit)
    return was


def cancel_many(tx: Tx, run_ids: list[str], reason: str, audit: Audit | None) -> list[bool]:
    """Cancel runs in one transaction (a bulk cancel); which of them this cancelled. The
    audit row is written when at least one was."""
    from .runs import cancel

    done = [cancel(tx, rid, reason) for rid in run_ids]
    if audit is not None and any(done):
        record(tx, audit)
    return done
