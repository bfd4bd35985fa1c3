"""``durably dev``: HTTP API, dashboard, scheduler and a worker in one process on SQLite."""

from __future__ import annotations

import asyncio
import logging
import sys

from .config import Settings

log = logging.getLogger("durably.dev")


def run_dev(app_spec: str | None, *, host: str, port: int | None, concurrency: int, settings: Settings,
            sdk_urls: tuple[str, ...] = ()) -> None:
    from .server.run import bind

    port = port or settings.port
    if sdk_urls:
        from .inngest.apps import check_url

        for url in sdk_urls:  # a URL that cannot be an app's fails here, before anything starts
            check_url(url)
    sock = bind(host, port)  # a port taken or out of range fails here, before anything starts
    try:
        _run(app_spec, host, port, sock, concurrency, settings, sdk_urls)
    finally:
        sock.close()


def _run(app_spec, host: str, port: int, sock, concurrency: int, settings: Settings,
         sdk_urls: tuple[str, ...] = ()) -> None:
    from .app import App
    from .loader import load_app

    if app_spec:
        app = load_app(app_spec)
        app.configure(database_url=settings.database_url, env=settings.env)
    else:
        app = App("dev", settings=settings)
    app.store  # noqa: B018 - open and migrate now, so a bad store fails before anything starts
    from .lifecycle import run

    run(_main(app, host, port, sock, concurrency, sdk_urls), app.settings.event_loop)


async def _main(app, host: str, port: int, sock, concurrency: int, sdk_urls: tuple[str, ...] = ()) -> None:
    from .lifecycle import stop_on_signals

    stop = stop_on_signals()
    tasks = []
    if app.functions:
        tasks.append(asyncio.create_task(app.worker(concurrency=concurrency).run(stop)))
    else:
        tasks.append(asyncio.create_task(app.runtime.scheduler().run(stop)))
    driver, sdk_worker = app.runtime.inngest_driver(concurrency=concurrency)  # SDK apps' runs (DESIGN §11)
    tasks.append(asyncio.create_task(driver.run(sdk_worker, stop)))
    server = _http_server(app, host, port)
    if server is not None:
        tasks.append(asyncio.create_task(server.serve(sockets=[sock])))
    url = f"http://{host}:{port}/"
    if sdk_urls and server is not None:
        from .inngest.apps import sync_apps

        tasks.append(asyncio.create_task(sync_apps(server, sdk_urls, stop,
                                                   signing_key=app.settings.inngest_signing_key)))
    s = app.settings
    print(f"durably dev: env {s.env!r}, store {s.database_url}", file=sys.stderr)
    print(f"durably dev: {len([f for f in app.functions.values() if not f.internal])} function(s) from app {app.id!r}",
          file=sys.stderr)
    print(f"durably dev: dashboard at {url}", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        if server is not None:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        app.close()


def _http_server(app, host: str, port: int):
    try:
        from .server.api import create_app
    except ImportError:
        return None
    import uvicorn

    asgi = app.asgi()
    config = uvicorn.Config(asgi, host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]  # not a method of the locked uvicorn (0.55): serve() captures signals itself
    return server
