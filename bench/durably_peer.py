"""durably as a system under test of the shared peer benchmark (peerbench).

Loaded by peerbench's run.py from this folder (``PEERBENCH_ADAPTERS=bench``, see
bench/README.md). The driver imports this module as its adapter; each worker process is
``python -m durably worker durably_peer:app`` (this folder is on the workers' PYTHONPATH).
"""
META = {
    "name": "durably",
    "requirements": ["-e", "$DURABLY_SRC"],
    "workloads": {"w1": ["sqlite", "postgres"], "w2": ["sqlite", "postgres"], "w3": ["sqlite", "postgres"]},
    "config": "default durable settings (SQLite WAL synchronous=FULL; PostgreSQL synchronous_commit as the "
              "server has it, on); enqueue with one app.send "
              "of a list (one transaction); each worker process = `durably worker durably_peer:app "
              "--concurrency 8` (asyncio tasks, scheduler on); a W1 job is an async function with no "
              "steps, a W2 run an async function with 3 ctx.step.run checkpoints",
}

import os
import time

import durably

import pbjob
from adapters import base


def database_url() -> str:
    if os.environ.get("PB_STORE") == "sqlite":
        return "sqlite:///" + os.environ["PB_SQLITE_PATH"]
    return os.environ["PB_DSN"]


app = durably.App("peerbench", database_url=database_url() if os.environ.get("PB_STORE") else None,
                  env="peerbench")
# The bulk enqueue of 20,000 events is measured, not bounded by DURABLY_DISPATCH_TIMEOUT.
app.configure(dispatch_timeout=float(os.environ.get("DURABLY_DISPATCH_TIMEOUT", "600")))


@app.function(id="noop", trigger=durably.on_event("pb.noop"))
async def noop(ctx: durably.Context) -> None:
    await pbjob.anoop()


@app.function(id="ping", trigger=durably.on_event("pb.ping"))
async def ping(ctx: durably.Context) -> None:
    t = time.time()
    await pbjob.aping(ctx.event.data["i"], t)


async def _step1(x: int) -> int:
    return x + 1


async def _step2(x: int) -> int:
    return x * 2


async def _step3(x: int) -> str:
    return f"result-{x}"


@app.function(id="steps", trigger=durably.on_event("pb.steps"))
async def steps(ctx: durably.Context) -> None:
    a = await ctx.step.run("step1", _step1, ctx.event.data["i"])
    b = await ctx.step.run("step2", _step2, a)
    await ctx.step.run("step3", _step3, b)
    await pbjob.anoop()


FUNCTION_OF = {"w1": "noop", "w2": "steps"}


class Adapter(base.Adapter):
    def version(self):
        from importlib.metadata import version

        return version("durably")

    def setup(self):
        app.register()  # opens the store: creates the schema, writes the registry

    def close(self):
        app.close()

    def enqueue_noop(self, n):
        app.send([durably.Event("pb.noop") for _ in range(n)])
        return "app.send of a list (one transaction)"

    def enqueue_steps(self, n):
        app.send([durably.Event("pb.steps", {"i": i}) for i in range(n)])
        return "app.send of a list (one transaction)"

    def enqueue_ping(self, i):
        app.send(durably.Event("pb.ping", {"i": i}))

    def worker_cmd(self, concurrency):
        return [self.py(), "-m", "durably", "worker", "durably_peer:app", "--concurrency", str(concurrency)]

    def count_done(self, workload):
        fid = FUNCTION_OF.get(workload)
        if fid is None:
            return None
        runs = app.store.list_runs(status="completed", function_id=fid, limit=1_000_000).result()
        return len(runs)
