"""``POST /api/v1/apps``: add an Inngest SDK app by its serve URL (DESIGN §11).

durably sends the PUT that makes the app sync, as ``durably dev -u URL`` does (the same
``inngest.apps.sync_app``), and answers with the outcome: the app's functions now in the
registry, or a 502 saying why the app could not be reached or why its sync was refused. A
sync of an app already synced changes nothing, so the call is idempotent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response

from ..inngest.apps import AppSyncFailed, sync_app
from ..store.base import aw
from .http import JSON, error

if TYPE_CHECKING:
    from .api import Call


async def post_app(c: "Call") -> Response:
    url: str = c.body.url
    signed = c.api.settings.inngest_signing_key is not None
    try:
        answer = await sync_app(url, signed=signed)
    except AppSyncFailed as exc:
        return error(502, "app_sync_failed", str(exc))
    app_id = answer.get("app_id")
    if app_id is None:  # not the answer of durably's /fn/register
        return error(502, "app_sync_failed",
                     f"the app at {url} synced, but not with durably: point its INNGEST_BASE_URL at this server")
    registry = await aw((await c.api.store()).registry())
    functions = sorted(fid for fid, config in registry.items()
                       if isinstance(config, dict) and (config.get("inngest") or {}).get("app_id") == app_id)
    return JSON({"url": url, "synced": True, "app_id": app_id, "modified": bool(answer.get("modified")),
                 "functions": functions})
