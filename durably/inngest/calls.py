"""The driver's HTTP/1.1 client for calls to an app's plain-http serve URL.

A driver makes a call per SDK step, so the client's own cost per request matters: this one
writes the request and parses the answer on asyncio streams, keeps connections alive per
host and port, and does nothing else (no cookies, redirects, proxies or content decoding,
none of which the protocol uses). A pooled connection the app has closed meanwhile is seen
at its end of stream and dropped; one that fails before any byte of an answer arrived is
retried once on a new connection. https URLs go through httpx (``Driver.client``).
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit

MAX_IDLE = 32  # idle connections kept per host and port
MAX_HEAD = 64 * 1024


class CallError(Exception):
    """The app could not be reached, or its answer was not HTTP/1.1."""


@lru_cache(maxsize=1024)
def _target(url: str, fn_id: str, step: str) -> tuple[str, int, str, str]:
    """(host, port, request target, Host header) of a call: the URL's query with fnId and stepId set."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise CallError(f"not a plain-http URL: {url!r}")
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ("fnId", "stepId")]
    query += [("fnId", fn_id), ("stepId", step)]
    port = parts.port or 80
    host = parts.hostname
    host_header = (f"[{host}]" if ":" in host else host) + ("" if port == 80 else f":{port}")
    return host, port, f"{parts.path or '/'}?{urlencode(query)}", host_header


class Connections:
    """Keep-alive connections per (host, port)."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}

    async def post(self, url: str, fn_id: str, step: str, body: bytes, headers: Mapping[str, str],
                   timeout: float) -> tuple[int, dict[str, str], bytes]:
        host, port, target, host_header = _target(url, fn_id, step)
        head = [f"POST {target} HTTP/1.1", f"host: {host_header}", f"content-length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        try:
            return await asyncio.wait_for(self._send(host, port, request), timeout)
        except asyncio.TimeoutError:
            raise CallError(f"no answer within {timeout:g} s") from None

    async def _send(self, host: str, port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
        conn = self._take(host, port)
        if conn is not None:
            try:
                return await self._exchange(host, port, conn, request)
            except _Stale:
                pass  # the app closed it while it was idle: once more on a new connection
        try:
            conn = await asyncio.open_connection(host, port)
        except OSError as exc:
            raise CallError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        try:
            return await self._exchange(host, port, conn, request)
        except _Stale:
            raise CallError("the connection was closed before an answer") from None

    def _take(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        idle = self._idle.get((host, port))
        while idle:
            reader, writer = idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return None

    async def _exchange(self, host: str, port: int, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                        request: bytes) -> tuple[int, dict[str, str], bytes]:
        reader, writer = conn
        try:
            try:
                writer.write(request)
                await writer.drain()
                line = await reader.readline()
            except (ConnectionError, OSError):
                raise _Stale() from None
            if not line:
                raise _Stale()
            status, headers, reusable = await _head(reader, line)
            content = b"" if status in (204, 304) else await _body(reader, headers)
        except _Stale:
            writer.close()
            raise
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            writer.close()
            raise CallError(f"the answer was cut short or malformed: {type(exc).__name__}: {exc}") from None
        except BaseException:  # cancelled or timed out mid-answer: the connection is in an unknown state
            writer.close()
            raise
        idle = self._idle.setdefault((host, port), [])
        if reusable and not reader.at_eof() and len(idle) < MAX_IDLE:
            idle.append(conn)
        else:
            writer.close()
        return status, headers, content

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for _reader, writer in idle:
                writer.close()
        self._idle.clear()


class _Stale(Exception):
    """Nothing came back on the connection: it was closed (safe to send the request again)."""


async def _head(reader: asyncio.StreamReader, line: bytes) -> tuple[int, dict[str, str], bool]:
    while True:
        version, _, rest = line.decode("latin-1").partition(" ")
        if not version.startswith("HTTP/1."):
            raise ValueError(f"not an HTTP/1.x status line: {line[:100]!r}")
        status = int(rest[:3])
        headers: dict[str, str] = {}
        size = 0
        while True:
            h = await reader.readline()
            size += len(h)
            if size > MAX_HEAD:
                raise ValueError("answer headers over 64 KiB")
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            k, v = k.strip().lower(), v.strip()
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        if 100 <= status < 200:  # an interim answer: the real one follows
            line = await reader.readline()
            continue
        conn = headers.get("connection", "").lower()
        reusable = "close" not in conn and (version != "HTTP/1.0" or "keep-alive" in conn)
        if "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "").lower():
            reusable = False  # the body runs to the end of the stream
        return status, headers, reusable


async def _body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks: list[bytes] = []
        while True:
            size = int((await reader.readline()).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = headers.get("content-length")
    if length is not None:
        return await reader.readexactly(int(length))
    return await reader.read()
