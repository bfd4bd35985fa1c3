"""An app for the dashboard tests."""

import pydantic

import durably

app = durably.App("dash")


@app.function(id="greet", trigger=durably.on_event("greet"), retries=0)
async def greet(ctx):
    name = ctx.event.data.get("name", "world")
    out = await ctx.step.run("compose", lambda: f"Hello, {name}!")
    if name == "Mallory":
        await ctx.step.run("refuse", _refuse)
    return out


def _refuse():
    raise ValueError("Mallory is refused")


@app.function(id="daily", trigger=durably.on_cron("0 9 * * *", tz="Europe/Berlin"))
async def daily(ctx):
    return "ok"


FAST = durably.Retry(attempts=4, initial="300ms", max="1s", jitter=False)


@app.function(id="trace", trigger=durably.on_event("trace.start"), retries=FAST)
async def trace(ctx):
    """Two failed attempts of a step, a short sleep, then a wait that ends long before its timeout."""

    def fetch():
        if ctx.attempt < 2:  # inside a step: that step's attempt
            raise RuntimeError(f"upstream timeout on attempt {ctx.attempt}")
        return "fetched"

    await ctx.step.run("fetch", fetch)
    await ctx.step.sleep("nap", "400ms")
    approved = await ctx.step.wait_for_event("approval", event="trace.approved", timeout="60s",
                                             match="data.ticket")
    return {"approved": approved is not None}


@app.function(id="sync", trigger=durably.on_event("sync.requested"), tenant="event.data.client", retries=0)
async def sync(ctx):
    return f"synced {ctx.event.data['client']}"


class Reindex(pydantic.BaseModel):
    clientId: str
    folders: list[str] = ["inbox"]
    full: bool


@app.function(id="reindex", trigger=durably.on_event("reindex.requested", schema=Reindex), retries=0)
async def reindex(ctx):
    return f"reindexed {ctx.event.model.clientId} ({'full' if ctx.event.model.full else 'partial'})"


@app.function(id="charge", trigger=durably.on_event("charge"), retries=0)
async def charge(ctx):
    raise ValueError(f"card declined for order {ctx.event.data['order']}")


@app.function(id="backoff", trigger=durably.on_event("backoff"),
              retries=durably.Retry(attempts=3, initial="1h", max="1h", jitter=False))
async def backoff(ctx):
    def call():
        raise ConnectionError("upstream refused the connection")

    return await ctx.step.run("call", call)
