"""The driver's HTTP/1.1 client against a loopback server written by hand: lengths and chunks,
keep-alive, a connection the server closed while idle, and what it cannot reach."""

from __future__ import annotations

import asyncio

import pytest

from durably.inngest.calls import CallError, Connections, _target

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def _serve(answers: list[bytes], close_after: set[int] = frozenset()):  # type: ignore[assignment]
    """A server answering each request with the next of ``answers``; the requests it read and the
    connections it accepted are recorded."""
    seen: list[bytes] = []
    conns: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(len(seen))
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break  # the client closed the connection
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            seen.append(head + await reader.readexactly(length))
            writer.write(answers[len(seen) - 1])
            await writer.drain()
            if len(seen) in close_after:
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen, conns


async def test_lengths_chunks_and_keep_alive():
    answers = [b"HTTP/1.1 206 Partial Content\r\nContent-Length: 7\r\nX-Inngest-No-Retry: true\r\n\r\n[1,2,3]",
               b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n",
               b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Oops\r\ncontent-length: 2\r\n\r\n{}"]
    server, port, seen, conns = await _serve(answers)
    c = Connections()
    try:
        url = f"http://127.0.0.1:{port}/api/inngest?fnId=old&x=1"
        status, headers, body = await c.post(url, "app-f", "step", b'{"k":1}', {"x-run-id": "r"}, 5)
        assert (status, headers["x-inngest-no-retry"], body) == (206, "true", b"[1,2,3]")
        assert seen[0].startswith(b"POST /api/inngest?x=1&fnId=app-f&stepId=step HTTP/1.1\r\n")
        assert b"\r\nx-run-id: r\r\n" in seen[0] and seen[0].endswith(b'\r\n\r\n{"k":1}')
        assert await c.post(url, "app-f", "abc", b"{}", {}, 5) == (200, {"transfer-encoding": "chunked"}, b'{"a":1}')
        assert (await c.post(url, "app-f", "step", b"", {}, 5))[::2] == (500, b"{}")
        assert conns == [0]  # one connection, kept alive for all three
    finally:
        await c.aclose()
        server.close()


async def test_a_connection_closed_while_idle_is_replaced():
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnull"
    server, port, seen, conns = await _serve([ok, ok], close_after={1})
    c = Connections()
    try:
        url = f"http://127.0.0.1:{port}/"
        assert (await c.post(url, "f", "step", b"{}", {}, 5))[0] == 200
        for _ in range(100):  # the server's close reaches the idle connection
            await asyncio.sleep(0.005)
            if all(r.at_eof() for r, _w in c._idle.get(("127.0.0.1", port), [])):
                break
        assert (await c.post(url, "f", "step", b"{}", {}, 5))[::2] == (200, b"null")
        assert conns == [0, 1] and len(seen) == 2
    finally:
        await c.aclose()
        server.close()


async def test_what_cannot_be_reached_or_read_is_a_call_error():
    c = Connections()
    server, port, _seen, _conns = await _serve([])
    server.close()
    await server.wait_closed()
    with pytest.raises(CallError, match="cannot connect"):
        await c.post(f"http://127.0.0.1:{port}/", "f", "step", b"{}", {}, 5)
    bad, bport, _s, _c = await _serve([b"SSH-2.0-nope\r\n\r\n"])
    try:
        with pytest.raises(CallError, match="malformed"):
            await c.post(f"http://127.0.0.1:{bport}/", "f", "step", b"{}", {}, 5)
    finally:
        bad.close()
    with pytest.raises(CallError, match="plain-http"):
        _target("https://example.test/", "f", "step")
