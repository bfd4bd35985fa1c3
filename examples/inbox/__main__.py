"""``python -m examples.inbox [--port 8000]``: the API, a worker and the scheduler in one process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

import uvicorn


async def main(host: str, port: int, concurrency: int) -> None:
    from . import jobs
    from .api import create_api

    jobs.res()  # connect to PostgreSQL and Redis, create the tables: fail now, clearly
    api = create_api()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = uvicorn.Server(uvicorn.Config(api, host=host, port=port, log_level="warning"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    worker = jobs.app.worker(concurrency=concurrency)
    tasks = [asyncio.create_task(worker.run(stop)), asyncio.create_task(server.serve())]
    print(f"inbox: http://{host}:{port}/api/messages  durably: http://{host}:{port}/durably/", file=sys.stderr,
          flush=True)
    await stop.wait()
    server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    jobs.app.close()
    jobs.res().close()


def cli() -> None:
    p = argparse.ArgumentParser(prog="python -m examples.inbox", description=__doc__)
    p.add_argument("--host", default=os.environ.get("INBOX_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("INBOX_PORT", "8000")))
    p.add_argument("--concurrency", type=int, default=16)
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(main(a.host, a.port, a.concurrency))
    except Exception as exc:  # noqa: BLE001 - one clear line, non-zero exit
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


cli()
