"""A real Inngest Python SDK app (inngest 0.5.x + FastAPI under uvicorn) runs on `durably dev`.

Judged from the app's effects (a line per execution of a step body) and durably's ledger.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.procs import Procs
from tests.e2e.server import free_port
from tests.helpers import cli_env, get_run, make_app, wait_for

pytest.importorskip("inngest")
pytest.importorskip("fastapi")

ROOT = Path(__file__).resolve().parents[2]


def _start_app(tmp_path, procs, env_extra: dict) -> tuple[subprocess.Popen, str, Path]:
    app_port = free_port()
    effects = tmp_path / "effects.jsonl"
    effects.touch()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", EFFECTS=str(effects),
               GATE=str(tmp_path / "gate"), **env_extra)
    for k in ("INNGEST_DEV", "INNGEST_SIGNING_KEY", "INNGEST_EVENT_KEY"):
        if k not in env_extra:
            env.pop(k, None)
    log = open(tmp_path / "app.log", "wb")
    app = subprocess.Popen([sys.executable, "-m", "uvicorn", "tests.apps.inngest_py_app:app", "--host", "127.0.0.1",
                            "--port", str(app_port), "--log-level", "warning"], env=env, cwd=str(ROOT),
                           stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    procs.started.append(app)
    procs.logs[app.pid] = tmp_path / "app.log"
    return app, f"http://127.0.0.1:{app_port}", effects


class Stack:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def _wait_synced(procs, base: str, dev, app, headers: dict | None = None, expect: str = "pyapp-flow") -> set[str]:
    def synced():
        for p in (dev, app):
            assert p.poll() is None, procs.log(p)[-3000:]
        try:
            r = httpx.get(base + "/api/v1/functions", headers=headers, timeout=2)
        except httpx.TransportError:
            return None
        ids = {f["id"] for f in r.json()["functions"]} if r.status_code == 200 else set()
        return ids if expect in ids else None

    return wait_for(synced, timeout=60, interval=0.1, what="the SDK app to sync with durably")


def _dev_stack(tmp_path, procs) -> Stack:
    """durably dev on a fresh SQLite file, the SDK app (dev mode) pointed at it, synced with -u."""
    dev_port = free_port()
    base = f"http://127.0.0.1:{dev_port}"
    app, app_base, effects = _start_app(tmp_path, procs, {"INNGEST_DEV": "1", "INNGEST_BASE_URL": base})
    denv = cli_env(f"sqlite:///{tmp_path / 'durably.db'}", env="dev", PYTHONPATH=str(ROOT),
                   DURABLY_LEASE_SECONDS="5")
    dev = procs.start(["dev", "--port", str(dev_port), "-u", app_base + "/api/inngest"], denv, cwd=str(tmp_path))
    ids = _wait_synced(procs, base, dev, app)
    return Stack(base=base, app_base=app_base, effects=effects, ids=ids, dev=dev, app=app, procs=procs, headers={},
                 dev_args=["dev", "--port", str(dev_port), "-u", app_base + "/api/inngest"], dev_env=denv,
                 tmp=tmp_path)


@pytest.fixture
def stack(tmp_path, procs):
    return _dev_stack(tmp_path, procs)


def module_stack(tmp_path_factory, build):
    """A stack of its own for a module-scoped fixture, up from the module's start: its wait for
    the next minute's cron tick passes while the other tests run (the test that reads it is the
    module's last)."""
    tmp = tmp_path_factory.mktemp("cron")
    procs = Procs(tmp)
    try:
        yield build(tmp, procs)
    finally:
        procs.cleanup()


@pytest.fixture(scope="module", autouse=True)
def cron_stack(tmp_path_factory):
    yield from module_stack(tmp_path_factory, _dev_stack)


def _effects(s) -> list[dict]:
    return [json.loads(line) for line in s.effects.read_text().splitlines() if line.strip()]


def _send(s, name: str, data: dict) -> list[str]:
    r = httpx.post(s.app_base + "/send", json={"name": name, "data": data}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["ids"]


def _run_of(s, event_id: str) -> dict | None:
    try:
        r = httpx.get(s.base + f"/api/v1/events/{event_id}", headers=s.headers, timeout=5)
        if r.status_code != 200 or not r.json().get("runs"):
            return None
        run_id = r.json()["runs"][0]["id"] if isinstance(r.json()["runs"][0], dict) else r.json()["runs"][0]
        return httpx.get(s.base + f"/api/v1/runs/{run_id}", headers=s.headers, timeout=5).json()
    except httpx.TransportError:  # (re)starting
        return None


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
    # what the SDK reads with use_api: the run's events and its memo, by the SDK's hashed step ids
    batch = httpx.get(stack.base + f"/v0/runs/{run['id']}/batch", timeout=5).json()
    assert [(e["name"], e["data"]) for e in batch] == [("test/flow", {"n": 21, "id": "order-1"})]
    actions = httpx.get(stack.base + f"/v0/runs/{run['id']}/actions", timeout=5).json()
    assert actions[hashlib.sha1(b"first").hexdigest()] == {"data": 42}
    assert actions[hashlib.sha1(b"approval").hexdigest()]["data"] == {"id": "order-1", "by": "ada"}
    assert actions[hashlib.sha1(b"never").hexdigest()] is None and len(actions) == 6
    # the dashboard shows the SDK function and its run, with the step names as written
    home = httpx.get(stack.base + "/", timeout=10)
    assert home.status_code == 200 and "pyapp-flow" in home.text
    page = httpx.get(stack.base + f"/runs/{run['id']}", timeout=10)
    assert page.status_code == 200 and all(name in page.text for name in ("first", "flaky", "approval", "never"))


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


def test_send_event_cancel_on_and_on_failure(stack):
    [sid] = _send(stack, "test/send", {"x": 7})
    [cid] = _send(stack, "test/cancellable", {"id": "c-1"})
    [fid] = _send(stack, "test/always-fails", {})
    sender = _wait_run(stack, sid, lambda r: r["status"] in ("completed", "failed"), "the sender to finish")
    assert sender["status"] == "completed", sender
    [emitted] = sender["output"]["sent"]
    child = _wait_run(stack, emitted, lambda r: r["status"] == "completed", "the child the sender triggered")
    assert child["output"] == {"child": 8} and child["function_id"] == "pyapp-child"
    assert [st["id"] for st in sender["steps"]] == ["emit"]

    _wait_run(stack, cid, lambda r: r["status"] == "sleeping", "the cancellable run to sleep")
    _send(stack, "test/cancel", {"id": "c-other"})
    _send(stack, "test/cancel", {"id": "c-1"})
    cancelled = _wait_run(stack, cid, lambda r: r["status"] == "cancelled", "the run to be cancelled")
    assert cancelled["status"] == "cancelled"

    failed = _wait_run(stack, fid, lambda r: r["status"] == "failed", "always-fails to fail")
    assert failed["attempts"] == 1
    handled = wait_for(lambda: [e for e in _effects(stack) if e["step"] == "on_failure"], timeout=30,
                       what="the failure handler to run")
    assert handled == [{"step": "on_failure", "run_id": handled[0]["run_id"], "failed_run": failed["id"],
                        "function_id": "pyapp-always-fails", "event_name": "inngest/function.failed",
                        "message": handled[0]["message"]}]
    assert "always fails" in handled[0]["message"]
    assert not [e for e in _effects(stack) if e["step"] == "cancellable-woke"]


def test_parallel_steps(stack):
    [eid] = _send(stack, "test/fanout", {})
    run = _wait_run(stack, eid, lambda r: r["status"] in ("completed", "failed"), "the fan-out to finish")
    assert run["status"] == "completed" and run["output"] == {"both": [1, 2], "after": 3}, (run, stack.procs.log(stack.dev)[-3000:])
    assert sorted(st["id"] for st in run["steps"]) == ["after", "p1", "p2"]
    ran = sorted(e["step"] for e in _effects(stack) if e["run_id"] == run["id"])
    assert ran == ["after", "p1", "p2"]  # each branch ran once


def test_concurrency_with_a_key(stack):
    ids = [_send(stack, "test/keyed", {"k": k})[0] for k in ("a", "a", "a", "b")]
    for eid in ids:
        _wait_run(stack, eid, lambda r: r["status"] == "completed", "the keyed runs to finish")
    marks = [e for e in _effects(stack) if e["step"].startswith("hold-")]
    open_by_key: dict[str, int] = {}
    overlapped_keys = set()
    for e in marks:  # effects are appended in the order they happened
        n = open_by_key.get(e["k"], 0) + (1 if e["step"] == "hold-start" else -1)
        open_by_key[e["k"]] = n
        if n > 1:
            overlapped_keys.add(e["k"])
    assert not overlapped_keys, marks
    assert len(marks) == 8


@pytest.mark.slow
def test_kill9_of_the_driving_process_reruns_no_committed_step(stack):
    [eid] = _send(stack, "test/gated", {})
    wait_for(lambda: [e for e in _effects(stack) if e["step"] == "two"], timeout=30,
             what="step two to start in the app")
    stack.procs.kill9(stack.dev)  # mid-call: step one committed, step two running in the app
    stack.dev = stack.procs.start(stack.dev_args, stack.dev_env, cwd=str(stack.tmp))
    (stack.tmp / "gate").touch()
    run = _wait_run(stack, eid, lambda r: r["status"] in ("completed", "failed"), "the run to finish after the crash")
    assert run["status"] == "completed" and run["output"] == "123", run
    ran = [e["step"] for e in _effects(stack) if e["run_id"] == run["id"]]
    # one and three once; two was in flight when its driver died, so it ran again (never committed twice)
    assert ran.count("one") == 1 and ran.count("three") == 1 and ran.count("two") == 2, ran
    assert [(st["id"], st["status"], st["attempts"]) for st in run["steps"]] == [
        ("one", "completed", 1), ("two", "completed", 1), ("three", "completed", 1)]


# --- signed: the SDK app in cloud mode against `durably server` ------------------------------

KEY = "signkey-prod-" + "0123456789abcdef" * 4
OTHER_KEY = "signkey-prod-" + "fedcba9876543210" * 4


def _signed(tmp_path, procs, server_key: str, app_key: str) -> Stack:
    from tests.e2e.server import env_for

    keys = {"event": "evkey-1", "admin": "admin-1", "cron": "cron-1"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = env_for(f"sqlite:///{tmp_path / 'durably.db'}", "production", keys)
    env.update(PYTHONPATH=str(ROOT), DURABLY_INNGEST_SIGNING_KEY=server_key)
    server = procs.start(["server", "--host", "127.0.0.1", "--port", str(port)], env)
    app, app_base, effects = _start_app(tmp_path, procs, {"INNGEST_SIGNING_KEY": app_key,
                                                          "INNGEST_EVENT_KEY": keys["event"],
                                                          "INNGEST_BASE_URL": base})

    def up():
        assert server.poll() is None, procs.log(server)[-3000:]
        try:
            return httpx.get(base + "/api/v1/health", timeout=1).status_code == 200 and \
                httpx.get(app_base + "/docs", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, timeout=30, interval=0.05, what="durably server and the app")
    return Stack(base=base, app_base=app_base, effects=effects, dev=server, app=app, procs=procs, keys=keys,
                 headers={"Authorization": f"Bearer {keys['admin']}"})


def _put(s) -> httpx.Response:
    return httpx.put(s.app_base + "/api/inngest", headers={"x-inngest-server-kind": "cloud"}, timeout=30)


def test_signed_mode_on_durably_server(tmp_path, procs):
    s = _signed(tmp_path, procs, KEY, KEY)
    r = _put(s)
    assert r.status_code == 200 and r.json().get("ok") is True, r.text
    _wait_synced(procs, s.base, s.dev, s.app, s.headers)
    [pid] = _send(s, "test/parent", {"x": 1})
    parent = _wait_run(s, pid, lambda r: r["status"] in ("completed", "failed"), "the parent to finish")
    assert parent["status"] == "completed" and parent["output"] == {"parent_got": {"child": 2}}, parent


def test_a_wrong_key_is_refused_on_both_sides(tmp_path, procs):
    s = _signed(tmp_path, procs, KEY, OTHER_KEY)
    r = _put(s)  # the app's sync carries the hash of its own key: durably refuses it, and says why
    assert "INNGEST_SIGNING_KEY is not DURABLY_INNGEST_SIGNING_KEY" in r.text, r.text
    functions = httpx.get(s.base + "/api/v1/functions", headers=s.headers, timeout=5).json()["functions"]
    assert not [f for f in functions if f["id"].startswith("pyapp-")]
    # an event under a wrong event key is a 401 that writes nothing
    bad = httpx.post(s.base + "/e/not-the-key", json={"name": "test/flow", "data": {"n": 1}}, timeout=5)
    assert bad.status_code == 401 and bad.json()["error"] == "Event key not found"
    events = httpx.get(s.base + "/api/v1/events", headers=s.headers, timeout=5).json()["events"]
    assert events == []


# --- two servers share SDK runs ---------------------------------------------------------------


def test_kill9_of_the_server_driving_a_run_the_other_one_finishes_it(store_url, tmp_path, procs):
    """Two `durably server`s on one store: the app syncs through the first, both drive. kill -9
    of the one driving the run mid-step: the other takes it over after the lease."""
    env = cli_env(store_url, env="dev", PYTHONPATH=str(ROOT), DURABLY_LEASE_SECONDS="2")
    ports = [free_port(), free_port()]
    servers = [procs.start(["server", "--host", "127.0.0.1", "--port", str(p)], env) for p in ports]
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    app, app_base, effects = _start_app(tmp_path, procs, {"INNGEST_DEV": "1", "INNGEST_BASE_URL": bases[0]})

    def sync():
        for p in (*servers, app):
            assert p.poll() is None, procs.log(p)[-3000:]
        try:
            r = httpx.put(app_base + "/api/inngest", headers={"x-inngest-server-kind": "dev"}, timeout=10)
        except httpx.TransportError:
            return None
        return r if r.status_code == 200 and r.json().get("ok") else None

    wait_for(sync, timeout=60, interval=0.1, what="the app to sync through the first server")
    s = Stack(base=bases[0], app_base=app_base, effects=effects, dev=servers[0], app=app, procs=procs, headers={})
    [eid] = _send(s, "test/gated", {})
    two = wait_for(lambda: [e for e in _effects(s) if e["step"] == "two"], timeout=30, what="step two to start")
    run = _run_of(s, eid)
    reader = make_app(store_url, "reader", env="dev")  # the ledger read directly: who holds the lease
    try:
        owner = get_run(reader, run["id"])["lease_owner"] or ""
    finally:
        reader.close()
    driving = next(i for i, p in enumerate(servers) if f":{p.pid}:" in owner)
    procs.kill9(servers[driving])
    s.base, s.dev = bases[1 - driving], servers[1 - driving]
    (tmp_path / "gate").touch()
    done = _wait_run(s, eid, lambda r: r["status"] in ("completed", "failed"), "the other server to finish it")
    assert done["status"] == "completed" and done["output"] == "123", done
    ran = [e["step"] for e in _effects(s) if e["run_id"] == done["id"]]
    assert ran.count("one") == 1 and ran.count("three") == 1 and ran.count("two") == 2 and two, ran


# --- apps added by URL: POST /api/v1/apps -----------------------------------------------------


def test_an_app_added_by_url_through_the_api(tmp_path, procs):
    """`POST /api/v1/apps {"url"}` sends the app the PUT that makes it sync (what `durably dev -u`
    sends) and answers with its functions; again, it changes nothing; a bad URL is a 400, an app
    that cannot be reached or refuses the sync a 502, with the reason."""
    dev_port = free_port()
    base = f"http://127.0.0.1:{dev_port}"
    app, app_base, _ = _start_app(tmp_path, procs, {"INNGEST_DEV": "1", "INNGEST_BASE_URL": base})
    denv = cli_env(f"sqlite:///{tmp_path / 'durably.db'}", env="dev", PYTHONPATH=str(ROOT))
    dev = procs.start(["dev", "--port", str(dev_port)], denv, cwd=str(tmp_path))

    def add(url):
        for p in (dev, app):
            assert p.poll() is None, procs.log(p)[-3000:]
        try:
            return httpx.post(base + "/api/v1/apps", json={"url": url}, timeout=30)
        except httpx.TransportError:
            return None

    first = wait_for(lambda: (r := add(app_base + "/api/inngest")) is not None and r.status_code != 502 and r,
                     timeout=60, interval=0.1, what="the app to sync through the API")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["synced"] is True and body["url"] == app_base + "/api/inngest" and body["app_id"] == "pyapp"
    assert {"pyapp-flow", "pyapp-child", "pyapp-always-fails", "pyapp-always-fails-failure"} <= set(body["functions"])
    assert body["modified"] is True
    ids = {f["id"] for f in httpx.get(base + "/api/v1/functions", timeout=5).json()["functions"]}
    assert set(body["functions"]) <= ids
    again = add(app_base + "/api/inngest")
    assert again.status_code == 200 and again.json() == {**body, "modified": False}, again.text
    # the synced app runs
    [eid] = _send(Stack(app_base=app_base), "test/child", {"x": 1})
    s = Stack(base=base, dev=dev, app=app, procs=procs, headers={})
    assert _wait_run(s, eid, lambda r: r["status"] == "completed", "the child to run")["output"] == {"child": 2}

    for bad in ("ftp://127.0.0.1/x", "127.0.0.1:3000", "http://exa mple/", "http://host:70000/", "", 42):
        r = httpx.post(base + "/api/v1/apps", json={"url": bad}, timeout=5)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input", (bad, r.text)
        assert "url" in r.json()["error"]["message"]
    r = httpx.post(base + "/api/v1/apps", json={}, timeout=5)
    assert r.status_code == 400 and "'url' is required" in r.json()["error"]["message"], r.text
    closed = f"http://127.0.0.1:{free_port()}/api/inngest"
    r = add(closed)
    assert r.status_code == 502 and r.json()["error"]["code"] == "app_sync_failed", r.text
    assert "could not be reached" in r.json()["error"]["message"]
    r = add(base + "/api/v1/health")  # answers the PUT with an error (405)
    assert r.status_code == 502 and "405" in r.json()["error"]["message"], r.text


def test_dev_refuses_a_url_that_cannot_be_an_app(tmp_path):
    from tests.helpers import run_cli

    env = cli_env(f"sqlite:///{tmp_path / 'durably.db'}", env="dev", PYTHONPATH=str(ROOT))
    out = run_cli(["dev", "--port", str(free_port()), "-u", "localhost:3000/api/inngest"], env, cwd=str(tmp_path))
    assert out.returncode != 0 and "must be an http:// or https:// URL" in out.stderr, out.stderr


def test_a_cron_trigger_with_a_time_zone_fires(cron_stack):
    """The next minute's tick (at most a minute after the module started) runs the SDK function once."""
    tick, runs = first_tick(cron_stack, "pyapp-tick")
    assert runs and runs[0]["id"] == tick["run_id"]


def first_tick(stack: Stack, function_id: str) -> tuple[dict, list[dict]]:
    """The first cron tick the SDK app ran (a timer event at a whole minute), and the runs of
    ``function_id`` as durably lists them."""
    ticks = wait_for(lambda: [e for e in _effects(stack) if e["step"] == "tick"], timeout=90, interval=0.2,
                     what="the cron tick")
    assert ticks[0]["event_name"] == "inngest/scheduled.timer" and ticks[0]["scheduled_at"].endswith(":00.000Z")
    runs = httpx.get(stack.base + "/api/v1/runs", params={"function": function_id}, timeout=5).json()["runs"]
    return ticks[0], runs
