"""Spans of run attempts and steps, and the run's fields for log lines.

OpenTelemetry is optional and costs nothing when it is off: this module never imports it on
its own. Tracing is on when the process has imported ``opentelemetry.trace`` (an app that set
up its own tracing, or ``durably.telemetry.configure_tracing`` from the ``OTEL_*`` variables)
and a real tracer provider is set; otherwise ``tracer()`` answers None after one dictionary
lookup and the executor takes its plain path.

What is traced (DESIGN §12): each run attempt is a span ``durably.run <function_id>``, a child
of the trace context its event carried (a link per event instead, for batches and debounced
runs, whose events come from several traces); each execution of ``step.run`` is a child span
``durably.step <step_id>``; a sleep or a wait becomes a span of its real duration (from when it
began to when it ended) on the attempt that resumed from it. Attributes: ``durably.run_id``,
``durably.function_id``, ``durably.attempt`` (1-based), ``durably.tenant``, ``durably.status``
(what the attempt ended as), and on steps ``durably.step_id`` and ``durably.step_kind``.

The run, step and attempt being executed are kept in context variables as well, so that
every log line written while a run executes (by durably or by the function's own code) can
carry them: ``durably.telemetry`` adds them to each record.
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar
from typing import Any

current_run: ContextVar[Any] = ContextVar("durably_current_run", default=None)  # the ClaimedRun executing
current_step: ContextVar[str | None] = ContextVar("durably_current_step", default=None)
current_attempt: ContextVar[int | None] = ContextVar("durably_current_attempt", default=None)  # failures so far

_NO_SPAN: AbstractContextManager[Any] = nullcontext()
_cached: tuple[Any, Any] | None = None  # (provider, tracer)


def tracer() -> Any | None:
    """durably's tracer when tracing is on, else None (without importing OpenTelemetry)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    global _cached
    if _cached is None or _cached[0] is not provider:
        _cached = (provider, provider.get_tracer("durably"))
    return _cached[1]


def log_fields() -> dict[str, Any]:
    """The fields of the run executing in this context, for a log record (empty outside runs)."""
    run = current_run.get()
    if run is None:
        return {}
    fields: dict[str, Any] = {"run_id": run.id, "function_id": run.function_id, "tenant": run.tenant}
    step = current_step.get()
    if step is not None:
        fields["step_id"] = step
        failures = current_attempt.get()
        fields["attempt"] = (failures or 0) + 1
    else:
        fields["attempt"] = run.attempt + 1
    return fields


def carrier() -> dict[str, str] | None:
    """The current trace context as W3C headers (``traceparent``, ``tracestate``), if any."""
    if tracer() is None:
        return None
    from opentelemetry.propagate import inject

    headers: dict[str, str] = {}
    inject(headers)
    return {k: v for k, v in headers.items() if k in ("traceparent", "tracestate")} or None


def _attributes(run: Any) -> dict[str, Any]:
    return {"durably.run_id": run.id, "durably.function_id": run.function_id,
            "durably.attempt": run.attempt + 1, "durably.tenant": run.tenant}


def start_run(tr: Any, run: Any, link_events: bool) -> Any:
    """Start the span of one attempt of ``run``; ``link_events`` for batches and debounced runs."""
    from opentelemetry import trace
    from opentelemetry.propagate import extract

    events = run.events or [run.event]
    contexts = [extract(e["trace"]) for e in events if isinstance(e, dict) and isinstance(e.get("trace"), dict)]
    parent, links = None, []
    if link_events or len(events) > 1:
        for c in contexts:
            sc = trace.get_current_span(c).get_span_context()
            if sc.is_valid:
                links.append(trace.Link(sc))
    elif contexts:
        parent = contexts[0]
    return tr.start_span(f"durably.run {run.function_id}", context=parent, links=links,
                         kind=trace.SpanKind.CONSUMER, attributes=_attributes(run))


def use(span: Any) -> AbstractContextManager[Any]:
    """Make ``span`` the current span (without ending it on exit)."""
    from opentelemetry import trace

    return trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False)


def end_run(span: Any, outcome: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("durably.status", outcome)
    if outcome in ("failed", "retry"):
        span.set_status(Status(StatusCode.ERROR, outcome))
    elif outcome == "completed":
        span.set_status(Status(StatusCode.OK))
    span.end()


def step_span(run_span: Any, step_id: str, attempt: int) -> AbstractContextManager[Any]:
    """The span of one execution of a step (current while the step's code runs), or a no-op."""
    if run_span is None:
        return _NO_SPAN
    from opentelemetry import trace

    tr = tracer()
    if tr is None:
        return _NO_SPAN
    return tr.start_as_current_span(
        f"durably.step {step_id}", context=trace.set_span_in_context(run_span),
        attributes={"durably.step_id": step_id, "durably.step_kind": "run", "durably.attempt": attempt},
        record_exception=False, set_status_on_exception=False)


def failed(span: Any, exc: BaseException | None = None, error: dict | None = None) -> None:
    """Record a failure on ``span`` (None: tracing is off) as an exception event, status ERROR."""
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    if exc is not None:
        span.record_exception(exc)
        message = f"{type(exc).__name__}: {exc}"
    else:
        name, text = (error or {}).get("name", "Error"), (error or {}).get("message", "")
        span.add_event("exception", {"exception.type": str(name), "exception.message": str(text)})
        message = f"{name}: {text}"
    span.set_status(Status(StatusCode.ERROR, message[:500]))


def interval(run_span: Any, step_id: str, kind: str, started: float | None, ended: float | None,
             **attributes: Any) -> None:
    """A sleep or wait as a span of its real duration (store-clock seconds), under ``run_span``."""
    if run_span is None or started is None or ended is None:
        return
    from opentelemetry import trace

    tr = tracer()
    if tr is None:
        return
    attrs = {"durably.step_id": step_id, "durably.step_kind": kind}
    attrs.update({f"durably.{k}": v for k, v in attributes.items() if v is not None})
    span = tr.start_span(f"durably.step {step_id}", context=trace.set_span_in_context(run_span),
                         start_time=int(started * 1e9), attributes=attrs)
    span.end(end_time=int(max(ended, started) * 1e9))
