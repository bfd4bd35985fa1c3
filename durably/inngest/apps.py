"""Apps added by URL: the PUT that makes an SDK app sync (as the Inngest dev server's ``-u``).

The app answers the PUT by posting its functions to ``/fn/register`` (out-of-band sync) and
hands back the server's answer. ``durably dev -u URL`` sends it once this process listens,
trying an app that is not up yet again with a growing delay; ``POST /api/v1/apps`` sends it
once and answers with the outcome. Both go through ``sync_app``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import httpx

from ..errors import InvalidInput

log = logging.getLogger("durably.inngest")

URL_MAX = 2048
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = r"(?:6553[0-5]|655[0-2]\d|65[0-4]\d{2}|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3})"
# An app's serve URL: http(s), a host name, IPv4 address or bracketed IPv6 address, an
# optional port, then a path and query without whitespace or control characters.
URL_PATTERN = (rf"^https?://(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::{_PORT})?"
               r"(?:[/?][^\s\x00-\x1f\x7f]*)?$")
_URL = re.compile(URL_PATTERN)
# A sync is the PUT plus the app's own call back to /fn/register: a few seconds at most.
# Connecting is bounded tighter, so a URL nobody answers at costs little.
SYNC_TIMEOUT = httpx.Timeout(15.0, connect=3.0)


class AppSyncFailed(Exception):
    """The app could not be reached, or its sync was refused (the message says which and why)."""


def check_url(url: Any) -> str:
    """The serve URL, or ``InvalidInput`` saying what is wrong with it."""
    if not isinstance(url, str) or not url:
        raise InvalidInput("url: the app's serve URL is required, such as http://127.0.0.1:3000/api/inngest")
    if len(url) > URL_MAX:
        raise InvalidInput(f"url: {len(url):,} characters; at most {URL_MAX}")
    if not _URL.match(url):
        raise InvalidInput(f"url {url[:200]!r}: must be an http:// or https:// URL with a host name or address, "
                           "an optional port and path, such as http://127.0.0.1:3000/api/inngest")
    return url


async def sync_app(url: str, *, signed: bool = False, client: httpx.AsyncClient | None = None) -> dict:
    """PUT the app's serve URL; the sync's outcome as the server gave it (``{"ok", "modified",
    "app_id"}``), or ``AppSyncFailed``."""
    check_url(url)
    headers = {"x-inngest-server-kind": "cloud" if signed else "dev"}
    own = client is None
    client = client or httpx.AsyncClient(timeout=SYNC_TIMEOUT)
    try:
        resp = await client.put(url, headers=headers, content=b"")
    except httpx.TimeoutException:
        raise AppSyncFailed(f"the app at {url} did not answer the sync in time") from None
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        raise AppSyncFailed(f"the app at {url} could not be reached: {type(exc).__name__}: {exc}") from None
    finally:
        if own:
            await client.aclose()
    try:
        body = resp.json()
    except ValueError:
        body = {"error": resp.text[:500]}
    if resp.status_code >= 400 or not isinstance(body, dict) or body.get("ok") is False or body.get("error"):
        error = body.get("error") or body.get("message") if isinstance(body, dict) else body
        raise AppSyncFailed(f"sync of {url} failed ({resp.status_code}): {str(error)[:1000]}")
    return body


async def sync_apps(server: Any, urls: tuple[str, ...], stop: asyncio.Event, *, signing_key: Any = None) -> None:
    """Once ``server`` (uvicorn) listens, sync each app; retry those not reachable yet."""
    while not server.started and not stop.is_set():
        await asyncio.sleep(0.02)
    pending = list(urls)
    delay = 0.2
    async with httpx.AsyncClient(timeout=SYNC_TIMEOUT) as client:
        while pending and not stop.is_set():
            for url in list(pending):
                try:
                    body = await sync_app(url, signed=signing_key is not None, client=client)
                except AppSyncFailed as exc:
                    log.warning("%s; trying again in %.1fs", exc, delay)
                    continue
                pending.remove(url)
                log.info("app %s synced (%s)", url, "modified" if body.get("modified") else "unchanged")
            if pending:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except asyncio.TimeoutError:
                    pass
                delay = min(delay * 2, 10.0)
