"""`durably server` as a subprocess, with a `durably worker` beside it: the HTTP API end to end."""

from __future__ import annotations

import os
import sqlite3
import time

import httpx
import pytest

from tests.e2e.procs import Procs
from tests.e2e.server import Server, env_for, start_server
from tests.helpers import wait_for

APP = os.path.join(os.path.dirname(__file__), "..", "apps", "api_app.py")
PROD = {"event": "prod-event-key", "admin": "prod-admin-token", "cron": "prod-cron-secret"}
FUNCTIONS = {"greet", "background-jobs", "nap", "boom"}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """One production server and one worker on a SQLite file, shared by this module's tests."""
    tmp = tmp_path_factory.mktemp("api-e2e")
    procs = Procs(tmp)
    db_url = f"sqlite:///{tmp}/durably.db"
    try:
        server = start_server(procs, db_url, "production", PROD)
        worker = procs.start(["worker", APP, "--concurrency", "4"], env_for(db_url, "production", PROD))

        def registered() -> bool:
            if worker.poll() is not None:
                raise AssertionError(f"worker exited:\n{procs.log(worker)[-3000:]}")
            fns = server.admin("GET", "/api/v1/functions").json()["functions"]
            return FUNCTIONS <= {f["id"] for f in fns}

        wait_for(registered, 30, interval=0.05, what="the worker to register its functions")
        yield server, db_url
        for p in (worker, server.proc):
            procs.stop(p)
    finally:
        procs.cleanup()


def wait_status(server: Server, run_id: str, statuses: tuple[str, ...], timeout: float = 30) -> dict:
    def done() -> dict | None:
        r = server.admin("GET", f"/api/v1/runs/{run_id}")
        return r.json() if r.status_code == 200 and r.json()["status"] in statuses else None

    return wait_for(done, timeout, interval=0.05, what=f"run {run_id} to be {statuses}")


def test_two_cron_pings_in_one_window_make_one_run_and_no_secret_makes_nothing(deployment):
    server, _ = deployment
    url = server.base + "/api/v1/cron/background/process.requested?window=60"
    denied = httpx.post(url, timeout=10)
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "unauthorized"
    wrong = httpx.post(url, headers=server.headers("admin"), timeout=10)
    assert wrong.status_code == 401
    events = server.admin("GET", "/api/v1/events", params={"name": "background/process.requested"}).json()
    assert events["events"] == []
    # Two pings meant for one window must not straddle its end.
    wait_for(lambda: time.time() % 60 < 55, 60, interval=0.2, what="the start of a fresh 60 s window")
    first = httpx.post(url, headers=server.headers("cron"), timeout=10)
    second = httpx.post(url, headers=server.headers("cron"), timeout=10)
    assert first.status_code == 202 and first.json()["duplicate"] is False
    assert second.status_code == 200 and second.json()["duplicate"] is True
    assert first.headers["x-durably-env"] == second.headers["x-durably-env"] == "production"
    a, b = first.json(), second.json()
    assert a["eventId"] == b["eventId"] == f"cron:background/process.requested:{a['dispatchKey'].rsplit(':', 1)[1]}"
    assert b["pings"] == 2
    runs = server.admin("GET", "/api/v1/runs", params={"function": "background-jobs"}).json()["runs"]
    assert len(runs) == 1 and runs[0]["event_id"] == a["eventId"]
    done = wait_status(server, runs[0]["id"], ("completed",))
    assert done["output"] == {"processed": a["eventId"]}


def test_an_event_over_http_runs_and_the_run_shows_steps_and_attempts(deployment):
    server, _ = deployment
    r = httpx.post(server.base + "/api/v1/events", json={"name": "api.greet", "data": {"name": "Ada"}},
                   headers=server.headers("event"), timeout=10)
    assert r.status_code == 200
    (run_id,) = r.json()["runs"]
    run = wait_status(server, run_id, ("completed", "failed"))
    assert run["status"] == "completed" and run["output"] == {"text": "Hello, Ada!", "shout": "HELLO, ADA!"}
    steps = {s["id"]: s for s in run["steps"]}
    assert list(steps) == ["fetch", "shout"]
    assert steps["fetch"]["attempts"] == 2 and [e["message"] for e in steps["fetch"]["errors"]] == [
        "flaky the first time"]
    assert [a["attempt"] for a in steps["fetch"]["attempt_log"]] == [1, 2]
    assert steps["shout"]["attempts"] == 1 and steps["shout"]["output"] == "HELLO, ADA!"


def test_run_now_cancel_replay_and_bulk_replay_with_dry_run(deployment):
    server, _ = deployment
    r = server.admin("POST", "/api/v1/functions/nap/invoke", json={"data": {"why": "e2e"}})
    assert r.status_code == 201
    nap = r.json()["id"]
    sleeping = wait_status(server, nap, ("sleeping",))
    assert sleeping["trigger"] == "manual" and sleeping["steps"][0]["status"] == "sleeping"
    r = server.admin("POST", f"/api/v1/runs/{nap}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert server.admin("GET", f"/api/v1/runs/{nap}").json()["status"] == "cancelled"
    r = server.admin("POST", f"/api/v1/runs/{nap}/replay")
    assert r.status_code == 201 and r.json()["replay_of"] == nap
    replay = wait_status(server, r.json()["id"], ("sleeping",))
    assert replay["trigger"] == "replay" and replay["event"] == sleeping["event"]
    server.admin("POST", f"/api/v1/runs/{replay['id']}/cancel")

    sent = httpx.post(server.base + "/api/v1/events", json=[{"name": "api.boom", "data": {"i": i}} for i in range(3)],
                      headers=server.headers("event"), timeout=10).json()
    for rid in sent["runs"]:
        assert wait_status(server, rid, ("failed",))["terminal_reason"] == "non_retriable"
    before = len(server.admin("GET", "/api/v1/runs", params={"function": "boom", "limit": 1000}).json()["runs"])
    dry = server.admin("POST", "/api/v1/replay", json={"function": "boom", "status": "failed", "since": "1h",
                                                       "limit": 2, "dry_run": True})
    assert dry.status_code == 200
    assert [x["id"] for x in dry.json()["runs"]] == sent["runs"][:2] and dry.json()["count"] == 2
    after = len(server.admin("GET", "/api/v1/runs", params={"function": "boom", "limit": 1000}).json()["runs"])
    assert after == before == 3
    real = server.admin("POST", "/api/v1/replay", json={"function": "boom", "limit": 2, "concurrency": 1})
    assert real.status_code == 201 and real.json()["count"] == 2
    for item in real.json()["runs"]:
        again = wait_status(server, item["replay_id"], ("failed",))
        assert again["replay_of"] == item["id"] and again["trigger"] == "replay"


def test_metrics_and_health_of_a_live_server(deployment):
    server, _ = deployment
    assert httpx.get(server.base + "/metrics", timeout=10).status_code == 401
    text = server.admin("GET", "/metrics").text
    assert "durably_store_up 1.0" in text and "durably_workers_live 1.0" in text
    health = httpx.get(server.base + "/api/v1/health", timeout=10).json()
    assert health["ok"] is True and health["env"] == "production" and len(health["workers"]) == 1


def test_a_preview_server_cannot_write_into_production(tmp_path, procs):
    db = tmp_path / "shared.db"
    preview = start_server(procs, f"sqlite:///{db}", "preview",
                           {"event": "preview-event-key", "admin": "preview-admin", "cron": "preview-cron"})
    events = preview.base + "/api/v1/events"
    r = httpx.post(events, json={"name": "api.greet"}, headers={"Authorization": f"Bearer {PROD['event']}"}, timeout=10)
    assert r.status_code == 401 and r.headers["x-durably-env"] == "preview"
    r = httpx.post(events, json={"name": "api.greet"}, headers={**preview.headers("event"),
                                                               "X-Durably-Env": "production"}, timeout=10)
    assert r.status_code == 409 and r.json()["error"]["code"] == "env_mismatch"
    r = httpx.post(preview.base + "/api/v1/cron/api.greet", headers={"Authorization": f"Bearer {PROD['cron']}"},
                   timeout=10)
    assert r.status_code == 401
    r = httpx.post(preview.base + "/api/v1/cron/api.greet", headers={**preview.headers("cron"),
                                                                     "X-Durably-Env": "production"}, timeout=10)
    assert r.status_code == 409
    r = httpx.get(preview.base + "/api/v1/runs", headers={"Authorization": f"Bearer {PROD['admin']}"}, timeout=10)
    assert r.status_code == 401
    conn = sqlite3.connect(db)
    try:
        written = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                   for t in ("durably_events", "durably_runs", "durably_dispatches")}
        assert written == {"durably_events": 0, "durably_runs": 0, "durably_dispatches": 0}
        ok = httpx.post(events, json={"name": "api.greet"}, headers={**preview.headers("event"),
                                                                    "X-Durably-Env": "preview"}, timeout=10)
        assert ok.status_code == 200
        assert conn.execute("SELECT env, COUNT(*) FROM durably_events GROUP BY env").fetchall() == [("preview", 1)]
    finally:
        conn.close()
    procs.stop(preview.proc)


def test_the_server_refuses_to_start_without_its_keys(tmp_path):
    from tests.helpers import cli_env, run_cli

    env = cli_env(f"sqlite:///{tmp_path}/d.db", env="production", DURABLY_EVENT_KEY="k")
    env.pop("DURABLY_ADMIN_TOKEN", None)
    env.pop("CRON_SECRET", None)
    res = run_cli(["server", "--port", "1"], env)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "DURABLY_ADMIN_TOKEN" in lines[0]
    assert "CRON_SECRET" in lines[0]


def _raw_get(base: str, path: str, authorization: bytes) -> tuple[int, bytes]:
    """One GET over a plain socket, so header bytes reach the server exactly as written here."""
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(base)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Authorization: " + authorization + b"\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0]
    return int(head.split(b" ", 2)[1]), head.lower()


def test_over_real_http_only_space_and_tab_around_a_token_are_ignored(deployment):
    server, _ = deployment
    token = PROD["admin"].encode()
    refused = {"trailing NBSP (UTF-8)": token + b"\xc2\xa0", "trailing NBSP (Latin-1)": token + b"\xa0",
               "leading NBSP (Latin-1)": b"\xa0" + token, "trailing NEL (UTF-8)": token + b"\xc2\x85",
               "trailing NEL (Latin-1)": token + b"\x85", "trailing zero-width space": token + "\u200b".encode(),
               "upper case": token.upper()}
    for name, value in refused.items():
        status, head = _raw_get(server.base, "/metrics", b"Bearer " + value)
        assert status == 401, name
        assert b"x-content-type-options: nosniff" in head, name
    for name, value in {"exact": token, "space and tab around": b" \t" + token + b" \t"}.items():
        status, head = _raw_get(server.base, "/metrics", b"Bearer " + value)
        assert status == 200 and b"x-content-type-options: nosniff" in head, name
    status, head = _raw_get(server.base, "/no/such/route", b"Bearer " + token)
    assert status == 404 and b"x-content-type-options: nosniff" in head
