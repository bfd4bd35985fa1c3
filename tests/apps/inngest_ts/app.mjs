import express from "express";
import fs from "node:fs";
import { Inngest, NonRetriableError } from "inngest";
import { serve } from "inngest/express";

const inngest = new Inngest({ id: "tsapp" });
const EFFECTS = process.env.EFFECTS;
const effect = (step, fields = {}) => fs.appendFileSync(EFFECTS, JSON.stringify({ step, ...fields }) + "\n");

const flow = inngest.createFunction(
  { id: "flow", retries: 2, triggers: [{ event: "test/flow" }] },
  async ({ event, step, attempt, runId }) => {
    const doubled = await step.run("first", async () => { effect("first", { run_id: runId }); return event.data.n * 2; });
    const flaky = await step.run("flaky", async () => {
      effect("flaky", { run_id: runId, attempt });
      if (attempt === 0) throw new Error("flaky fails on its first attempt");
      return `ok on attempt ${attempt}`;
    });
    await step.sleep("nap", "1s");
    const approval = await step.waitForEvent("approval", { event: "test/approved", match: "data.id", timeout: "5m" });
    const never = await step.waitForEvent("never", { event: "test/never", timeout: "2s" });
    const done = await step.run("last", async () => { effect("last", { run_id: runId }); return "done"; });
    return { doubled, flaky, approved_by: approval ? approval.data.by : null, never, done, run_id: runId };
  },
);

const child = inngest.createFunction({ id: "child", triggers: [{ event: "test/child" }] },
  async ({ event }) => ({ child: event.data.x + 1 }));

const parent = inngest.createFunction({ id: "parent", triggers: [{ event: "test/parent" }] },
  async ({ event, step }) => {
    const result = await step.invoke("call-child", { function: child, data: { x: event.data.x } });
    const [a, b] = await Promise.all([step.run("p1", () => 1), step.run("p2", () => 2)]);
    await step.sendEvent("emit", { name: "test/child", data: { x: 100 } });
    return { parent_got: result, par: [a, b] };
  });

const doomed = inngest.createFunction({ id: "doomed", triggers: [{ event: "test/doomed" }] },
  async ({ runId }) => { effect("doomed", { run_id: runId }); throw new NonRetriableError("doomed gives up"); });

// Checkpointing (the v4 default) with two steps per report: the SDK runs the steps one after
// another in one call and reports them to durably's /v1/checkpoint two at a time.
const checkpointed = inngest.createFunction(
  { id: "checkpointed", checkpointing: { bufferedSteps: 2 }, triggers: [{ event: "test/checkpointed" }] },
  async ({ step, runId }) => {
    effect("checkpointed-body", { run_id: runId });  // once per call of the function
    const run = (id, value) => step.run(id, () => { effect(id, { run_id: runId }); return value; });
    const a = await run("c1", 1);
    const b = await run("c2", 2);
    const c = await run("c3", 3);
    await step.sleep("c-nap", "1s");
    const d = await run("c4", 4);
    return { sum: a + b + c + d };
  },
);

const sleepy = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const onePerKey = inngest.createFunction(
  { id: "one-per-key", concurrency: { limit: 1, key: "event.data.k" }, triggers: [{ event: "test/keyed" }] },
  async ({ event, step, runId }) => {
    await step.run("hold", async () => {
      effect("hold-start", { run_id: runId, k: event.data.k });
      await sleepy(300);
      effect("hold-end", { run_id: runId, k: event.data.k });
    });
  },
);

const tick = inngest.createFunction({ id: "tick", triggers: [{ cron: "TZ=Europe/Paris * * * * *" }] },
  async ({ event, step, runId }) => step.run("record", () => {
    effect("tick", { run_id: runId, event_name: event.name, scheduled_at: event.data?.scheduledAt ?? null });
    return { scheduled_at: event.data?.scheduledAt ?? null };
  }));

const cancellable = inngest.createFunction(
  { id: "cancellable", cancelOn: [{ event: "test/cancel", match: "data.id" }], triggers: [{ event: "test/cancellable" }] },
  async ({ step, runId }) => {
    await step.sleep("long-nap", "10m");
    effect("cancellable-woke", { run_id: runId });
    return "woke";
  },
);

const alwaysFails = inngest.createFunction(
  {
    id: "always-fails", retries: 0, triggers: [{ event: "test/always-fails" }],
    onFailure: async ({ event, error, runId }) => {
      effect("on_failure", { run_id: runId, failed_run: event.data.run_id, function_id: event.data.function_id,
                             event_name: event.name, message: error?.message ?? null });
    },
  },
  async ({ runId }) => { effect("always-fails", { run_id: runId }); throw new Error("always fails"); },
);

const app = express();
app.use(express.json({ limit: "10mb" }));
app.use("/api/inngest", serve({ client: inngest, functions: [flow, child, parent, doomed, checkpointed, onePerKey, tick, cancellable, alwaysFails] }));
app.post("/send", async (req, res) => {
  const out = await inngest.send({ name: req.body.name, data: req.body.data || {} });
  res.json({ ids: out.ids });
});
app.listen(Number(process.env.PORT), "127.0.0.1", () => console.log("listening"));
