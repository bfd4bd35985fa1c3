// The app `bench/inngest_sdk.py --sdk ts` measures: an Inngest TypeScript SDK (v4, express) app,
// one 3-step function. Its packages are tests/apps/inngest_ts's (npm install there).
import express from "express";
import { Inngest } from "inngest";
import { serve } from "inngest/express";

const inngest = new Inngest({ id: "bench" });
// CHECKPOINTING=0: the classic protocol, a call per step (v4 checkpoints by default)
const checkpointing = process.env.CHECKPOINTING !== "0";
const three = inngest.createFunction({ id: "three", retries: 0, checkpointing, triggers: [{ event: "bench/three" }] },
  async ({ step }) => {
    const a = await step.run("a", () => 1);
    const b = await step.run("b", () => a + 1);
    return await step.run("c", () => b + 1);
  });
const app = express();
app.use(express.json({ limit: "10mb" }));
app.use("/api/inngest", serve({ client: inngest, functions: [three] }));
app.listen(Number(process.env.PORT), "127.0.0.1");
