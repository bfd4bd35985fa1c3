"""The app `bench/inngest_sdk.py --sdk py` measures: an Inngest Python SDK (FastAPI) app, one 3-step function."""

import fastapi
import inngest
import inngest.fast_api

client = inngest.Inngest(app_id="bench", is_production=False)


@client.create_function(fn_id="three", trigger=inngest.TriggerEvent(event="bench/three"), retries=0)
async def three(ctx: inngest.Context) -> int:
    async def add(x: int) -> int:
        return x + 1

    a = await ctx.step.run("a", add, 0)
    b = await ctx.step.run("b", add, a)
    return await ctx.step.run("c", add, b)


app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, [three])
