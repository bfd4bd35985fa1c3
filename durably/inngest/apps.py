"""Apps added by URL: the PUT that makes an SDK app sync (as the Inngest dev server's ``-u``).

The app answers the PUT by posting its functions to ``/fn/register`` (out-of-band sync), so
the PUT is sent once this process is listening. An app that is not up yet is tried again,
with a growing delay, until it has synced or the process stops.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

log = logging.getLogger("durably.inngest")


async def sync_app(url: str, *, signed: bool = False, client: httpx.AsyncClient | None = None) -> dict:
    """PUT the app's serve URL; the app's answer (the sync's outcome as the server gave it)."""
    headers = {"x-inngest-server-kind": "cloud" if signed else "dev"}
    own = client is None
    client = client or httpx.AsyncClient(timeout=30.0)
    try:
        resp = await client.put(url, headers=headers, content=b"")
    finally:
        if own:
            await client.aclose()
    try:
        body = resp.json()
    except ValueError:
        body = {"error": resp.text[:500]}
    if resp.status_code >= 400 or not isinstance(body, dict) or body.get("ok") is False or body.get("error"):
        raise RuntimeError(f"sync of {url} failed ({resp.status_code}): "
                           f"{body.get('error') if isinstance(body, dict) else body}")
    return body


async def sync_apps(server: Any, urls: tuple[str, ...], stop: asyncio.Event, *, signing_key: Any = None) -> None:
    """Once ``server`` (uvicorn) listens, sync each app; retry those not reachable yet."""
    while not server.started and not stop.is_set():
        await asyncio.sleep(0.02)
    pending = list(urls)
    delay = 0.2
    async with httpx.AsyncClient(timeout=30.0) as client:
        while pending and not stop.is_set():
            for url in list(pending):
                try:
                    body = await sync_app(url, signed=signing_key is not None, client=client)
                except (httpx.HTTPError, RuntimeError) as exc:
                    log.warning("app %s: %s; trying again in %.1fs", url, exc, delay)
                    continue
                pending.remove(url)
                log.info("app %s synced (%s)", url, "modified" if body.get("modified") else "unchanged")
            if pending:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except asyncio.TimeoutError:
                    pass
                delay = min(delay * 2, 10.0)
