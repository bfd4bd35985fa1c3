"""The reference app's HTTP API (FastAPI), with durably mounted at ``/durably``."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

import durably
from durably.errors import StoreUnavailable

from . import cron
from . import events as ev
from . import jobs

log = logging.getLogger("inbox.api")

ANALYTICS_BUCKET = 300  # one SLO-miss recompute per client and 5-minute bucket


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clientId: str = Field(min_length=1, max_length=200)  # noqa: N815 - the wire name
    folder: str = Field(default="inbox", min_length=1, max_length=100)
    unread: bool = True


_shared = {"database": True}  # durably's store in the app's database? Learnt at the first message.


def write_message(m: MessageIn, event: durably.Event) -> tuple[int, bool]:
    """Insert the message and mark the client dirty, in one transaction; when durably's store
    is in the same PostgreSQL database, ``event`` is sent in that transaction too (so the
    message, its dirty marker and the recompute commit together or not at all). Returns the
    message id and whether the event was sent."""
    with jobs.res().pool.connection() as conn:
        conn.autocommit = False  # the pool's connections autocommit; this write is one transaction
        try:
            return _write(conn, m, event)
        finally:
            conn.rollback()  # nothing left open (a no-op after the commit)
            conn.autocommit = True


def _write(conn: Any, m: MessageIn, event: durably.Event) -> tuple[int, bool]:
    with conn.transaction():
        conn.execute("INSERT INTO workspaces (client_id) VALUES (%s) ON CONFLICT DO NOTHING", (m.clientId,))
        mid = conn.execute("INSERT INTO messages (client_id, folder, unread) VALUES (%s, %s, %s) RETURNING id",
                           (m.clientId, m.folder, m.unread)).fetchone()[0]
        conn.execute("INSERT INTO inbox_dirty (client_id, dirty_at) VALUES (%s, clock_timestamp()) "
                     "ON CONFLICT (client_id) DO UPDATE SET dirty_at = excluded.dirty_at", (m.clientId,))
        if _shared["database"]:
            try:
                jobs.app.send(event, connection=conn)
                return mid, True
            except durably.InvalidInput as exc:  # another database (or SQLite): send after the commit
                log.info("durably's store is not in the app's database (%s): events are sent after the commit", exc)
                _shared["database"] = False
    return mid, False


def read_counts(client_id: str) -> dict:
    r = jobs.res()
    with r.pool.connection() as conn:
        rows = conn.execute("SELECT folder, total, unread, computed_at FROM inbox_counts WHERE client_id = %s "
                            "ORDER BY folder", (client_id,)).fetchall()
    version = int(r.redis.get(jobs.version_key("inbox", client_id)) or 0)
    return {"clientId": client_id, "version": version,
            "folders": {f: {"total": t, "unread": u, "computedAt": c.isoformat()} for f, t, u, c in rows}}


def read_analytics(client_id: str) -> dict:
    r = jobs.res()
    with r.pool.connection() as conn:
        rows = conn.execute("SELECT day, messages, unread, computed_at FROM analytics_daily WHERE client_id = %s "
                            "ORDER BY day", (client_id,)).fetchall()
    computed = max((c for _, _, _, c in rows), default=None)
    age = None if computed is None else max(0.0, (datetime.now(timezone.utc) - computed).total_seconds())
    version = int(r.redis.get(jobs.version_key("analytics", client_id)) or 0)
    return {"clientId": client_id, "version": version, "computedAt": computed.isoformat() if computed else None,
            "ageSeconds": None if age is None else round(age, 3),
            "days": [{"day": d.isoformat(), "messages": m, "unread": u} for d, m, u, _ in rows]}


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _invalid(exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, (RequestValidationError, ValidationError)) else []
    message = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
                        for e in errors) or str(exc)
    return _error(400, "invalid_input", message[:500])


def create_api() -> FastAPI:
    api = FastAPI(title="inbox (durably reference app)")
    settings = jobs.res().settings

    @api.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _invalid(exc)

    @api.exception_handler(ValidationError)
    async def bad_event(request: Request, exc: ValidationError) -> JSONResponse:
        return _invalid(exc)

    @api.exception_handler(durably.InvalidInput)
    async def bad_value(request: Request, exc: durably.InvalidInput) -> JSONResponse:
        return _error(400, "invalid_input", str(exc))

    @api.exception_handler(StoreUnavailable)
    async def store_down(request: Request, exc: StoreUnavailable) -> JSONResponse:
        return _error(503, "store_unavailable", str(exc), {"Retry-After": "5"})

    @api.post("/api/messages", status_code=201)
    async def post_message(m: MessageIn) -> dict:
        request_id = uuid.uuid4().hex
        event = ev.event(ev.INBOX_COUNTS_DIRTY, {"clientId": m.clientId, "requestId": request_id, "source": "api"})
        mid, sent = await asyncio.to_thread(write_message, m, event)
        if not sent:
            await jobs.app.send_async(event)
        return {"id": mid, "clientId": m.clientId, "requestId": request_id, "eventId": event.id}

    @api.get("/api/inbox/{client_id}/counts")
    async def get_counts(client_id: str) -> dict:
        return await asyncio.to_thread(read_counts, client_id)

    @api.get("/api/inbox/{client_id}/analytics")
    async def get_analytics(client_id: str) -> dict:
        """The aggregates and their age; older than ANALYTICS_SLO_SECONDS (or none yet): a
        recompute of this client is sent, once per client and 5-minute bucket."""
        body = await asyncio.to_thread(read_analytics, client_id)
        age = body["ageSeconds"]
        body["sloSeconds"] = settings.analytics_slo_seconds
        body["stale"] = age is None or age > settings.analytics_slo_seconds
        body["recompute"] = None
        if body["stale"]:
            bucket = int(time.time() // ANALYTICS_BUCKET)
            event = ev.event(ev.ANALYTICS_RECOMPUTE, {"clientId": client_id, "requestId": uuid.uuid4().hex,
                                                      "source": "slo-miss"},
                             id=f"analytics-slo:{client_id}:{bucket}")
            res = await jobs.app.send_async(event)
            body["recompute"] = {"eventId": event.id, "duplicate": bool(res.duplicates), "runs": res.runs}
        return body

    @api.post("/api/cron/background-jobs")
    async def cron_background_jobs(authorization: str | None = Header(default=None)) -> JSONResponse:
        secret = settings.cron_secret
        if not secret or not authorization or not hmac.compare_digest(authorization.encode(), f"Bearer {secret}".encode()):
            return _error(401, "unauthorized", "missing or wrong CRON_SECRET: send 'Authorization: Bearer <secret>'")
        return await cron.handle(settings)

    asgi = getattr(jobs.app, "asgi", None)
    if asgi is not None:
        api.mount("/durably", asgi())
    return api
