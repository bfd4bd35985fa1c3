"""The viewer role and the operators' routes (DESIGN §4 Roles, §8): DURABLY_VIEWER_TOKEN reads
the API and the dashboard; every state-changing route answers it 403 and changes nothing
(no audit row either); the admin token does everything, and each action leaves its audit row.
Pause and resume through the API and the dashboard, the paused badge, /audit. Both stores."""

from __future__ import annotations

import re

import pytest

import durably
from durably import admin
from durably.server.api import OPS
from tests.helpers import asgi_client as client
from tests.helpers import make_app

pytestmark = pytest.mark.anyio

EVENT_KEY, ADMIN, VIEWER, CRON = "ek-view-1", "at-view-1", "vt-view-1", "cs-view-1"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
AS_VIEWER = {"Authorization": f"Bearer {VIEWER}"}
# A valid body for each state-changing route; a route added later is covered by the loop too
# (the viewer is refused before its body is read).
BODIES = {"invoke_function": {"data": {"x": 1}}, "bulk_replay": {"function": "job", "status": "cancelled"},
          "bulk_cancel": {"function": "job"}, "pause_function": {"skip": False},
          "backfill": {"from": "3h", "to": "1h"}}


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def viewer_app(store_url):
    app = make_app(store_url, "viewer", env="production", event_key=EVENT_KEY, admin_token=ADMIN,
                   viewer_token=VIEWER, cron_secret=CRON)

    @app.function(id="job", trigger=durably.on_event("job.go"))
    async def job(ctx):
        await ctx.step.sleep("later", "1h")

    @app.function(id="tick", trigger=durably.on_cron("0 * * * *"))
    async def tick(ctx):
        return None

    app.register()
    yield app
    app.close()


def seed(app: durably.App) -> tuple[str, str]:
    """A queued run and a finished (cancelled) one."""
    (queued,) = app.send(durably.Event("job.go", {"n": 1})).runs
    (done,) = app.send(durably.Event("job.go", {"n": 2})).runs
    app.store.cancel_run(done, "setup").result()
    return queued, done


def state(app: durably.App) -> tuple:
    runs = sorted((r["id"], r["status"]) for r in app.store.list_runs(limit=1000).result())
    return runs, app.store.paused_functions().result(), app.store.list_audit(limit=100).result()


def changing_routes(queued: str, done: str) -> list[tuple[str, str, dict | None]]:
    out = []
    for op in OPS:
        if op.auth != "admin" or op.method == "GET":
            continue
        run = queued if op.name == "cancel_run" else done
        fn = "tick" if op.name == "backfill" else "job"  # a backfill needs a cron function
        path = op.path.replace("{id}", fn if "/functions/" in op.path else run)
        out.append((op.name, path, BODIES.get(op.name, {}) if op.body is not None else None))
    return out


async def test_viewer_reads_and_is_refused_every_state_changing_route(viewer_app):
    queued, done = seed(viewer_app)
    routes = changing_routes(queued, done)
    assert {"cancel_run", "replay_run", "bulk_replay", "bulk_cancel", "invoke_function", "pause_function",
            "resume_function", "backfill"} <= {name for name, _, _ in routes}
    before = state(viewer_app)
    async with client(viewer_app.asgi()) as c:
        for path in ("/api/v1/runs", f"/api/v1/runs/{queued}", "/api/v1/functions", "/api/v1/audit", "/metrics"):
            assert (await c.get(path, headers=AS_VIEWER)).status_code == 200, path
        for name, path, body in routes:
            r = await c.post(path, json=body, headers=AS_VIEWER)
            assert r.status_code == 403, (name, r.status_code, r.text)
            assert r.json()["error"]["code"] == "forbidden", name
            bad = await c.post(path, content=b"{nope", headers=AS_VIEWER)  # refused before the body is read
            assert bad.status_code == 403, name
        assert (await c.post("/api/v1/functions/job/pause", json={}, headers={"Authorization": "Bearer nope"})
                ).status_code == 401
        assert state(viewer_app) == before  # nothing changed, nothing recorded
        assert before[2] == []

        # The admin token does every one of them, and each leaves its audit row.
        for name, path, body in routes:
            if name in ("resume_function", "add_app"):  # resumed below; adding an app needs one to sync
                continue
            r = await c.post(path, json=body, headers=AS_ADMIN)
            assert r.status_code in (200, 201), (name, r.status_code, r.text)
        r = await c.post("/api/v1/functions/job/resume", headers=AS_ADMIN)
        assert r.status_code == 200 and r.json()["paused"] is False
        entries = (await c.get("/api/v1/audit", headers=AS_VIEWER)).json()["entries"]
    actions = [e["action"] for e in entries]
    assert actions[0] == "resume" and set(actions) >= {"cancel", "replay", "bulk_replay", "bulk_cancel",
                                                      "run_now", "pause", "backfill"}
    assert {e["role"] for e in entries} == {"operator"} and {e["env"] for e in entries} == {"production"}
    assert all(e["client"] for e in entries)


async def test_pause_resume_api_and_bad_input(viewer_app):
    async with client(viewer_app.asgi()) as c:
        r = await c.post("/api/v1/functions/job/pause", json={"skip": True}, headers=AS_ADMIN)
        assert r.status_code == 200 and r.json() == {"function_id": "job", "paused": True, "mode": "skip",
                                                      "was_paused": False}
        fns = (await c.get("/api/v1/functions", headers=AS_VIEWER)).json()["functions"]
        assert [(f["id"], f["paused"], f["paused_mode"]) for f in fns if f["id"] == "job"] == [("job", True, "skip")]
        sent = (await c.post("/api/v1/events", json={"name": "job.go"},
                             headers={"Authorization": f"Bearer {EVENT_KEY}"})).json()
        assert sent["runs"] == [] and [s["reason"] for s in sent["skipped"]] == ["paused"]
        r = await c.post("/api/v1/functions/job/pause", headers=AS_ADMIN)  # no body: queue mode
        assert r.status_code == 200 and r.json()["mode"] == "queue"
        for path, body in (("/api/v1/functions/job/pause", {"skip": "yes"}),
                           ("/api/v1/functions/job/pause", {"mode": "skip"}),
                           ("/api/v1/functions/job/pause", [1])):
            r = await c.post(path, json=body, headers=AS_ADMIN)
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input", (body, r.text)
        for path in ("/api/v1/functions/nope/pause", "/api/v1/functions/nope/resume"):
            r = await c.post(path, json={}, headers=AS_ADMIN)
            assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
        for q in ({"limit": "0"}, {"limit": "x"}, {"cursor": "zz"}, {"other": "1"}):
            r = await c.get("/api/v1/audit", params=q, headers=AS_VIEWER)
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input", q
        page = (await c.get("/api/v1/audit", params={"limit": 1}, headers=AS_VIEWER)).json()
        assert [e["action"] for e in page["entries"]] == ["pause"] and page["next_cursor"]
        rest = (await c.get("/api/v1/audit", params={"cursor": page["next_cursor"]}, headers=AS_VIEWER)).json()
        assert [(e["action"], e["params"]) for e in rest["entries"]] == [("pause", {"mode": "skip"})]
        assert rest["next_cursor"] is None
        doc = (await c.get("/openapi.json")).json()
        assert {"/api/v1/functions/{id}/pause", "/api/v1/functions/{id}/resume", "/api/v1/audit"} <= set(doc["paths"])
        assert "403" in doc["paths"]["/api/v1/functions/{id}/pause"]["post"]["responses"]


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


async def login(c, token: str) -> None:
    page = await c.get("/login")
    r = await c.post("/login", data={"csrf": csrf_of(page.text), "token": token, "next": "/"})
    assert r.status_code == 303, r.text


async def test_dashboard_viewer_sees_no_buttons_and_a_forged_post_is_403(viewer_app):
    queued, done = seed(viewer_app)
    before = state(viewer_app)
    async with client(viewer_app.asgi()) as c:
        await login(c, VIEWER)
        pages = {p: await c.get(p) for p in ("/", "/runs", f"/runs/{queued}", f"/runs/{done}", "/failures",
                                             "/events", "/audit", "/functions/job/run")}
        for p, r in pages.items():
            assert r.status_code == 200, p
            assert 'data-testid="role-badge"' in r.text, p
            posts = re.findall(r'<form method="post" action="([^"]+)"', r.text)
            assert posts == ["/logout"], (p, posts)  # no form that would be refused
            assert not re.search(r"<button[^>]*>(Run now|Cancel|Replay|Pause|Resume|Send)", r.text), p
        csrf = csrf_of(pages["/"].text)
        for path, data in (("/functions/job/run", {}), ("/functions/job/pause", {}), ("/functions/job/resume", {}),
                           (f"/runs/{queued}/cancel", {}), (f"/runs/{done}/replay", {}),
                           ("/failures/replay", {"group": "x"}), ("/events/send", {"name": "job.go"})):
            r = await c.post(path, data={"csrf": csrf, **data})
            assert r.status_code == 403, (path, r.status_code)
        assert (await c.post("/logout", data={"csrf": csrf})).status_code == 303  # a viewer may log out
    assert state(viewer_app) == before


async def test_dashboard_pause_resume_badges_and_audit(viewer_app):
    queued, _done = seed(viewer_app)
    async with client(viewer_app.asgi()) as c:
        await login(c, ADMIN)
        home = await c.get("/")
        assert 'data-testid="pause"' in home.text and 'data-testid="paused-badge"' not in home.text
        r = await c.post("/functions/job/pause", data={"csrf": csrf_of(home.text), "skip": "1"})
        assert r.status_code == 303
        assert viewer_app.store.paused_functions().result()["job"]["mode"] == "skip"
        home = await c.get("/")
        assert 'data-testid="resume"' in home.text and "paused (skip)" in home.text
        runs = await c.get("/runs")
        assert 'data-testid="paused-badge"' in runs.text and 'data-reason="paused"' in runs.text
        run = await c.get(f"/runs/{queued}")
        assert 'data-testid="paused-badge"' in run.text and 'data-reason="paused"' in run.text
        r = await c.post("/functions/job/resume", data={"csrf": csrf_of(home.text)})
        assert r.status_code == 303 and viewer_app.store.paused_functions().result() == {}
        assert 'data-testid="paused-badge"' not in (await c.get("/")).text
        r = await c.post("/events/send", data={"csrf": csrf_of(home.text), "name": "job.go", "data": "{}"})
        assert r.status_code == 303
        audit = await c.get("/audit")
        assert audit.status_code == 200
        assert re.findall(r'data-action="(\w+)"', audit.text) == ["send_event", "resume", "pause"]
        assert "operator" in audit.text and "production" in audit.text
        assert (await c.get("/audit", params={"cursor": "zz"})).status_code == 400
