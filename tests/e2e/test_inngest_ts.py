"""A real Inngest TypeScript SDK app (inngest 4.x + express, under node) runs on `durably dev`.

The app is tests/apps/inngest_ts (its node_modules come from `npm install` there, which
.ci/run does). Judged from the app's effects and durably's ledger, as the Python SDK's test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import free_port
from tests.e2e.test_inngest_python import Stack, _effects, _send, _wait_run, _wait_synced, first_tick, module_stack
from tests.helpers import cli_env, wait_for

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "tests" / "apps" / "inngest_ts"

if shutil.which("node") is None:
    pytest.skip("node is not installed", allow_module_level=True)
if not (APP_DIR / "node_modules" / "inngest").is_dir():
    pytest.skip("the TypeScript SDK app is not installed: run npm install in tests/apps/inngest_ts",
                allow_module_level=True)


def _ts_stack(tmp_path, procs) -> Stack:
    dev_port, app_port = free_port(), free_port()
    base, app_base = f"http://127.0.0.1:{dev_port}", f"http://127.0.0.1:{app_port}"
    effects = tmp_path / "effects.jsonl"
    effects.touch()
    env = dict(os.environ, EFFECTS=str(effects), PORT=str(app_port), INNGEST_DEV="1", INNGEST_BASE_URL=base)
    for k in ("INNGEST_SIGNING_KEY", "INNGEST_EVENT_KEY"):
        env.pop(k, None)
    log = open(tmp_path / "app.log", "wb")
    app = subprocess.Popen(["node", "app.mjs"], env=env, cwd=str(APP_DIR), stdout=log, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL)
    log.close()
    procs.started.append(app)
    procs.logs[app.pid] = tmp_path / "app.log"
    denv = cli_env(f"sqlite:///{tmp_path / 'durably.db'}", env="dev", PYTHONPATH=str(ROOT), DURABLY_LEASE_SECONDS="5")
    dev = procs.start(["dev", "--port", str(dev_port), "-u", app_base + "/api/inngest"], denv, cwd=str(tmp_path))
    ids = _wait_synced(procs, base, dev, app, expect="tsapp-flow")
    return Stack(base=base, app_base=app_base, effects=effects, ids=ids, dev=dev, app=app, procs=procs, headers={})


@pytest.fixture
def ts_stack(tmp_path, procs):
    return _ts_stack(tmp_path, procs)


@pytest.fixture(scope="module", autouse=True)
def ts_cron_stack(tmp_path_factory):
    yield from module_stack(tmp_path_factory, _ts_stack)


def test_ts_steps_retry_sleep_and_wait_for_event_with_match(ts_stack):
    s = ts_stack
    assert {"tsapp-flow", "tsapp-child", "tsapp-parent", "tsapp-doomed"} <= s.ids
    [eid] = _send(s, "test/flow", {"n": 21, "id": "order-1"})
    _wait_run(s, eid, lambda r: any(st["id"] == "approval" and st["status"] == "waiting" for st in r["steps"]),
              "the run to wait for approval")
    _send(s, "test/approved", {"id": "order-2", "by": "nobody"})  # another id: no match
    _send(s, "test/approved", {"id": "order-1", "by": "ada"})
    run = _wait_run(s, eid, lambda r: r["status"] in ("completed", "failed"), "the run to finish")
    assert run["status"] == "completed", run
    assert run["output"] == {"doubled": 42, "flaky": "ok on attempt 1", "approved_by": "ada", "never": None,
                             "done": "done", "run_id": run["id"]}
    assert [(st["id"], st["status"]) for st in run["steps"]] == [
        ("first", "completed"), ("flaky", "completed"), ("nap", "completed"), ("approval", "completed"),
        ("never", "completed"), ("last", "completed")]
    ran = [(e["step"], e.get("attempt")) for e in _effects(s) if e["run_id"] == run["id"]]
    assert ran == [("first", None), ("flaky", 0), ("flaky", 1), ("last", None)]


def test_ts_invoke_parallel_send_event_and_non_retriable(ts_stack):
    s = ts_stack
    [pid] = _send(s, "test/parent", {"x": 41})
    [did] = _send(s, "test/doomed", {})
    parent = _wait_run(s, pid, lambda r: r["status"] in ("completed", "failed"), "the parent to finish")
    assert parent["status"] == "completed", parent
    assert parent["output"] == {"parent_got": {"child": 42}, "par": [1, 2]}
    assert [st["id"] for st in parent["steps"]] == ["call-child", "p1", "p2", "emit"]
    [emitted] = parent["steps"][-1]["output"]["ids"]  # sendEvent's event triggers the child
    child = _wait_run(s, emitted, lambda r: r["status"] == "completed", "the child sendEvent triggered")
    assert child["output"] == {"child": 101} and child["function_id"] == "tsapp-child"
    doomed = _wait_run(s, did, lambda r: r["status"] in ("completed", "failed"), "doomed to fail")
    assert doomed["status"] == "failed" and doomed["attempts"] == 1 and "doomed gives up" in str(doomed["error"])
    assert [e["step"] for e in _effects(s)].count("doomed") == 1


def test_ts_signed_mode_on_durably_server(tmp_path, procs):
    """The TypeScript SDK in cloud mode (it checks our signatures over canonical JSON, with its
    5-minute window) against `durably server` with the same key; a wrong key is refused."""
    import httpx

    from tests.e2e.server import env_for
    from tests.e2e.test_inngest_python import KEY, OTHER_KEY
    from tests.helpers import wait_for

    keys = {"event": "evkey-1", "admin": "admin-1", "cron": "cron-1"}
    headers = {"Authorization": f"Bearer {keys['admin']}"}
    port, app_port, bad_port = free_port(), free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    env = env_for(f"sqlite:///{tmp_path / 'durably.db'}", "production", keys)
    env.update(PYTHONPATH=str(ROOT), DURABLY_INNGEST_SIGNING_KEY=KEY)
    server = procs.start(["server", "--host", "127.0.0.1", "--port", str(port)], env)
    effects = tmp_path / "effects.jsonl"
    effects.touch()
    apps = []
    for p, key in ((app_port, KEY), (bad_port, OTHER_KEY)):
        aenv = dict(os.environ, EFFECTS=str(effects), PORT=str(p), INNGEST_SIGNING_KEY=key,
                    INNGEST_EVENT_KEY=keys["event"], INNGEST_BASE_URL=base)
        aenv.pop("INNGEST_DEV", None)
        log = open(tmp_path / f"app-{p}.log", "wb")
        a = subprocess.Popen(["node", "app.mjs"], env=aenv, cwd=str(APP_DIR), stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        log.close()
        procs.started.append(a)
        procs.logs[a.pid] = tmp_path / f"app-{p}.log"
        apps.append(a)

    def put(p: int):
        try:
            return httpx.put(f"http://127.0.0.1:{p}/api/inngest", headers={"x-inngest-server-kind": "cloud"},
                             timeout=30)
        except httpx.TransportError:
            return None

    def up(p: int):
        assert server.poll() is None, procs.log(server)[-3000:]
        try:
            httpx.get(base + "/api/v1/health", timeout=1)
        except httpx.TransportError:
            return None
        return put(p)

    bad = wait_for(lambda: up(bad_port), timeout=30, interval=0.1, what="the app with the wrong key")
    assert "INNGEST_SIGNING_KEY is not DURABLY_INNGEST_SIGNING_KEY" in bad.text, bad.text
    good = wait_for(lambda: up(app_port), timeout=30, interval=0.1, what="the app with the right key")
    assert good.status_code == 200, good.text
    s = Stack(base=base, app_base=f"http://127.0.0.1:{app_port}", effects=effects, dev=server, app=apps[0],
              procs=procs, headers=headers)
    _wait_synced(procs, base, server, apps[0], headers, expect="tsapp-flow")
    [pid] = _send(s, "test/parent", {"x": 1})
    parent = _wait_run(s, pid, lambda r: r["status"] in ("completed", "failed"), "the parent to finish")
    assert parent["status"] == "completed" and parent["output"] == {"parent_got": {"child": 2}, "par": [1, 2]}, parent


def test_ts_checkpointing_reports_several_steps_in_one_call(ts_stack):
    """The v4 SDK's checkpointing: the function runs step after step in one call, reporting them
    to /v1/checkpoint two at a time; each is a durably step, in order, run once."""
    s = ts_stack
    [eid] = _send(s, "test/checkpointed", {})
    run = _wait_run(s, eid, lambda r: r["status"] in ("completed", "failed"), "the checkpointed run to finish")
    assert run["status"] == "completed" and run["output"] == {"sum": 10}, run
    assert [(st["id"], st["status"], st["attempts"]) for st in run["steps"]] == [
        ("c1", "completed", 1), ("c2", "completed", 1), ("c3", "completed", 1), ("c-nap", "completed", 1),
        ("c4", "completed", 1)]
    assert [st["output"] for st in run["steps"] if st["id"] != "c-nap"] == [1, 2, 3, 4]
    ran = [e["step"] for e in _effects(s) if e["run_id"] == run["id"]]
    # two calls of the function (up to the sleep, then after it), not one per step
    assert ran == ["checkpointed-body", "c1", "c2", "c3", "checkpointed-body", "c4"], ran


def test_ts_concurrency_with_a_key(ts_stack):
    s = ts_stack
    ids = [_send(s, "test/keyed", {"k": k})[0] for k in ("a", "a", "a", "b")]
    for eid in ids:
        _wait_run(s, eid, lambda r: r["status"] == "completed", "the keyed runs to finish")
    marks = [e for e in _effects(s) if e["step"].startswith("hold-")]
    open_by_key: dict[str, int] = {}
    overlapped = set()
    for e in marks:  # effects are appended in the order they happened
        open_by_key[e["k"]] = open_by_key.get(e["k"], 0) + (1 if e["step"] == "hold-start" else -1)
        if open_by_key[e["k"]] > 1:
            overlapped.add(e["k"])
    assert not overlapped and len(marks) == 8, marks
    config = next(f for f in httpx.get(s.base + "/api/v1/functions", timeout=5).json()["functions"]
                  if f["id"] == "tsapp-one-per-key")["config"]
    assert [(c["limit"], c["key"]) for c in config["concurrency"]] == [(1, "event.data.k")]


def test_ts_cancel_on_and_on_failure(ts_stack):
    s = ts_stack
    [cid] = _send(s, "test/cancellable", {"id": "c-1"})
    [fid] = _send(s, "test/always-fails", {})
    _wait_run(s, cid, lambda r: r["status"] == "sleeping", "the cancellable run to sleep")
    _send(s, "test/cancel", {"id": "c-other"})  # another id: does not cancel it
    _send(s, "test/cancel", {"id": "c-1"})
    cancelled = _wait_run(s, cid, lambda r: r["status"] == "cancelled", "the run to be cancelled")
    assert [st["id"] for st in cancelled["steps"]] == ["long-nap"]

    failed = _wait_run(s, fid, lambda r: r["status"] == "failed", "always-fails to fail")
    assert failed["attempts"] == 1 and "always fails" in str(failed["error"])
    handled = wait_for(lambda: [e for e in _effects(s) if e["step"] == "on_failure"], timeout=30,
                       what="the failure handler to run")
    assert handled == [{"step": "on_failure", "run_id": handled[0]["run_id"], "failed_run": failed["id"],
                        "function_id": "tsapp-always-fails", "event_name": "inngest/function.failed",
                        "message": "always fails"}], handled
    handler = httpx.get(s.base + "/api/v1/runs", params={"function": "tsapp-always-fails-failure"},
                        timeout=5).json()["runs"]
    assert [r["status"] for r in handler] == ["completed"]
    assert [e["step"] for e in _effects(s)].count("always-fails") == 1
    assert not [e for e in _effects(s) if e["step"] == "cancellable-woke"]


@pytest.mark.slow
def test_ts_a_cron_trigger_with_a_time_zone_fires(ts_cron_stack):
    """The next minute's tick (at most a minute after the module started) runs the SDK function once."""
    s = ts_cron_stack
    tick, runs = first_tick(s, "tsapp-tick")
    assert runs and runs[0]["id"] == tick["run_id"] and runs[0]["status"] == "completed"
    config = next(f for f in httpx.get(s.base + "/api/v1/functions", timeout=5).json()["functions"]
                  if f["id"] == "tsapp-tick")["config"]
    assert [(t["cron"], t["tz"]) for t in config["triggers"]] == [("* * * * *", "Europe/Paris")]
