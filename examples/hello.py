"""The smallest durably app: `durably dev examples/hello.py`, then `durably send hello --data '{"name": "Ada"}'`."""

import durably

app = durably.App("hello")


@app.function(id="say-hello", trigger=durably.on_event("hello"), retries=3)
async def say_hello(ctx: durably.Context) -> dict:
    name = ctx.event.data.get("name", "world")
    greeting = await ctx.step.run("greet", lambda: f"Hello, {name}!")
    await ctx.step.sleep("pause", "1s")
    shout = await ctx.step.run("shout", lambda: greeting.upper())
    ctx.logger.info("said %s", shout)
    return {"greeting": greeting, "shout": shout}
