"""``python -m examples.inbox [--port 8000] [--no-worker]``: the API, a worker and the scheduler
in one process (``--no-worker``: the API only, beside ``durably worker examples.inbox.jobs:app``).

``python -m examples.inbox flag background-jobs-use-durably false|true``: flip the cutover flag
in the app's ``flags`` table; running processes read it at their next cron ping.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

import uvicorn


async def main(host: str, port: int, concurrency: int, worker: bool) -> None:
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
    tasks = [asyncio.create_task(server.serve())]
    if worker:
        tasks.append(asyncio.create_task(jobs.app.worker(concurrency=concurrency).run(stop)))
    mode = "API, worker and scheduler" if worker else "API only (--no-worker)"
    print(f"inbox ({mode}, env {jobs.app.settings.env}): http://{host}:{port}/api/messages  "
          f"durably: http://{host}:{port}/durably/", file=sys.stderr, flush=True)
    await stop.wait()
    server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    jobs.app.close()
    jobs.res().close()


def flag(argv: list[str]) -> int:
    from .db import USE_DURABLY, get_flag, open_pool, set_flag
    from .settings import InboxSettings

    p = argparse.ArgumentParser(prog="python -m examples.inbox flag", description="Show or set a flag of the app.")
    p.add_argument("name", choices=[USE_DURABLY])
    p.add_argument("value", nargs="?", choices=["true", "false"])
    a = p.parse_args(argv)
    s = InboxSettings()
    pool = open_pool(s.database_url, s.use_durably)
    try:
        if a.value is not None:
            set_flag(pool, a.name, a.value == "true")
        print(f"{a.name} = {'true' if get_flag(pool, a.name) else 'false'}")
    finally:
        pool.close()
    return 0


def cli() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["flag"]:
        try:
            sys.exit(flag(argv[1:]))
        except Exception as exc:  # noqa: BLE001 - one clear line, non-zero exit
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)
    p = argparse.ArgumentParser(prog="python -m examples.inbox", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default=os.environ.get("INBOX_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("INBOX_PORT", "8000")))
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--no-worker", action="store_true", help="the API only: run workers with `durably worker`")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(main(a.host, a.port, a.concurrency, not a.no_worker))
    except Exception as exc:  # noqa: BLE001 - one clear line, non-zero exit
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


cli()
