"""Typed events on both stores: data that does not fit the event's schema is refused where it
is sent, before anything is stored (``app.send``, a process without the app's code, the HTTP
API of a server without user code, Run now, the cron endpoint, the dashboard), and a run sees
``ctx.event.model``."""

from __future__ import annotations

import html
import re

import pydantic
import pytest

import durably
from durably.server import create_app
from tests.helpers import asgi_client as client
from tests.helpers import make_app, running_worker, wait_run

pytestmark = pytest.mark.anyio

EVENT = "inbox.counts.recompute"


@pytest.fixture
def anyio_backend():
    return "asyncio"


class Recompute(pydantic.BaseModel):
    clientId: str
    requestId: str | None = None
    source: str = "api"
    priority: int = 0


def typed_app(url: str, name: str = "typed") -> durably.App:
    app = make_app(url, name, env="dev")  # open routes: the HTTP tests need no keys

    @app.function(id="inbox-counts-recompute", trigger=durably.on_event(EVENT, schema=Recompute),
                  tenant="event.data.clientId")
    async def recompute(ctx: durably.Context) -> dict:
        model = ctx.event.model
        assert isinstance(ctx.event.data, dict)
        return {"type": type(model).__name__, "client": model.clientId, "source": model.source}

    @app.function(id="untyped", trigger=durably.on_event("plain"))
    async def untyped(ctx: durably.Context) -> object:
        return ctx.event.model

    app.register()
    return app


@pytest.fixture
def app(store_url):
    app = typed_app(store_url)
    yield app
    app.close()


def stored_events(app: durably.App) -> list[dict]:
    return app.store.list_events(limit=100).result()


def test_app_send_refuses_invalid_data_naming_the_field_and_stores_nothing(app):
    with pytest.raises(durably.InvalidEvent) as exc:
        app.send(durably.Event(EVENT, {"requestId": "r1"}))
    assert str(exc.value) == f"{EVENT}: data.clientId: Field required"
    with pytest.raises(durably.InvalidEvent, match=r"^events\[1\]: inbox.counts.recompute: data.priority: "):
        app.send([durably.Event(EVENT, {"clientId": "c1"}), durably.Event(EVENT, {"clientId": "c2", "priority": "x"})])
    assert stored_events(app) == []
    assert app.store.list_runs(limit=10).result() == []


async def test_send_async_refuses_it_too(app):
    with pytest.raises(durably.InvalidEvent, match="data.clientId: Field required"):
        await app.send_async(durably.Event(EVENT, {}))
    assert stored_events(app) == []


def test_a_process_without_the_code_is_refused_by_the_registered_schema(app, store_url):
    other = make_app(store_url, "elsewhere", env="dev")  # knows no function: only the store's registry has the schema
    try:
        with pytest.raises(durably.InvalidEvent, match=r"^inbox.counts.recompute: data.clientId: 5 is not of type"):
            other.send(durably.Event(EVENT, {"clientId": 5}))
        with pytest.raises(durably.InvalidEvent, match=r"^events\[2\]: "):
            other.send([durably.Event(EVENT, {"clientId": "a"}), durably.Event("plain", {}), durably.Event(EVENT, {})])
        assert stored_events(app) == []
        sent = other.send([durably.Event(EVENT, {"clientId": "a"}), durably.Event("plain", {"anything": 1})])
        assert len(sent.runs) == 2
    finally:
        other.close()


def test_a_run_sees_the_parsed_model_and_the_json_dict(app):
    typed = app.send(durably.Event(EVENT, {"clientId": "c1"})).runs[0]
    plain = app.send(durably.Event("plain", {"x": 1})).runs[0]
    with running_worker(app):
        assert wait_run(app, typed)["output"] == {"type": "Recompute", "client": "c1", "source": "api"}
        assert wait_run(app, plain)["output"] is None  # no schema: ctx.event.model is None


async def test_the_api_without_user_code_refuses_invalid_events_with_400_naming_the_field(app):
    server = create_app(app.settings)  # as `durably server`: no user code, only the registry
    async with client(server) as c:
        r = await c.post("/api/v1/events", json={"name": EVENT, "data": {"source": "x"}})
        assert r.status_code == 400, r.text
        assert r.json() == {"error": {"code": "invalid_event", "message": f"{EVENT}: data.clientId: Field required"}}
        r = await c.post("/api/v1/events", json=[{"name": EVENT, "data": {"clientId": "a"}},
                                                 {"name": EVENT, "data": {"clientId": "b", "priority": 1.5}}])
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_event"
        assert r.json()["error"]["message"].startswith(f"events[1]: {EVENT}: data.priority: ")
        assert stored_events(app) == []
        r = await c.post("/api/v1/events", json={"name": EVENT, "data": {"clientId": "a"}})
        assert r.status_code == 200 and len(r.json()["runs"]) == 1


async def test_functions_show_their_event_schema(app):
    async with client(create_app(app.settings)) as c:
        r = await c.get("/api/v1/functions")
        assert r.status_code == 200
        by_id = {f["id"]: f for f in r.json()["functions"]}
        schema = by_id["inbox-counts-recompute"]["event_schema"]
        assert schema["title"] == "Recompute" and schema["required"] == ["clientId"]
        assert by_id["untyped"]["event_schema"] is None
        doc = (await c.get("/openapi.json")).json()
        assert "event_schema" in doc["components"]["schemas"]["FunctionOut"]["properties"]


async def test_run_now_validates_the_data_against_the_schema(app):
    async with client(create_app(app.settings)) as c:
        r = await c.post("/api/v1/functions/inbox-counts-recompute/invoke", json={"data": {}})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_event"
        assert r.json()["error"]["message"] == f"{EVENT}: data.clientId: Field required"
        assert app.store.list_runs(limit=10).result() == []
        r = await c.post("/api/v1/functions/inbox-counts-recompute/invoke", json={"data": {"clientId": "c9"}})
        assert r.status_code == 201, r.text
    with running_worker(app):
        assert wait_run(app, r.json()["id"])["output"]["type"] == "Recompute"  # Run now's event is typed too


async def test_a_cron_ping_whose_data_does_not_fit_is_refused_and_records_no_window(store_url):
    app = make_app(store_url, "crontyped", env="dev")

    class Tick(pydantic.BaseModel):
        region: str

    @app.function(id="sweep", trigger=durably.on_event("sweep.requested", schema=Tick))
    async def sweep(ctx):
        return None

    app.register()
    try:
        async with client(create_app(app.settings)) as c:
            for _ in range(2):  # the refused ping wrote no window: the next one is refused the same way
                r = await c.post("/api/v1/cron/sweep.requested")
                assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_event", r.text
                assert "data.region: Field required" in r.json()["error"]["message"]
        assert stored_events(app) == []
    finally:
        app.close()


def _csrf(text: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', text).group(1)


def _textarea(text: str) -> str:
    return html.unescape(re.search(r"<textarea name=\"data\"[^>]*>(.*?)</textarea>", text, re.S).group(1))


async def test_the_dashboards_run_now_form_starts_from_the_schema_and_shows_a_refusal(app):
    import json

    async with client(app.asgi()) as c:
        page = await c.get("/")
        assert 'href="/functions/inbox-counts-recompute/run"' in page.text  # asks for the data
        form = await c.get("/functions/inbox-counts-recompute/run")
        assert form.status_code == 200
        assert json.loads(_textarea(form.text)) == {"clientId": "", "requestId": None, "source": "api", "priority": 0}
        assert "built from the event" in form.text and 'data-testid="run-now-typed"' in form.text
        bad = await c.post("/functions/inbox-counts-recompute/run",
                           data={"csrf": _csrf(form.text), "data": '{"clientId": 7}'})
        assert bad.status_code == 400, bad.text[:300]
        assert "data.clientId: 7 is not of type" in html.unescape(bad.text) or \
            "data.clientId: Input should be a valid string" in html.unescape(bad.text)
        assert json.loads(_textarea(bad.text)) == {"clientId": 7}  # what was typed stays in the form
        assert app.store.list_runs(limit=10).result() == []
        ok = await c.post("/functions/inbox-counts-recompute/run",
                          data={"csrf": _csrf(form.text), "data": '{"clientId": "c5"}'})
        assert ok.status_code == 303
        # Once an event was sent, the form starts from the last event's data instead.
        app.send(durably.Event(EVENT, {"clientId": "c6", "source": "sweep"}))
        again = await c.get("/functions/inbox-counts-recompute/run")
        assert json.loads(_textarea(again.text))["clientId"] in ("c5", "c6")
        assert "pre-filled from the function" in again.text
        # The events page's send form shows the refusal too, not a 500.
        events = await c.get("/events")
        sent = await c.post("/events/send", data={"csrf": _csrf(events.text), "name": EVENT, "data": "{}"})
        assert sent.status_code == 400 and "data.clientId: Field required" in html.unescape(sent.text)


def test_a_transactional_send_is_refused_before_it_writes_in_the_callers_transaction(store_url):
    from tests.integration.test_transactional_send import connect, count_messages, make_messages

    app = typed_app(store_url)
    other = make_app(store_url, "elsewhere", env="dev")  # the store's registry is all it knows
    conn = connect(store_url)
    try:
        make_messages(conn)
        # One transaction: the refusal leaves it usable, and the rest commits.
        conn.execute("INSERT INTO messages (body) VALUES ('hello')")
        with pytest.raises(durably.InvalidEvent, match="data.clientId: Field required"):
            other.send(durably.Event(EVENT, {}), connection=conn)
        other.send(durably.Event(EVENT, {"clientId": "c1"}), connection=conn)
        conn.commit()
        assert count_messages(conn) == 1
        assert [e["event"]["data"] for e in stored_events(app)] == [{"clientId": "c1"}]
    finally:
        conn.close()
        other.close()
        app.close()


def test_a_step_that_sends_data_that_does_not_fit_fails_the_run_naming_the_field(app):
    @app.function(id="sender", trigger=durably.on_event("go"), retries=0)
    async def sender(ctx):
        await ctx.step.send_event("announce", durably.Event(EVENT, {"source": "step"}))

    run = app.send(durably.Event("go")).runs[0]
    with running_worker(app):
        ended = wait_run(app, run)
    assert ended["status"] == "failed"
    assert f"{EVENT}: data.clientId: Field required" in ended["error"]["message"]
    assert EVENT not in [e["event"]["name"] for e in stored_events(app)]


def test_testenv_run_checks_the_data_and_the_run_sees_the_model():
    from durably.testing import TestEnv

    app = durably.App("typedtest")

    @app.function(id="recompute", trigger=durably.on_event(EVENT, schema=Recompute))
    async def recompute(ctx):
        return [type(ctx.event.model).__name__, ctx.event.model.priority]

    with TestEnv(app) as env:
        with pytest.raises(durably.InvalidEvent, match=f"^{EVENT}: data.clientId: Field required$"):
            env.run("recompute", {})
        assert env.run("recompute", {"clientId": "c1", "priority": 3}).output == ["Recompute", 3]


def test_an_invoke_with_data_that_does_not_fit_fails_the_step_and_valid_data_runs_the_child(app):
    @app.function(id="parent", trigger=durably.on_event("parent.go"), retries=0)
    async def parent(ctx):
        try:
            await ctx.step.invoke("bad", "inbox-counts-recompute", {"clientId": 1})
        except durably.StepError as exc:
            refused = exc.error["message"]
        child = await ctx.step.invoke("good", "inbox-counts-recompute", {"clientId": "c4"})
        return {"refused": refused, "child": child}

    run = app.send(durably.Event("parent.go")).runs[0]
    with running_worker(app):
        out = wait_run(app, run)["output"]
    assert out["refused"] == f"invoke 'inbox-counts-recompute': {EVENT}: data.clientId: 1 is not of type 'string'"
    assert out["child"] == {"type": "Recompute", "client": "c4", "source": "api"}
