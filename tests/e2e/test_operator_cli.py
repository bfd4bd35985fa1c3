"""`durably functions pause/resume` and `durably audit` in a subprocess, on both stores: the
bare `durably functions [--json]` still lists (now with `paused`), a paused function's new
triggers are skipped with --skip, each action is in `durably audit --json` with role cli."""

from __future__ import annotations

import json

import durably
from tests.helpers import cli_env, make_app, run_cli


def test_pause_resume_and_audit_from_the_cli(store_url):
    app = make_app(store_url, "opscli")

    @app.function(id="job", trigger=durably.on_event("job.go"))
    async def job(ctx):
        return 1

    app.register()
    env = cli_env(store_url)
    try:
        listed = run_cli(["functions", "--json"], env)
        assert listed.returncode == 0, listed.stderr
        (f,) = json.loads(listed.stdout)
        assert f["id"] == "job" and f["paused"] is False and f["paused_mode"] is None

        paused = run_cli(["functions", "pause", "job", "--skip"], env)
        assert paused.returncode == 0, paused.stderr
        assert "paused job: new triggers are skipped" in paused.stdout
        (f,) = json.loads(run_cli(["functions", "--json"], env).stdout)
        assert f["paused"] is True and f["paused_mode"] == "skip"
        table = run_cli(["functions"], env)
        assert table.returncode == 0 and "paused (skip)" in table.stdout, table.stdout
        sent = run_cli(["send", "job.go"], env)
        assert sent.returncode == 0 and "no run of job: paused" in sent.stderr, sent.stderr
        assert app.store.list_runs().result() == []

        resumed = run_cli(["functions", "resume", "job"], env)
        assert resumed.returncode == 0 and "resumed job" in resumed.stdout, resumed.stderr
        again = run_cli(["functions", "resume", "job"], env)
        assert again.returncode == 0 and "job was not paused" in again.stdout
        unknown = run_cli(["functions", "pause", "nope"], env)
        assert unknown.returncode == 1 and "no function 'nope'" in unknown.stderr
        assert len([ln for ln in unknown.stderr.splitlines() if ln.strip()]) == 1
        pruned = run_cli(["prune", "--older-than", "30d"], env)
        assert pruned.returncode == 0, pruned.stderr

        audit = run_cli(["audit", "--json"], env)
        assert audit.returncode == 0, audit.stderr
        entries = json.loads(audit.stdout)
        assert [(e["role"], e["action"], e["target"]) for e in entries] == [
            ("cli", "prune", None), ("cli", "resume", "job"), ("cli", "pause", "job")]
        assert entries[2]["params"] == {"mode": "skip"} and entries[2]["client"] is None
        assert entries[0]["params"] == {"older_than": "30d", "batch_size": 1000}
        assert all(e["env"] == "test" for e in entries)
        one = json.loads(run_cli(["audit", "--json", "--limit", "1"], env).stdout)
        assert [e["action"] for e in one] == ["prune"]
        text = run_cli(["audit"], env)
        assert text.returncode == 0 and "pause" in text.stdout and "cli" in text.stdout
        bad = run_cli(["audit", "--limit", "0"], env)
        assert bad.returncode != 0
    finally:
        app.close()
