"""Done-when 7: from a fresh working directory, ``durably dev examples/hello.py`` runs a worker
and the scheduler on ``.durably/durably.db``; ``durably send`` from another process triggers a
run that ``durably runs`` shows completed. Plus the CLI's error handling."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

from tests.helpers import durably_cmd, wait_for

ROOT = Path(__file__).resolve().parents[2]
HELLO = str(ROOT / "examples" / "hello.py")


def _env() -> dict[str, str]:
    """The user's shell: no DURABLY_* settings, so every default applies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLY_") and k != "CRON_SECRET"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(durably_cmd(*args), env=_env(), cwd=cwd, capture_output=True, text=True, timeout=60)


def _one_line_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode != 0, p
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("error: "), p.stderr
    return lines[0]


def test_dev_send_runs_from_a_fresh_directory(tmp_path, procs):
    work = tmp_path / "project"
    work.mkdir()
    dev = procs.start(["dev", HELLO, "--port", str(_free_port())], _env(), cwd=str(work))
    wait_for(lambda: "dashboard at" in procs.log(dev) or dev.poll() is not None, timeout=30, what="durably dev")
    assert dev.poll() is None, procs.log(dev)
    assert (work / ".durably" / "durably.db").is_file()

    sent = cli(work, "send", "hello", "--data", '{"name": "Ada"}')
    assert sent.returncode == 0, sent.stderr
    result = json.loads(sent.stdout)
    assert len(result["ids"]) == 1 and len(result["runs"]) == 1
    rid = result["runs"][0]

    def completed():
        p = cli(work, "runs", "--json")
        assert p.returncode == 0, p.stderr
        runs = {r["id"]: r for r in json.loads(p.stdout)}
        return runs[rid] if runs.get(rid, {}).get("status") == "completed" else None

    run = wait_for(completed, timeout=40, interval=0.2, what="durably runs to show the run completed")
    for key in ("id", "function_id", "status", "tenant", "event_id", "created_at", "started_at", "finished_at",
                "attempts", "terminal_reason"):
        assert key in run
    assert run["function_id"] == "say-hello" and run["event_id"] == result["ids"][0]
    assert run["tenant"] == "global" and run["attempts"] == 1 and run["terminal_reason"] == "completed"

    shown = cli(work, "runs", "show", rid, "--json")
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert detail["output"] == {"greeting": "Hello, Ada!", "shout": "HELLO, ADA!"}
    assert detail["error"] is None
    assert [(s["id"], s["status"], s["attempts"]) for s in detail["steps"]] == [
        ("greet", "completed", 1), ("pause", "completed", 1), ("shout", "completed", 1)]
    assert all("errors" in s for s in detail["steps"])

    table = cli(work, "runs")
    assert table.returncode == 0 and rid in table.stdout and "completed" in table.stdout

    assert procs.stop(dev) == 0, procs.log(dev)

    # With nothing running, a sent event waits in the queue; cancel it from the CLI.
    queued = json.loads(cli(work, "send", "hello").stdout)["runs"][0]
    cancelled = cli(work, "runs", "cancel", queued)
    assert cancelled.returncode == 0 and queued in cancelled.stdout, cancelled.stderr
    status = json.loads(cli(work, "runs", "show", queued, "--json").stdout)["status"]
    assert status == "cancelled"
    again = _one_line_error(cli(work, "runs", "cancel", queued))
    assert "already cancelled" in again
    assert "no run" in _one_line_error(cli(work, "runs", "cancel", "no-such-run"))
    assert "no run" in _one_line_error(cli(work, "runs", "show", "no-such-run"))


def test_cli_errors_are_one_line(tmp_path):
    cases = {
        "module": (["worker", "no.such:app"], {}),
        "file": (["worker", "nothere.py"], {}),
        "json": (["send", "hello", "--data", "{not json"], {}),
        "object": (["send", "hello", "--data", "[1, 2]"], {}),
        "status": (["runs", "--status", "exploded"], {}),
        "url": (["runs"], {"DURABLY_DATABASE_URL": "mysql://x"}),
        "usage": (["send", "hello", '{"a": 1}'], {}),
        "command": (["nosuch"], {}),
    }
    # One process each, all at once: the CLI's start-up time is the cost of this test.
    started = {k: subprocess.Popen(durably_cmd(*args), env={**_env(), **extra}, cwd=tmp_path, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for k, (args, extra) in cases.items()}
    done = {}
    for k, p in started.items():
        out, err = p.communicate(timeout=60)
        done[k] = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    missing = _one_line_error(done["module"])
    assert "no.such:app" in missing and "no module named" in missing
    assert "no such file" in _one_line_error(done["file"])
    assert "--data is not valid JSON" in _one_line_error(done["json"])
    assert "JSON object" in _one_line_error(done["object"])
    assert "unknown status" in _one_line_error(done["status"])
    assert "DURABLY_DATABASE_URL" in _one_line_error(done["url"])
    for usage in ("usage", "command"):  # usage errors: one line too, and exit code 2
        assert done[usage].returncode == 2 and "Traceback" not in done[usage].stderr, done[usage].stderr
    assert "unexpected extra argument" in done["usage"].stderr.lower()
    assert "no such command" in done["command"].stderr.lower()
    # Nothing was sent, and nothing was created: no command made a store.
    assert not (tmp_path / ".durably").exists()


def test_commands_that_read_or_send_never_create_a_store(tmp_path):
    """DESIGN §1: on a SQLite path that does not exist, a command that only reads or sends
    exits 1 with one line naming the path (and what creates it), and creates nothing."""
    missing_dir = tmp_path / "nonexistent" / "dir"
    cases = {
        "runs": ["runs"],
        "runs-json": ["runs", "--json"],
        "show": ["runs", "show", "r1"],
        "cancel": ["runs", "cancel", "r1"],
        "send": ["send", "hello", "--data", '{"name": "Ada"}'],
        "functions": ["functions"],
        "status": ["status", "t1", "fn"],
        "health": ["health"],
        "replay": ["replay", "--function", "fn"],
        "prune": ["prune", "--older-than", "30d"],
        "pause": ["functions", "pause", "fn"],
        "resume": ["functions", "resume", "fn"],
        "audit": ["audit", "--json"],
        "url": ["--database-url", f"sqlite:///{missing_dir}/x.db", "runs"],
    }
    started = {k: subprocess.Popen(durably_cmd(*args), env=_env(), cwd=tmp_path, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for k, args in cases.items()}
    for k, p in started.items():
        out, err = p.communicate(timeout=60)
        line = _one_line_error(subprocess.CompletedProcess(p.args, p.returncode, out, err))
        assert p.returncode == 1, (k, err)
        where = f"{missing_dir}/x.db" if k == "url" else str(tmp_path / ".durably" / "durably.db")
        assert f"no store at {where}" in line and "durably dev" in line and "durably migrate" in line, (k, line)
        assert out == "", (k, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a command created something"

    # Once `durably migrate` has made the store, the same commands read it.
    assert cli(tmp_path, "migrate").returncode == 0
    assert json.loads(cli(tmp_path, "runs", "--json").stdout) == []


def test_a_reading_command_does_not_create_a_postgres_schema(tmp_path):
    import psycopg

    from tests.conftest import PG_DSN as dsn
    from tests.pg import new_schema_name, schema_url

    schema = new_schema_name()
    with psycopg.connect(dsn, autocommit=True) as conn:
        p = cli(tmp_path, "--database-url", schema_url(dsn, schema), "runs")
        line = _one_line_error(p)
        assert "no store at" in line and f"schema {schema!r}" in line, line
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [schema]).fetchone()[0] == 0


def test_worker_loads_an_app_by_module_path(tmp_path, procs):
    """``durably worker module:attribute`` from the project directory."""
    (tmp_path / "jobs.py").write_text(
        "import durably\n"
        "app = durably.App('jobs')\n"
        "@app.function(id='double', trigger=durably.on_event('num'))\n"
        "def double(ctx):\n"
        "    return ctx.step.run('x2', lambda: ctx.event.data['n'] * 2)\n"
    )
    w = procs.start(["worker", "jobs:app"], _env(), cwd=str(tmp_path))
    wait_for(lambda: (tmp_path / ".durably" / "durably.db").exists() or w.poll() is not None, timeout=30,
             what="the worker to open its store")
    functions = wait_for(lambda: json.loads(cli(tmp_path, "functions", "--json").stdout) or w.poll() is not None,
                         timeout=30, what="the registry")
    assert w.poll() is None, procs.log(w)
    assert [f["id"] for f in functions] == ["double"]
    rid = json.loads(cli(tmp_path, "send", "num", "--data", '{"n": 21}').stdout)["runs"][0]

    def output():
        p = cli(tmp_path, "runs", "show", rid, "--json")
        d = json.loads(p.stdout)
        return d if d["status"] == "completed" else None

    assert wait_for(output, timeout=30, interval=0.2, what="the run")["output"] == 42
    assert procs.stop(w) == 0, procs.log(w)


def test_the_worker_runs_on_uvloop_by_default_and_on_asyncio_when_told(tmp_path, procs):
    (tmp_path / "loops.py").write_text(
        "import asyncio, durably\n"
        "app = durably.App('loops')\n"
        "@app.function(id='which', trigger=durably.on_event('which'))\n"
        "async def which(ctx):\n"
        "    return type(asyncio.get_running_loop()).__module__\n"
    )
    seen = {}
    for choice in ("auto", "asyncio"):
        w = procs.start(["worker", "loops:app"], {**_env(), "DURABLY_EVENT_LOOP": choice}, cwd=str(tmp_path))
        wait_for(lambda: (tmp_path / ".durably" / "durably.db").exists() and json.loads(
            cli(tmp_path, "functions", "--json").stdout) or w.poll() is not None, timeout=30, what="the registry")
        rid = json.loads(cli(tmp_path, "send", "which").stdout)["runs"][0]

        def output():
            d = json.loads(cli(tmp_path, "runs", "show", rid, "--json").stdout)
            return d if d["status"] == "completed" or w.poll() is not None else None

        run = wait_for(output, timeout=30, interval=0.2, what=f"the run on the {choice} loop")
        assert w.poll() is None, procs.log(w)
        seen[choice] = run["output"]
        assert procs.stop(w) == 0, procs.log(w)
    assert seen["auto"].startswith("uvloop") and seen["asyncio"].startswith("asyncio"), seen


def test_functions_show_flow_control_from_the_typed_config(tmp_path):
    """`durably functions` and the dashboard read each function's throttle, rate limit and
    concurrency keys from the registry's typed FunctionConfig, with no app code loaded."""
    import durably
    from durably.server.api import create_app
    from durably.config import Settings
    from starlette.testclient import TestClient

    url = f"sqlite:///{tmp_path}/.durably/durably.db"
    app = durably.App("flow", database_url=url)

    @app.function(id="recompute", trigger=durably.on_event("inbox.dirty"),
                  concurrency=[durably.Concurrency(1, key="event.data.client")],
                  throttle=durably.Throttle(10, "1m", key="event.data.client"), rate_limit=durably.RateLimit(100, "1h"))
    def recompute(ctx):
        return None

    app.register()
    app.close()
    expected = ["concurrency 1 per event.data.client", "throttle 10/1m per event.data.client", "rate limit 100/1h"]
    (f,) = json.loads(cli(tmp_path, "functions", "--json").stdout)
    assert f["id"] == "recompute" and f["flow_control"] == expected
    table = cli(tmp_path, "functions")
    assert table.returncode == 0 and "throttle 10/1m per" in table.stdout and "rate limit 100/1h" in table.stdout
    asgi = create_app(Settings.load({"DURABLY_DATABASE_URL": url, "DURABLY_ENV": "dev"}))
    with TestClient(asgi) as c:
        page = c.get("/")  # the dashboard's functions page
    assert page.status_code == 200
    for line in expected:
        assert line in page.text


def test_an_app_that_sends_when_imported_gets_a_clear_error(tmp_path):
    (tmp_path / "eager.py").write_text(
        "import durably\n"
        "app = durably.App('eager')\n"
        "@app.function(id='f', trigger=durably.on_event('e'))\n"
        "def f(ctx):\n"
        "    return 1\n"
        "app.send(durably.Event('e'))\n"
    )
    line = _one_line_error(cli(tmp_path, "worker", "eager:app"))
    assert "importing it already opened app 'eager'" in line and "module-level app.send()" in line, line
    assert "configure()" not in line, line


def test_dev_on_a_port_it_cannot_listen_on_fails_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runs = {"taken": subprocess.Popen(durably_cmd("dev", HELLO, "--port", str(port)), env=_env(), cwd=tmp_path,
                                          text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE),
                "range": subprocess.Popen(durably_cmd("dev", HELLO, "--port", "99999"), env=_env(), cwd=tmp_path,
                                          text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)}
        done = {}
        for k, p in runs.items():
            out, err = p.communicate(timeout=60)
            done[k] = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    taken_line = _one_line_error(done["taken"])
    assert done["taken"].returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in taken_line, taken_line
    assert "in use" in taken_line, taken_line
    range_line = _one_line_error(done["range"])
    assert done["range"].returncode == 1 and "99999" in range_line and "1 to 65535" in range_line, range_line
    for p in done.values():
        assert "dashboard at" not in p.stdout + p.stderr
    assert not (tmp_path / ".durably").exists(), "the store was opened before the port was checked"


def test_send_says_why_no_run_started(tmp_path):
    """DESIGN §1: for each function the event did not start, `durably send` says why."""
    import durably

    app = durably.App("why", database_url=f"sqlite:///{tmp_path}/.durably/durably.db")

    @app.function(id="picky", trigger=durably.on_event("go", if_="event.data.k == 'b'"))
    def picky(ctx):
        return None

    @app.function(id="limited", trigger=durably.on_event("go"), rate_limit=durably.RateLimit(1, "1h"))
    def limited(ctx):
        return None

    @app.function(id="idem", trigger=durably.on_event("go"), idempotency="event.data.k")
    def idem(ctx):
        return None

    app.register()
    app.close()

    nobody = cli(tmp_path, "send", "nothing.here")
    assert nobody.returncode == 0, nobody.stderr
    assert json.loads(nobody.stdout)["runs"] == []
    assert nobody.stderr.strip() == "no run started: no function is registered for event 'nothing.here' in env 'dev'"

    first = cli(tmp_path, "send", "go", "--data", '{"k": "a"}', "--id", "e1")
    assert first.returncode == 0 and len(json.loads(first.stdout)["runs"]) == 2, first
    assert first.stderr.strip() == "no run of picky: filter false: event.data.k == 'b'"

    second = cli(tmp_path, "send", "go", "--data", '{"k": "a"}')
    body = json.loads(second.stdout)
    assert second.returncode == 0 and body["runs"] == [], second
    reasons = {s["function_id"]: s["reason"] for s in body["skipped"]}
    assert reasons["picky"].startswith("filter false") and reasons["limited"] == "rate limited"
    assert reasons["idem"].startswith("idempotent duplicate"), reasons
    lines = sorted(second.stderr.strip().splitlines())
    assert lines[0] == "no run of idem: idempotent duplicate: duplicate idempotency key 'a'", lines
    assert lines[1] == "no run of limited: rate limited" and lines[2].startswith("no run of picky: filter false")

    again = cli(tmp_path, "send", "go", "--id", "e1")
    assert json.loads(again.stdout)["duplicates"] == ["e1"]
    assert again.stderr.strip() == "no run started: event 'e1' was sent before (same id within 24 h)"


def test_store_options_after_the_subcommand_and_runs_show_without_none(tmp_path):
    import durably

    url = f"sqlite:///{tmp_path}/elsewhere.db"
    app = durably.App("late", database_url=url)

    @app.function(id="f", trigger=durably.on_event("e"))
    def f(ctx):
        return None

    rid = app.send(durably.Event("e")).runs[0]  # queued: never started
    app.close()
    listed = cli(tmp_path, "runs", "--database-url", url, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [rid]
    shown = cli(tmp_path, "runs", "show", rid, "--database-url", url)
    assert shown.returncode == 0, shown.stderr
    assert "None" not in shown.stdout and "started -  finished -" in shown.stdout, shown.stdout
    sent = cli(tmp_path, "send", "e", "--database-url", url)
    assert sent.returncode == 0 and len(json.loads(sent.stdout)["runs"]) == 1, sent.stderr
    # Given both before and after the subcommand, the one after wins.
    other = cli(tmp_path, "--database-url", f"sqlite:///{tmp_path}/nothere.db", "functions", "--database-url", url)
    assert other.returncode == 0 and "f" in other.stdout, other.stderr


def test_server_prints_its_dashboard_url(tmp_path, procs):
    url = f"sqlite:///{tmp_path}/s.db"
    assert cli(tmp_path, "--database-url", url, "migrate").returncode == 0
    port = _free_port()
    server = procs.start(["--database-url", url, "server", "--port", str(port)], _env(), cwd=str(tmp_path))
    wait_for(lambda: "dashboard at" in procs.log(server) or server.poll() is not None, timeout=30,
             what="durably server to start")
    assert f"durably server: dashboard at http://127.0.0.1:{port}/" in procs.log(server), procs.log(server)
    assert procs.stop(server) == 0, procs.log(server)


def test_runs_show_prints_the_users_stack_without_durablys_frames(tmp_path):
    import durably
    from tests.helpers import running_worker, wait_run

    url = f"sqlite:///{tmp_path}/.durably/durably.db"
    app = durably.App("stacks", database_url=url)

    def parse(raw):
        try:
            return int(raw)
        except ValueError as exc:
            raise RuntimeError("bad quantity") from exc

    @app.function(id="qty", trigger=durably.on_event("qty"), retries=0)
    async def qty(ctx):
        return await ctx.step.run("parse", parse, "x")

    with running_worker(app):
        rid = app.send(durably.Event("qty")).runs[0]
        assert wait_run(app, rid)["status"] == "failed"
    app.close()
    shown = cli(tmp_path, "runs", "show", rid)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "ValueError: invalid literal" in text and "RuntimeError: bad quantity" in text
    assert "The above exception was the direct cause" in text and "in parse" in text
    assert "durably/engine" not in text and "durably/steps" not in text
