"""An app written with the official Inngest Python SDK (FastAPI), driven by durably.

Every execution of a step body appends a line to the file named by ``EFFECTS``, so a test can
count how many times each step really ran. ``POST /send`` sends events with the SDK's own
client (through durably's ``/e/{key}``).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os

import fastapi
import inngest
import inngest.fast_api

# Dev mode (INNGEST_DEV=1) unsigned; otherwise cloud mode, signed with INNGEST_SIGNING_KEY.
client = inngest.Inngest(app_id="pyapp", is_production=not os.environ.get("INNGEST_DEV"))
EFFECTS = os.environ["EFFECTS"]


def effect(name: str, **fields: object) -> None:
    with open(EFFECTS, "a") as fh:
        fh.write(json.dumps({"step": name, **fields}) + "\n")


@client.create_function(fn_id="flow", trigger=inngest.TriggerEvent(event="test/flow"), retries=2)
async def flow(ctx: inngest.Context) -> dict:
    run_id = ctx.run_id

    async def first() -> int:
        effect("first", run_id=run_id)
        return ctx.event.data["n"] * 2

    async def flaky() -> str:
        effect("flaky", run_id=run_id, attempt=ctx.attempt)
        if ctx.attempt == 0:
            raise RuntimeError("flaky fails on its first attempt")
        return f"ok on attempt {ctx.attempt}"

    doubled = await ctx.step.run("first", first)
    flaky_result = await ctx.step.run("flaky", flaky)
    await ctx.step.sleep("nap", datetime.timedelta(seconds=1))
    approval = await ctx.step.wait_for_event("approval", event="test/approved",
                                             if_exp="async.data.id == event.data.id",
                                             timeout=datetime.timedelta(minutes=5))
    never = await ctx.step.wait_for_event("never", event="test/never", timeout=datetime.timedelta(seconds=2))

    async def last() -> str:
        effect("last", run_id=run_id)
        return "done"

    done = await ctx.step.run("last", last)
    return {"doubled": doubled, "flaky": flaky_result, "approved_by": approval.data.get("by") if approval else None,
            "never": never, "done": done, "run_id": run_id}


@client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="test/child"))
async def child(ctx: inngest.Context) -> dict:
    return {"child": ctx.event.data["x"] + 1}


@client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="test/parent"))
async def parent(ctx: inngest.Context) -> dict:
    result = await ctx.step.invoke("call-child", function=child, data={"x": ctx.event.data["x"]})
    return {"parent_got": result}


@client.create_function(fn_id="doomed", trigger=inngest.TriggerEvent(event="test/doomed"))
async def doomed(ctx: inngest.Context) -> None:
    effect("doomed", run_id=ctx.run_id)
    raise inngest.NonRetriableError("doomed gives up")


@client.create_function(fn_id="sender", trigger=inngest.TriggerEvent(event="test/send"))
async def sender(ctx: inngest.Context) -> dict:
    ids = await ctx.step.send_event("emit", inngest.Event(name="test/child", data={"x": ctx.event.data["x"]}))
    return {"sent": ids}


@client.create_function(fn_id="cancellable", trigger=inngest.TriggerEvent(event="test/cancellable"),
                        cancel=[inngest.Cancel(event="test/cancel", if_exp="async.data.id == event.data.id")])
async def cancellable(ctx: inngest.Context) -> str:
    await ctx.step.sleep("long-nap", datetime.timedelta(minutes=10))
    effect("cancellable-woke", run_id=ctx.run_id)
    return "woke"


async def report_failure(ctx: inngest.Context) -> None:
    effect("on_failure", run_id=ctx.run_id, failed_run=ctx.event.data.get("run_id"),
           function_id=ctx.event.data.get("function_id"), event_name=ctx.event.name,
           message=(ctx.event.data.get("error") or {}).get("message"))


@client.create_function(fn_id="always-fails", trigger=inngest.TriggerEvent(event="test/always-fails"), retries=0,
                        on_failure=report_failure)
async def always_fails(ctx: inngest.Context) -> None:
    effect("always-fails", run_id=ctx.run_id)
    raise RuntimeError("always fails")


@client.create_function(fn_id="fanout", trigger=inngest.TriggerEvent(event="test/fanout"))
async def fanout(ctx: inngest.Context) -> dict:
    def branch(name: str, value: int):
        async def body() -> int:
            effect(name, run_id=ctx.run_id)
            return value
        return lambda: ctx.step.run(name, body)

    both = await ctx.group.parallel((branch("p1", 1), branch("p2", 2)))
    after = await branch("after", 3)()
    return {"both": list(both), "after": after}


@client.create_function(fn_id="gated", trigger=inngest.TriggerEvent(event="test/gated"))
async def gated(ctx: inngest.Context) -> str:
    """Step "two" holds until the file ``GATE`` exists (a crash test kills durably meanwhile)."""
    async def one() -> str:
        effect("one", run_id=ctx.run_id)
        return "1"

    async def two() -> str:
        effect("two", run_id=ctx.run_id)
        while not os.path.exists(os.environ["GATE"]):
            await asyncio.sleep(0.02)
        return "2"

    async def three() -> str:
        effect("three", run_id=ctx.run_id)
        return "3"

    return await ctx.step.run("one", one) + await ctx.step.run("two", two) + await ctx.step.run("three", three)


@client.create_function(fn_id="one-per-key", trigger=inngest.TriggerEvent(event="test/keyed"),
                        concurrency=[inngest.Concurrency(limit=1, key="event.data.k")])
async def one_per_key(ctx: inngest.Context) -> None:
    async def hold() -> None:
        effect("hold-start", run_id=ctx.run_id, k=ctx.event.data["k"])
        await asyncio.sleep(0.3)
        effect("hold-end", run_id=ctx.run_id, k=ctx.event.data["k"])

    await ctx.step.run("hold", hold)


@client.create_function(fn_id="tick", trigger=inngest.TriggerCron(cron="TZ=Europe/Paris * * * * *"))
async def tick(ctx: inngest.Context) -> dict:
    async def record() -> dict:
        effect("tick", run_id=ctx.run_id, event_name=ctx.event.name, scheduled_at=ctx.event.data.get("scheduledAt"))
        return {"scheduled_at": ctx.event.data.get("scheduledAt")}

    return await ctx.step.run("record", record)


app = fastapi.FastAPI()


@app.post("/send")
async def send(request: fastapi.Request) -> dict:
    body = await request.json()
    ids = await client.send(inngest.Event(name=body["name"], data=body.get("data") or {}))
    return {"ids": ids}


inngest.fast_api.serve(app, client, [flow, child, parent, doomed, sender, cancellable, always_fails,
                                            fanout, gated, one_per_key, tick])
