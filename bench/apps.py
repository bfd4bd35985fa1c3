"""The app that ``bench/core.py`` measures, loaded by ``durably worker bench.apps:app``.

Store and env come from the environment (``DURABLY_DATABASE_URL``, ``DURABLY_ENV``), so
the benchmark process and its worker processes agree. The latency function reports the
time of its first line over a loopback UDP datagram to ``BENCH_PING_PORT`` (when set),
or to an in-process callback (when the worker runs inside the benchmark process).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Callable

import durably

app = durably.App("bench")

# In-process latency runs install a callback here; worker processes send a datagram.
on_ping: Callable[[int, float], None] | None = None
_sock: socket.socket | None = None


@app.function(id="noop", trigger=durably.on_event("bench.noop"))
async def noop(ctx: durably.Context) -> None:
    return None


async def _small(i: int) -> int:
    return i


@app.function(id="steps3", trigger=durably.on_event("bench.steps3"))
async def steps3(ctx: durably.Context) -> int:
    a = await ctx.step.run("one", _small, 1)
    b = await ctx.step.run("two", _small, 2)
    c = await ctx.step.run("three", _small, 3)
    return a + b + c


@app.function(id="ping", trigger=durably.on_event("bench.ping"))
async def ping(ctx: durably.Context) -> None:
    t = time.time()
    i = ctx.event.data["i"]
    if on_ping is not None:
        on_ping(i, t)
        return
    global _sock
    if _sock is None:
        _sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _sock.sendto(f"{i} {t!r}".encode(), ("127.0.0.1", int(os.environ["BENCH_PING_PORT"])))


# Fairness (bench/fairness.py): the same no-op with and without a fair share across tenants.
@app.function(id="noop_fair", trigger=durably.on_event("bench.noop_fair"), fairness=durably.Fairness())
async def noop_fair(ctx: durably.Context) -> None:
    return None


@app.function(id="tenant_plain", trigger=durably.on_event("bench.tenant_plain"), tenant="event.data.k")
async def tenant_plain(ctx: durably.Context) -> None:
    return None


@app.function(id="tenant_fair", trigger=durably.on_event("bench.tenant_fair"), tenant="event.data.k",
              fairness=durably.Fairness())
async def tenant_fair(ctx: durably.Context) -> None:
    return None


@app.function(id="once", trigger=durably.on_event("bench.once"), idempotency="event.data.k")
async def once(ctx: durably.Context) -> None:
    return None
