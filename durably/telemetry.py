"""Traces and log lines (DESIGN §6, §12).

Traces: ``durably worker``, ``server`` and ``dev`` call ``configure_tracing()``, which does
nothing unless ``OTEL_TRACES_EXPORTER`` names an exporter (``console`` or ``otlp``); then it
sets up the OpenTelemetry SDK (the ``durably[otel]`` extra) from the standard ``OTEL_*``
variables: ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_EXPORTER_OTLP_ENDPOINT``
and the rest, read by the SDK itself. An app that sets up its own tracer provider needs none of
this: durably's spans join it. The spans themselves are made in ``engine/tracing.py``.

Logs: ``configure_logging(format)``: ``text`` (the default) prints a record's structured fields
after the message as ``key=value``; ``json`` prints one JSON object per line. Either way a line
written while a run executes carries ``run_id``, ``function_id``, ``tenant``, ``attempt`` and,
inside a step, ``step_id``, whoever wrote it (durably or the function's own code).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import orjson

from .engine import tracing
from .errors import ConfigError

carrier = tracing.carrier  # the current trace context as W3C headers, for an event being sent

EXPORTERS = ("console", "otlp")
FIELDS = ("run_id", "function_id", "step_id", "attempt", "tenant")
# What every LogRecord has: anything else on a record came from ``extra=`` (a structured field).
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}

_configured = False


def configure_tracing(environ: Any = None) -> bool:
    """Set up the OpenTelemetry SDK from ``OTEL_*`` when ``OTEL_TRACES_EXPORTER`` asks for it.

    Returns whether durably configured a tracer provider. ``none`` or unset: nothing is
    imported. An exporter durably does not know, or a missing SDK, is a ConfigError.
    """
    global _configured
    env = os.environ if environ is None else environ
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names or names == ["none"] or _configured:
        return _configured
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise ConfigError(f"OTEL_TRACES_EXPORTER={env['OTEL_TRACES_EXPORTER']!r}: durably knows "
                          f"{', '.join(EXPORTERS)} (or none)")
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise ConfigError("OTEL_TRACES_EXPORTER is set but the OpenTelemetry SDK is not installed: "
                          "pip install 'durably[otel]'") from None
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or "durably"})
    provider = TracerProvider(resource=resource)
    for name in names:
        if name == "console":
            exporter: Any = ConsoleSpanExporter()
        else:
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            except ImportError:
                raise ConfigError("OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: pip install 'durably[otel]'") from None
            exporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # the SDK flushes its processors at exit
    _configured = True
    return True


class _Fields(logging.Filter):
    """Adds the executing run's fields to each record that does not name them itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in tracing.log_fields().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` (the run's fields first)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _extra(record)
        if not fields:
            return line
        ordered = [k for k in FIELDS if k in fields] + sorted(k for k in fields if k not in FIELDS)
        pairs = " ".join(f"{k}={_text(fields[k])}" for k in ordered)
        head, sep, tail = line.partition("\n")  # a traceback stays below the fields
        return f"{head} {pairs}{sep}{tail}"


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return text if text and not any(c in text for c in ' "=\n') else orjson.dumps(text).decode()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the fields, and any exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        out.update(_extra(record))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure_logging(fmt: str = "text", level: int = logging.INFO, stream: Any = None) -> None:
    """Log to ``stream`` (stderr) in ``fmt`` (``text`` or ``json``) at ``level``."""
    if fmt not in ("text", "json"):
        raise ConfigError(f"DURABLY_LOG_FORMAT={fmt!r}: use text or json")
    root = logging.getLogger()
    foreign = [h for h in root.handlers if not getattr(h, "_durably", False)]
    if foreign:  # the app set up its own logging: keep it, and give its lines the run's fields
        for h in foreign:
            if not any(isinstance(f, _Fields) for f in h.filters):
                h.addFilter(_Fields())
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_Fields())
    for old in [h for h in root.handlers if getattr(h, "_durably", False)]:
        root.removeHandler(old)
    handler._durably = True  # type: ignore[attr-defined]  # a marker, found by getattr above
    root.addHandler(handler)
    root.setLevel(level)
