"""``durably server``: the HTTP API and the scheduler in one process, with no user code."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from typing import TYPE_CHECKING, Any

from ..config import Settings, masked_url
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger("durably.server")


masked = masked_url


def run_server(settings: Settings, *, host: str, port: int) -> None:
    from .api import create_app

    asgi = create_app(settings)  # ConfigError on a missing key, before anything starts
    runtime = asgi.state.durably.runtime  # the API's own runtime (no user code): the scheduler shares it
    sock = bind(host, port)
    try:
        runtime.get()  # open and migrate now, so a bad store fails before serving
        from ..lifecycle import run

        run(_main(runtime.get(), asgi, sock, host, port), settings.event_loop)
    finally:
        sock.close()
        runtime.close()


def bind(host: str, port: int) -> socket.socket:
    """Listen here, or fail with one clear line (uvicorn would exit the process instead)."""
    if not 0 < port < 65536:
        raise ConfigError(f"cannot listen on {host}:{port}: a port is a number from 1 to 65535")
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


async def _main(runtime: "Runtime", asgi: Any, sock: socket.socket, host: str, port: int) -> None:
    import uvicorn

    from ..lifecycle import stop_on_signals

    stop = stop_on_signals()
    config = uvicorn.Config(asgi, host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]  # not a method of the locked uvicorn (0.55): serve() captures signals itself
    scheduler = asyncio.create_task(runtime.scheduler().run(stop), name="durably-scheduler")
    driver, sdk_worker = runtime.inngest_driver()  # SDK apps' runs (DESIGN §11)
    driving = asyncio.create_task(driver.run(sdk_worker, stop), name="durably-inngest")
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="durably-http")
    started = asyncio.create_task(_wait_started(server))
    done, _ = await asyncio.wait({serving, started}, return_when=asyncio.FIRST_COMPLETED)
    if serving in done:  # it stopped before it listened: the port is taken, or the host is wrong
        started.cancel()
        stop.set()
        await asyncio.gather(scheduler, driving, return_exceptions=True)
        exc = serving.exception()
        raise ConfigError(f"cannot listen on {host}:{port}" + (f": {exc}" if exc and str(exc) else
                                                                 " (is the port in use?)"))
    s = runtime.settings
    print(f"durably server: env {s.env!r}, store {masked(s.database_url)}", file=sys.stderr)
    print(f"durably server: API at http://{host}:{port}/api/v1 (OpenAPI at /openapi.json)", file=sys.stderr)
    print(f"durably server: dashboard at http://{host}:{port}/", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        stop.set()
        await asyncio.gather(scheduler, driving, return_exceptions=True)
        server.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)


async def _wait_started(server: Any) -> None:
    while not server.started:
        await asyncio.sleep(0.01)
