"""Flow-control benchmark: runs/s with 100 distinct concurrency keys (limit 1 each), next to
the same drain without keys, on a fresh SQLite store with default (durable) settings.

    python bench/flow.py [--n 2000] [--keys 100] [--concurrency 8]

Prints figures; asserts nothing. The worker runs on a thread of this process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import durably  # noqa: E402
from durably.config import Settings  # noqa: E402


def drain(n: int, keys: int | None, concurrency: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        settings = Settings.load({"DURABLY_DATABASE_URL": f"sqlite:///{d}/flow.db", "DURABLY_ENV": "bench"})
        app = durably.App("flow-bench", settings=settings)
        done = threading.Event()
        count = [0]
        lock = threading.Lock()
        limits = [durably.Concurrency(limit=1, key="event.data.k")] if keys else []

        @app.function(id="noop", trigger=durably.on_event("noop"), concurrency=limits)
        async def noop(ctx):
            with lock:
                count[0] += 1
                if count[0] == n:
                    done.set()

        app.send([durably.Event("noop", {"k": f"k{i % (keys or 1)}"}) for i in range(n)])
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        worker = app.worker(concurrency=concurrency, scheduler=False)
        t = threading.Thread(target=lambda: loop.run_until_complete(worker.run(stop)), daemon=True)
        start = time.perf_counter()
        t.start()
        if not done.wait(600):
            raise SystemExit(f"timed out: {count[0]} of {n} runs")
        elapsed = time.perf_counter() - start
        loop.call_soon_threadsafe(stop.set)
        t.join(30)
        app.close()
        return n / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--keys", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=8)
    a = p.parse_args()
    plain = drain(a.n, None, a.concurrency)
    keyed = drain(a.n, a.keys, a.concurrency)
    print(f"SQLite, synchronous=full, 1 worker x {a.concurrency}, {a.n} no-op runs")
    print(f"  no concurrency key            {plain:9.0f} runs/s")
    print(f"  {a.keys} keys, limit 1 each       {keyed:9.0f} runs/s   ({keyed / plain:.2f}x of no key)")


if __name__ == "__main__":
    main()
