"""Shared bits of the integration tests."""

from __future__ import annotations

import durably
from tests.helpers import get_run, wait_for

# Retries that keep tests fast: 3 attempts, 20 ms then 40 ms apart, no jitter.
FAST = durably.Retry(attempts=3, initial="20ms", max="200ms", jitter=False)


def steps_of(app: durably.App, run_id: str) -> dict[str, dict]:
    run = get_run(app, run_id)
    assert run is not None
    return {s["step_id"]: s for s in run["steps"]}


def wait_status(app: durably.App, run_id: str, status: str, timeout: float = 20.0) -> dict:
    return wait_for(lambda: (lambda r: r if r and r["status"] == status else None)(get_run(app, run_id)),
                    timeout, what=f"run {run_id} to be {status}")


def wait_step(app: durably.App, run_id: str, step_id: str, status: str, timeout: float = 20.0) -> dict:
    return wait_for(lambda: (lambda s: s if s and s["status"] == status else None)(steps_of(app, run_id).get(step_id)),
                    timeout, what=f"step {step_id} of run {run_id} to be {status}")
