"""The kill -9 test's app: three steps; the second blocks forever in a worker started with
``DURABLY_TEST_BLOCK=1``, so the test can kill that worker in the middle of the step."""

from __future__ import annotations

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import durably  # noqa: E402
from sidefx import record  # noqa: E402

app = durably.App("crash")


def _second(run_id: str) -> str:
    record(run_id, "two:start")
    if os.environ.get("DURABLY_TEST_BLOCK") == "1":
        threading.Event().wait()  # until this process is killed
    record(run_id, "two:end")
    return "two"


@app.function(id="three-steps", trigger=durably.on_event("crash.go"))
def three_steps(ctx: durably.Context) -> list:
    one = ctx.step.run("one", lambda: record(ctx.run_id, "one") or "one")
    two = ctx.step.run("two", _second, ctx.run_id)
    three = ctx.step.run("three", lambda: record(ctx.run_id, "three") or "three")
    return [one, two, three]
