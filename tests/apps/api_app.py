"""An app for the HTTP API end-to-end tests (run by `durably worker` next to `durably server`)."""

import durably

app = durably.App("api-e2e")

FAST = durably.Retry(attempts=3, initial="20ms", max="200ms", jitter=False)


@app.function(id="greet", trigger=durably.on_event("api.greet"), retries=FAST)
async def greet(ctx: durably.Context) -> dict:
    """Its first step fails once, so the ledger shows a step with two attempts."""
    name = ctx.event.data.get("name", "world")

    def fetch() -> str:
        if ctx.attempt == 0:  # inside a step: that step's attempt
            raise RuntimeError("flaky the first time")
        return f"Hello, {name}!"

    text = await ctx.step.run("fetch", fetch)
    shout = await ctx.step.run("shout", lambda: text.upper())
    return {"text": text, "shout": shout}


@app.function(id="background-jobs", trigger=durably.on_event("background/process.requested"))
async def background_jobs(ctx: durably.Context) -> dict:
    return await ctx.step.run("process", lambda: {"processed": ctx.event.id})


@app.function(id="nap", trigger=durably.on_event("api.nap"))
async def nap(ctx: durably.Context) -> None:
    await ctx.step.sleep("long", "1h")


@app.function(id="boom", trigger=durably.on_event("api.boom"))
async def boom(ctx: durably.Context) -> None:
    raise durably.NonRetriableError("boom")
