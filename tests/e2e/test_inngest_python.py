"""A real Inngest Python SDK app (inngest 0.5.x + FastAPI under uvicorn) runs on `durably dev`.

Judged from the app's effects (a line per execution of a step body) and durably's ledger.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import free_port
from tests.helpers import cli_env, wait_for

pytest.importorskip("inngest")
pytest.importorskip("fastapi")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack(tmp_path, procs):
    """durably dev on a fresh SQLite file, the SDK app pointed at it, synced with -u."""
    dev_port, app_port = free_port(), free_port()
    base = f"http://127.0.0.1:{dev_port}"
    effects = tmp_path / "effects.jsonl"
    effects.touch()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", EFFECTS=str(effects),
               INNGEST_DEV="1", INNGEST_BASE_URL=base)
    log = open(tmp_path / "app.log", "wb")
    app = subprocess.Popen([sys.executable, "-m", "uvicorn", "tests.apps.inngest_py_app:app", "--host", "127.0.0.1",
                            "--port", str(app_port), "--log-level", "warning"], env=env, cwd=str(ROOT),
                           stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    procs.started.append(app)
    procs.logs[app.pid] = tmp_path / "app.log"
    serve_url = f"http://127.0.0.1:{app_port}/api/inngest"
    denv = cli_env(f"sqlite:///{tmp_path / 'durably.db'}", env="dev", PYTHONPATH=str(ROOT),
                   DURABLY_LEASE_SECONDS="5")
    dev = procs.start(["dev", "--port", str(dev_port), "-u", serve_url], denv, cwd=str(tmp_path))

    def synced():
        for p in (dev, app):
            assert p.poll() is None, procs.log(p)[-3000:]
        try:
            r = httpx.get(base + "/api/v1/functions", timeout=2)
        except httpx.TransportError:
            return None
        ids = {f["id"] for f in r.json()["functions"]} if r.status_code == 200 else set()
        return ids if "pyapp-flow" in ids else None

    ids = wait_for(synced, timeout=60, interval=0.1, what="the SDK app to sync with durably dev")

    class Stack:
        pass

    s = Stack()
    s.base, s.app_base, s.effects, s.ids, s.dev, s.app, s.procs = base, f"http://127.0.0.1:{app_port}", effects, \
        ids, dev, app, procs
    return s


def _effects(s) -> list[dict]:
    return [json.loads(line) for line in s.effects.read_text().splitlines() if line.strip()]


def _send(s, name: str, data: dict) -> list[str]:
    r = httpx.post(s.app_base + "/send", json={"name": name, "data": data}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["ids"]


def _run_of(s, event_id: str) -> dict | None:
    r = httpx.get(s.base + f"/api/v1/events/{event_id}", timeout=5)
    if r.status_code != 200 or not r.json().get("runs"):
        return None
    run_id = r.json()["runs"][0]["id"] if isinstance(r.json()["runs"][0], dict) else r.json()["runs"][0]
    return httpx.get(s.base + f"/api/v1/runs/{run_id}", timeout=5).json()


def _wait_run(s, event_id: str, pred, what: str, timeout: float = 60) -> dict:
    def check():
        for p in (s.dev, s.app):
            assert p.poll() is None, s.procs.log(p)[-3000:]
        run = _run_of(s, event_id)
        return run if run is not None and pred(run) else None

    try:
        return wait_for(check, timeout=timeout, interval=0.1, what=what)
    except AssertionError:
        print(s.procs.log(s.dev)[-4000:])
        raise


def test_sync_maps_the_functions(stack):
    assert {"pyapp-flow", "pyapp-child", "pyapp-parent", "pyapp-doomed"} <= stack.ids
    # a second sync of the same app is idempotent and says so
    r = httpx.put(stack.app_base + "/api/inngest", headers={"x-inngest-server-kind": "dev"}, timeout=10)
    assert r.status_code == 200 and r.json()["ok"] is True and r.json()["modified"] is False, r.text


def test_steps_retry_sleep_and_wait_for_event(stack):
    [eid] = _send(stack, "test/flow", {"n": 21, "id": "order-1"})
    waiting = _wait_run(stack, eid, lambda r: any(st["id"] == "approval" and st["status"] == "waiting"
                                                  for st in r["steps"]), "the run to wait for approval")
    assert waiting["status"] == "waiting"
    _send(stack, "test/approved", {"id": "order-2", "by": "nobody"})  # does not match the wait's if
    _send(stack, "test/approved", {"id": "order-1", "by": "ada"})
    run = _wait_run(stack, eid, lambda r: r["status"] in ("completed", "failed"), "the run to finish")
    assert run["status"] == "completed", run
    assert run["output"] == {"doubled": 42, "flaky": "ok on attempt 1", "approved_by": "ada", "never": None,
                             "done": "done", "run_id": run["id"]}
    steps = {st["id"]: st for st in run["steps"]}
    assert list(steps) == ["first", "flaky", "nap", "approval", "never", "last"]
    assert all(st["status"] == "completed" for st in steps.values())
    assert steps["flaky"]["attempts"] == 2 and steps["first"]["attempts"] == 1
    # each step body ran once, the flaky one twice (its failure, then its success): never after a commit
    ran = [(e["step"], e.get("attempt")) for e in _effects(stack) if e["run_id"] == run["id"]]
    assert ran == [("first", None), ("flaky", 0), ("flaky", 1), ("last", None)]


def test_invoke_and_non_retriable_error(stack):
    [pid] = _send(stack, "test/parent", {"x": 41})
    [did] = _send(stack, "test/doomed", {})
    parent = _wait_run(stack, pid, lambda r: r["status"] in ("completed", "failed"), "the parent to finish")
    assert parent["status"] == "completed", parent
    assert parent["output"] == {"parent_got": {"child": 42}}
    doomed = _wait_run(stack, did, lambda r: r["status"] in ("completed", "failed"), "doomed to fail")
    assert doomed["status"] == "failed" and doomed["attempts"] == 1, doomed
    assert "doomed gives up" in json.dumps(doomed["error"])
    assert [e["step"] for e in _effects(stack)].count("doomed") == 1
