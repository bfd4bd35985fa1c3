"""The reference app's HTTP API (FastAPI), with durably mounted at ``/durably``."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

import durably

from . import jobs

log = logging.getLogger("inbox.api")

DISPATCH_WINDOW = 60


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
    with jobs.res().pool.connection() as conn, conn.transaction():
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
    version = int(r.redis.get(f"inbox:v1:ver:{client_id}") or 0)
    return {"clientId": client_id, "version": version,
            "folders": {f: {"total": t, "unread": u, "computedAt": c.isoformat()} for f, t, u, c in rows}}


def run_inline() -> dict:
    """The emergency path: the cron route's work, inline, when dispatch failed."""
    s = jobs.res().settings
    return {"processed": jobs.process_drafts(), "recovered": jobs.recover_stale(s.stale_draft_minutes),
            "pruned": jobs.prune_drafts(s.prune_draft_days)}


def create_api() -> FastAPI:
    api = FastAPI(title="inbox (durably reference app)")
    settings = jobs.res().settings

    @api.post("/api/messages", status_code=201)
    async def post_message(m: MessageIn) -> dict:
        request_id = uuid.uuid4().hex
        event = durably.Event("inbox.counts.dirty", {"clientId": m.clientId, "requestId": request_id, "source": "api"})
        mid, sent = await asyncio.to_thread(write_message, m, event)
        if not sent:
            await jobs.app.send_async(event)
        return {"id": mid, "clientId": m.clientId, "requestId": request_id, "eventId": event.id}

    @api.get("/api/inbox/{client_id}/counts")
    async def get_counts(client_id: str) -> dict:
        return await asyncio.to_thread(read_counts, client_id)

    @api.post("/api/cron/background-jobs")
    async def cron_background_jobs(request: Request, authorization: str | None = Header(default=None)):
        secret = settings.cron_secret
        if not secret or not authorization or not hmac.compare_digest(authorization.encode(), f"Bearer {secret}".encode()):
            raise HTTPException(status_code=401, detail="missing or wrong CRON_SECRET")
        window = int(time.time() // DISPATCH_WINDOW * DISPATCH_WINDOW)
        events = [durably.Event(name, {"source": "cron", "window": window}, id=f"cron:{name}:{window}")
                  for name in ("background/process.requested", "background/maintenance.requested")]
        try:
            res = await jobs.app.send_async(events)
        except Exception as exc:  # noqa: BLE001 - the store is unreachable: dispatch failed
            log.error("dispatch failed", extra={"error": str(exc), "window": window})
            if not settings.inline_fallback:
                return JSONResponse({"error": {"code": "dispatch_failed", "message": str(exc)}}, status_code=503)
            summary = await asyncio.to_thread(run_inline)
            return JSONResponse({"mode": "inline", "window": window, **summary}, status_code=200)
        duplicate = len(res.duplicates) == len(events)
        body = {"dispatchKey": f"background-jobs:{window}", "eventIds": res.ids, "runs": res.runs,
                "duplicate": duplicate}
        return JSONResponse(body, status_code=200 if duplicate else 202)

    asgi = getattr(jobs.app, "asgi", None)
    if asgi is not None:
        api.mount("/durably", asgi())
    return api
