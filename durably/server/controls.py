"""The HTTP API of operators' controls (DESIGN §4): pause and resume a function, cron
backfill, and the audit log. ``ops(...)`` returns their operations for ``api.OPS``; the handlers run as any
other operation (env guard, credential, the viewer's 403 on what changes state, validation)."""

from __future__ import annotations

import time
from typing import Any, Callable

from starlette.responses import Response

from .. import admin
from . import schemas
from .http import JSON


async def pause_function(c: Any) -> Response:
    body: schemas.PauseIn = c.body
    return JSON(await admin.pause(await c.api.store(), c.path("id"), skip=body.skip, actor=c.actor()))


async def resume_function(c: Any) -> Response:
    return JSON(await admin.resume(await c.api.store(), c.path("id"), actor=c.actor()))


async def backfill(c: Any) -> Response:
    b: schemas.BackfillIn = c.body
    now = time.time()
    res = await admin.backfill(await c.api.store(), c.path("id"), admin.parse_time(b.from_, name="from", now=now),
                               admin.parse_time(b.to, name="to", now=now), dry_run=b.dry_run, actor=c.actor())
    return JSON(res, status_code=200 if b.dry_run else 201)


async def list_audit(c: Any) -> Response:
    q: schemas.AuditQuery = c.query
    return JSON(await admin.audit_log(await c.api.store(), limit=q.limit, cursor=q.cursor))


def ops(op: Callable[..., Any], ok: Callable[..., Any], text: dict) -> list[Any]:
    """The operations, built with ``api.Op`` and ``api._ok`` (``text``: a path parameter's schema)."""
    fid = {"path_params": {"id": "Function id."}, "path_schemas": {"id": text}}
    return [
        op("backfill", "POST", "/api/v1/functions/{id}/backfill", backfill, "admin",
           "Fire each cron tick of a time range once", "functions",
           [ok(201, schemas.BackfillOut, "Ticks fired"), ok(200, schemas.BackfillOut, "Dry run")],
           body=schemas.BackfillIn, errors=[404, 413, 503], route="/api/v1/functions/{id:path}/backfill", **fid,
           description="Each tick is fired under the key the scheduler uses (its event id), so ticks already "
                       "fired are skipped; at most 1000 ticks per call. Recorded in the audit log."),
        op("pause_function", "POST", "/api/v1/functions/{id}/pause", pause_function, "admin",
           "Pause a function: none of its runs is claimed until it is resumed", "functions",
           [ok(200, schemas.PauseOut)], body=schemas.PauseIn, body_required=False, errors=[404, 413, 503],
           route="/api/v1/functions/{id:path}/pause", **fid,
           description="New triggers still create runs, which wait in queued; with skip they are recorded as "
                       "skipped with reason 'paused'. A run executing at the pause goes on. Recorded in the "
                       "audit log."),
        op("resume_function", "POST", "/api/v1/functions/{id}/resume", resume_function, "admin",
           "Resume a paused function: the runs that waited start in their order", "functions",
           [ok(200, schemas.PauseOut)], errors=[404, 503], route="/api/v1/functions/{id:path}/resume", **fid),
        op("list_audit", "GET", "/api/v1/audit", list_audit, "admin",
           "The audit log of operators' actions, newest first", "audit", [ok(200, schemas.AuditPage)],
           query=schemas.AuditQuery),
    ]
