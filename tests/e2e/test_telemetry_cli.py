"""A real worker with DURABLY_LOG_FORMAT=json and OTEL_TRACES_EXPORTER=console: every log line is
one JSON object carrying the run's fields, and the run's spans are exported."""

from __future__ import annotations

import json
from pathlib import Path

import durably
from tests.helpers import cli_env, make_app, wait_for, wait_run

APP = str(Path(__file__).resolve().parents[1] / "apps" / "crash_app.py")


def test_json_logs_and_console_spans_from_a_real_worker(store_url, tmp_path, procs):
    env = cli_env(store_url, DURABLY_LOG_FORMAT="json", DURABLY_TEST_SIDE_DB=str(tmp_path / "side.db"),
                  OTEL_TRACES_EXPORTER="console", OTEL_BSP_SCHEDULE_DELAY="50", OTEL_SERVICE_NAME="shop-worker")
    worker = procs.start(["worker", APP], env)
    app = make_app(store_url, "telemetry-cli")
    try:
        wait_for(lambda: app.store.get_function("three-steps").result() or worker.poll() is not None,
                 timeout=30, what="the worker to register")
        rid = app.send(durably.Event("crash.go")).runs[0]
        assert wait_run(app, rid, timeout=30)["status"] == "completed"
        wait_for(lambda: '"durably.run three-steps"' in procs.log(worker), timeout=30, what="the run's span")
    finally:
        app.close()
    assert procs.stop(worker) == 0, procs.log(worker)
    text = procs.log(worker)
    # stdout and stderr share the log file: the JSON log lines start with {"ts":, the console
    # exporter prints indented JSON documents of spans.
    lines = [json.loads(line) for line in text.splitlines() if line.startswith('{"ts":')]
    assert lines and all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line["message"].endswith("started: 1 function(s), concurrency 8") for line in lines), text
    for name in ("durably.run three-steps", "durably.step one", "durably.step two", "durably.step three"):
        assert f'"name": "{name}"' in text, text
    assert f'"durably.run_id": "{rid}"' in text and '"service.name": "shop-worker"' in text
