"""``durably send`` of a typed event: validated against the schema registered in the store (the
CLI loads no user code), one line and exit 1 when the data does not fit, nothing stored."""

from __future__ import annotations

import json

import pydantic

import durably
from tests.helpers import cli_env, make_app, run_cli


class Recompute(pydantic.BaseModel):
    clientId: str
    priority: int = 0


def test_durably_send_refuses_data_that_does_not_fit_in_one_line(store_url):
    app = make_app(store_url, "typedcli")

    @app.function(id="inbox-counts-recompute", trigger=durably.on_event("inbox.counts.recompute", schema=Recompute))
    async def recompute(ctx):
        return None

    app.register()
    env = cli_env(store_url)
    try:
        bad = run_cli(["send", "inbox.counts.recompute", "--data", '{"priority": 1}'], env)
        assert bad.returncode == 1, bad
        assert bad.stdout == ""
        lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
        assert lines == ["error: inbox.counts.recompute: data.clientId: Field required"], bad.stderr
        assert app.store.list_events(limit=10).result() == []

        ok = run_cli(["send", "inbox.counts.recompute", "--data", '{"clientId": "c1"}'], env)
        assert ok.returncode == 0, ok.stderr
        assert len(json.loads(ok.stdout)["runs"]) == 1

        listed = run_cli(["functions", "--json"], env)
        assert listed.returncode == 0, listed.stderr
        (fn,) = json.loads(listed.stdout)
        assert fn["event_schema"]["required"] == ["clientId"]
        table = run_cli(["functions"], env)
        assert "(typed)" in table.stdout, table.stdout  # beside the event name (the table may wrap it)
    finally:
        app.close()
