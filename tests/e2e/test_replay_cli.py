"""`durably replay` (bulk replay from the command line) and `durably dev` serving the HTTP API."""

from __future__ import annotations

import json
import os

import httpx

import durably
from tests.e2e.server import free_port
from tests.helpers import cli_env, get_run, make_app, run_cli, running_worker, runs_of, wait_for, wait_run

APP = os.path.join(os.path.dirname(__file__), "..", "apps", "api_app.py")


def _failed_runs(url: str, n: int) -> tuple[durably.App, list[str]]:
    app = make_app(url, "replay-cli", env="test")
    state = {"fail": True}

    @app.function(id="fickle", trigger=durably.on_event("fickle"), retries=0)
    async def fickle(ctx):
        if state["fail"]:
            raise durably.NonRetriableError("down")
        return "up"

    with running_worker(app):
        runs = app.send([durably.Event("fickle", {"i": i}) for i in range(n)]).runs
        for rid in runs:
            wait_run(app, rid)
    state["fail"] = False
    return app, runs


def test_replay_dry_run_then_replay_with_a_limit_and_wait(tmp_path):
    url = f"sqlite:///{tmp_path}/durably.db"
    app, runs = _failed_runs(url, 4)
    env = cli_env(url)
    try:
        dry = run_cli(["replay", "--function", "fickle", "--since", "1h", "--dry-run"], env)
        assert dry.returncode == 0, dry.stderr
        assert all(rid in dry.stdout for rid in runs) and "dry run: 4 run(s) would be replayed" in dry.stdout
        assert len(runs_of(app)) == 4
        with running_worker(app):
            res = run_cli(["replay", "--function", "fickle", "--limit", "3", "--concurrency", "1", "--wait", "--json"],
                          env)
        assert res.returncode == 0, res.stderr
        body = json.loads(res.stdout)
        assert body["count"] == 3 and body["concurrency"] == 1 and body["outcome"] == {"completed": 3}
        assert [x["id"] for x in body["runs"]] == runs[:3]
        for item in body["runs"]:
            replay = get_run(app, item["replay_id"])
            assert replay["status"] == "completed" and replay["replay_of"] == item["id"]
            assert replay["trigger"] == "replay"
        assert "replays finished" in res.stderr  # the progress bar went to stderr
        left = run_cli(["replay", "--function", "fickle", "--json", "--dry-run"], env)
        assert [x["id"] for x in json.loads(left.stdout)["runs"]] == runs[3:]
        bad = run_cli(["replay", "--function", "fickle", "--status", "running"], env)
        assert bad.returncode == 1 and bad.stderr.startswith("error: status:") and bad.stderr.count("\n") == 1
        unknown = run_cli(["replay", "--function", "fickel"], env)
        assert unknown.returncode == 1 and "did you mean 'fickle'" in unknown.stderr
    finally:
        app.close()


def test_durably_dev_serves_the_api_next_to_its_worker(tmp_path, procs):
    port = free_port()
    env = cli_env(f"sqlite:///{tmp_path}/dev.db", env="dev")
    for k in ("DURABLY_EVENT_KEY", "DURABLY_ADMIN_TOKEN", "CRON_SECRET"):
        env.pop(k, None)
    dev = procs.start(["dev", APP, "--port", str(port)], env, cwd=str(tmp_path))
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if dev.poll() is not None:
            raise AssertionError(procs.log(dev))
        try:
            return httpx.get(base + "/api/v1/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, 30, interval=0.05, what="durably dev")
    r = httpx.post(base + "/api/v1/events", json={"name": "api.greet", "data": {"name": "Dev"}}, timeout=10)
    assert r.status_code == 200 and r.headers["x-durably-env"] == "dev"
    (run_id,) = r.json()["runs"]

    def finished() -> dict | None:
        run = httpx.get(f"{base}/api/v1/runs/{run_id}", timeout=10).json()
        return run if run["status"] in ("completed", "failed") else None

    run = wait_for(finished, 30, interval=0.05, what="the run to finish")
    assert run["status"] == "completed" and run["output"]["shout"] == "HELLO, DEV!"
    assert [s["id"] for s in run["steps"]] == ["fetch", "shout"]
    assert "routes are open (allowed in dev only)" in procs.log(dev)
    assert procs.stop(dev) == 0
