"""Traces (OpenTelemetry, the SDK's in-memory exporter) and structured log lines, on both stores."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import durably
from durably.engine import tracing
from durably.telemetry import JsonFormatter, TextFormatter, configure_logging, configure_tracing
from durably.errors import ConfigError
from tests.helpers import make_app, running_worker, wait_for, wait_run
from tests.integration.support import FAST, wait_step


@pytest.fixture
def spans():
    """A tracer provider with an in-memory exporter as the global one, for this test only."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # What opentelemetry's own test utilities do between tests: the API lets a global provider
    # be set once per process.
    trace._TRACER_PROVIDER_SET_ONCE._done = False  # type: ignore[attr-defined]
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()
    trace._TRACER_PROVIDER_SET_ONCE._done = False  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]


def traced_app(store_url: str) -> tuple[durably.App, dict]:
    app = make_app(store_url, "traced", env="test")
    calls = {"flaky": 0}

    @app.function(id="traced", trigger=durably.on_event("t.go"), retries=FAST)
    async def traced(ctx):
        def flaky():
            calls["flaky"] += 1
            if calls["flaky"] == 1:
                raise RuntimeError("first try fails")
            return "ok"

        await ctx.step.run("flaky", flaky)
        await ctx.step.sleep("nap", "300ms")
        ev = await ctx.step.wait_for_event("approval", "t.approve", match="data.id", timeout="1h")
        return {"approved": ev is not None}

    return app, calls


def by_name(finished) -> dict[str, list]:
    out: dict[str, list] = {}
    for s in finished:
        out.setdefault(s.name, []).append(s)
    return out


def test_a_run_is_a_tree_of_attempt_and_step_spans_in_the_senders_trace(store_url, spans):
    app, calls = traced_app(store_url)
    tracer = trace.get_tracer("test")
    with running_worker(app):
        with tracer.start_as_current_span("POST /signup") as request:
            run_id = app.send(durably.Event("t.go", {"id": "a"})).runs[0]
        wait_step(app, run_id, "approval", "waiting")
        app.send(durably.Event("t.approve", {"id": "a"}))
        run = wait_run(app, run_id)
        assert run["status"] == "completed", run
    app.close()
    finished = spans.get_finished_spans()
    named = by_name(finished)
    attempts = named["durably.run traced"]
    # the step failed once (a retry of the attempt), then the sleep and the wait each suspended
    assert len(attempts) == 4, [(s.name, s.attributes) for s in finished]
    trace_id = request.get_span_context().trace_id
    assert {a.context.trace_id for a in attempts} == {trace_id}
    assert all(a.parent.span_id == request.get_span_context().span_id for a in attempts)
    assert [a.attributes["durably.status"] for a in attempts] == ["retry", "sleeping", "waiting", "completed"]
    assert all(a.attributes["durably.run_id"] == run_id and a.attributes["durably.tenant"] == "global"
               for a in attempts)
    assert [a.attributes["durably.attempt"] for a in attempts] == [1, 1, 1, 1]  # step retries are the step's
    assert attempts[0].status.status_code == trace.StatusCode.ERROR
    assert attempts[-1].status.status_code == trace.StatusCode.OK

    flaky = named["durably.step flaky"]
    assert [s.attributes["durably.attempt"] for s in flaky] == [1, 2]
    assert flaky[0].status.status_code == trace.StatusCode.ERROR
    assert [e.name for e in flaky[0].events] == ["exception"]
    assert flaky[0].events[0].attributes["exception.message"] == "first try fails"
    assert flaky[1].status.status_code != trace.StatusCode.ERROR
    for step, attempt in ((flaky[0], attempts[0]), (flaky[1], attempts[1])):
        assert step.parent.span_id == attempt.context.span_id

    (nap,) = named["durably.step nap"]  # drawn once, on the attempt that resumed from it
    assert nap.parent.span_id == attempts[2].context.span_id
    assert (nap.end_time - nap.start_time) / 1e9 >= 0.3
    assert nap.attributes["durably.step_kind"] == "sleep"
    (wait,) = named["durably.step approval"]
    assert wait.parent.span_id == attempts[3].context.span_id
    assert wait.attributes["durably.step_kind"] == "wait" and wait.attributes["durably.timed_out"] is False
    assert wait.end_time > wait.start_time
    assert calls["flaky"] == 2


def test_a_failed_run_records_the_error_on_its_span(store_url, spans):
    app = make_app(store_url, "traced-fail", env="test")

    @app.function(id="broken", trigger=durably.on_event("t.broken"), retries=durably.Retry(attempts=1))
    async def broken(ctx):
        raise ValueError("no such client")

    with running_worker(app):
        run_id = app.send(durably.Event("t.broken")).runs[0]
        assert wait_run(app, run_id)["status"] == "failed"
    app.close()
    (span,) = by_name(spans.get_finished_spans())["durably.run broken"]
    assert span.status.status_code == trace.StatusCode.ERROR
    assert span.attributes["durably.status"] == "failed"
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "no such client"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_http_api_takes_the_callers_traceparent(store_url, spans, anyio_backend):
    app = make_app(store_url, "traced-http", env="dev")

    @app.function(id="hello", trigger=durably.on_event("t.hello"))
    async def hello(ctx):
        return await ctx.step.run("say", lambda: "hi")

    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    transport = httpx.ASGITransport(app=app.asgi())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        ok = await c.post("/api/v1/events", json={"name": "t.hello"}, headers={"traceparent": parent})
        bad = await c.post("/api/v1/events", json={"name": "t.hello"}, headers={"traceparent": "nonsense"})
    assert ok.status_code == 200 and bad.status_code == 200  # an invalid traceparent is ignored (W3C)
    with running_worker(app):
        for r in (ok, bad):
            assert wait_run(app, r.json()["runs"][0])["status"] == "completed"
    app.close()
    runs = {s.attributes["durably.run_id"]: s for s in by_name(spans.get_finished_spans())["durably.run hello"]}
    joined, alone = runs[ok.json()["runs"][0]], runs[bad.json()["runs"][0]]
    assert format(joined.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(joined.parent.span_id, "016x") == "b7ad6b7169203331"
    assert alone.parent is None and alone.context.trace_id != joined.context.trace_id


def test_a_batch_links_the_traces_of_its_events(store_url, spans):
    app = make_app(store_url, "traced-batch", env="test")

    @app.function(id="batch", trigger=durably.on_event("t.item"), batch=durably.Batch(max_size=2, timeout="1h"))
    async def batch(ctx):
        return len(ctx.events)

    tracer = trace.get_tracer("test")
    senders = []
    for i in range(2):
        with tracer.start_as_current_span(f"send {i}") as s:
            senders.append(s.get_span_context())
            app.send(durably.Event("t.item", {"i": i}))
    with running_worker(app):
        wait_for(lambda: by_name(spans.get_finished_spans()).get("durably.run batch"), what="the batch's span")
    app.close()
    (span,) = by_name(spans.get_finished_spans())["durably.run batch"]
    assert span.parent is None
    assert {(link.context.trace_id, link.context.span_id) for link in span.links} == {
        (c.trace_id, c.span_id) for c in senders}


def test_without_opentelemetry_nothing_is_imported(tmp_path):
    code = f"""
import sys, durably
from durably.testing import TestEnv
app = durably.App("plain")

@app.function(id="f", trigger=durably.on_event("go"))
async def f(ctx):
    return await ctx.step.run("s", lambda: 1)

with TestEnv(app) as env:
    assert env.run("f").status == "completed"
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
assert not loaded, loaded
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_configure_tracing_reads_the_exporter_from_otel_variables():
    assert configure_tracing({}) is False
    assert configure_tracing({"OTEL_TRACES_EXPORTER": "none"}) is False
    with pytest.raises(ConfigError, match="zipkin"):
        configure_tracing({"OTEL_TRACES_EXPORTER": "zipkin"})


# --- log lines ---------------------------------------------------------------------------------


def test_log_lines_carry_the_runs_fields_as_json_and_as_text(store_url):
    app = make_app(store_url, "logs", env="test")
    user_log = logging.getLogger("shop.jobs")

    @app.function(id="logger", trigger=durably.on_event("t.log"), tenant="event.data.client")
    async def logger(ctx):
        def work():
            user_log.info("recomputing %s", "inbox", extra={"rows": 3})
            return 1

        await ctx.step.run("recompute", work)
        user_log.warning("done")

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    from durably.telemetry import _Fields

    keep = Keep()
    keep.addFilter(_Fields())
    user_log.addHandler(keep)
    user_log.setLevel(logging.INFO)
    try:
        with running_worker(app):
            run_id = app.send(durably.Event("t.log", {"client": "c1"})).runs[0]
            assert wait_run(app, run_id)["status"] == "completed"
    finally:
        user_log.removeHandler(keep)
        app.close()
    inside, after = records
    line = json.loads(JsonFormatter().format(inside))
    assert line["message"] == "recomputing inbox" and line["level"] == "info" and line["logger"] == "shop.jobs"
    assert line["run_id"] == run_id and line["function_id"] == "logger" and line["tenant"] == "c1"
    assert line["step_id"] == "recompute" and line["attempt"] == 1 and line["rows"] == 3
    outside = json.loads(JsonFormatter().format(after))
    assert outside["run_id"] == run_id and "step_id" not in outside and outside["attempt"] == 1
    text = TextFormatter().format(inside)
    assert text.endswith(f"shop.jobs: recomputing inbox run_id={run_id} function_id=logger step_id=recompute "
                         "attempt=1 tenant=c1 rows=3")


def test_configure_logging_json_writes_one_object_per_line():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = []
    try:
        configure_logging("json", logging.INFO, stream)
        logging.getLogger("durably.test").info("two\nlines", extra={"k": "v"})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("durably.test").exception("failed")
    finally:
        root.handlers = saved
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = map(json.loads, lines)
    assert first["message"] == "two\nlines" and first["k"] == "v" and "run_id" not in first
    assert second["level"] == "error" and "RuntimeError: boom" in second["exception"]
    with pytest.raises(ConfigError):
        configure_logging("yaml")
    assert tracing.log_fields() == {}
