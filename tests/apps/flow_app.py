"""An app for multi-process flow-control tests: each run records when it held its key."""

import os
import sqlite3
import time

import durably

app = durably.App("flow-mp")


def _log(key: str, run_id: str, phase: str) -> None:
    conn = sqlite3.connect(os.environ["FLOW_LOG_DB"], timeout=30, isolation_level=None)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS spans (run_id TEXT, key TEXT, phase TEXT, at REAL, pid INTEGER)")
        conn.execute("INSERT INTO spans VALUES (?, ?, ?, ?, ?)", (run_id, key, phase, time.time(), os.getpid()))
    finally:
        conn.close()


@app.function(id="per-key", trigger=durably.on_event("per-key"),
              concurrency=[durably.Concurrency(limit=1, key="event.data.key")])
def per_key(ctx):
    key = ctx.event.data["key"]
    ctx.step.run("enter", _log, key, ctx.run_id, "start")
    ctx.step.run("work", time.sleep, 0.03)
    ctx.step.run("leave", _log, key, ctx.run_id, "end")
    return key
