"""`durably replay RUN_ID --from-step STEP [--data JSON]` and `durably backfill ID --from --to`,
through the real CLI, on both stores."""

from __future__ import annotations

import json

import durably
from tests.helpers import cli_env, get_run, make_app, run_cli, running_worker, runs_of, wait_for, wait_run

EVERY_SECOND = "* * * * * *"


def _app(url: str, calls: dict[str, int]) -> durably.App:
    app = make_app(url, "rerun-cli", env="test")

    def count(name: str, value):
        calls[name] = calls.get(name, 0) + 1
        return value

    @app.function(id="three", trigger=durably.on_event("three.go"))
    async def three(ctx):
        a = await ctx.step.run("load", count, "load", ctx.event.data["n"])
        b = await ctx.step.run("double", count, "double", ctx.event.data["n"] * 2)
        return await ctx.step.run("report", count, "report", f"{a}/{b}")

    @app.function(id="ticker", trigger=durably.on_cron(EVERY_SECOND))
    async def ticker(ctx):
        return ctx.event.data["tick"]

    return app


def test_replay_from_a_step(store_url):
    calls: dict[str, int] = {}
    app = _app(store_url, calls)
    env = cli_env(store_url)
    with running_worker(app, scheduler=False):
        (rid,) = app.send(durably.Event("three.go", {"n": 1})).runs
        assert wait_run(app, rid)["output"] == "1/2"
        res = run_cli(["replay", rid, "--from-step", "double", "--data", '{"n": 7}', "--json"], env)
        assert res.returncode == 0, res.stderr
        body = json.loads(res.stdout)
        assert body["replay_of"] == rid and body["memo"] == ["load"]
        assert wait_run(app, body["id"])["output"] == "1/14"  # load from the memo, the rest on the new data
        text = run_cli(["replay", "--run", rid, "--from-step", "report"], env)
        assert text.returncode == 0 and f"rerun of {rid} from step report:" in text.stdout, text.stderr
        assert "copied from the original: load, double" in text.stdout
        new_id = text.stdout.split("report: ", 1)[1].split()[0]
        assert wait_run(app, new_id)["output"] == "1/2"
        plain = run_cli(["replay", rid], env)
        assert plain.returncode == 0 and f"replayed {rid} as " in plain.stdout, plain.stderr
        wait_run(app, plain.stdout.split(" as ")[1].strip())
        edited = run_cli(["replay", rid, "--data", '{"n": 2}'], env)
        assert edited.returncode == 0 and "with the new event data" in edited.stdout, edited.stderr
        assert wait_run(app, edited.stdout.split(" as ")[1].split()[0])["output"] == "2/4"
    assert calls == {"load": 3, "double": 4, "report": 5}
    for args, message in ((["replay", rid, "--from-step", "nope"], "no step 'nope'"),
                          (["replay", rid, "--from-step", "load", "--data", "[1]"], "must be a JSON object"),
                          (["replay", rid, "--from-step", "load", "--data", "{"], "not valid JSON"),
                          (["replay", "01NOSUCHRUN", "--from-step", "load"], "no run")):
        bad = run_cli(args, env)
        assert bad.returncode == 1 and message in bad.stderr and bad.stderr.count("\n") == 1, (args, bad.stderr)
    usage = run_cli(["replay", rid, "--function", "three"], env)
    assert usage.returncode == 2 and "not both" in usage.stderr
    usage = run_cli(["replay", "--function", "three", "--from-step", "load"], env)
    assert usage.returncode == 2 and "go with a run" in usage.stderr
    assert len(runs_of(app, function_id="three")) == 5  # the bad calls created nothing
    app.close()


def test_backfill(store_url):
    app = _app(store_url, {})
    app.runtime.registry.register().result()
    env = cli_env(store_url)
    app.store.fire_cron("ticker", EVERY_SECOND, "UTC").result()
    fired = wait_for(lambda: app.store.fire_cron("ticker", EVERY_SECOND, "UTC").result(), timeout=10, interval=0.05,
                     what="a tick of the scheduler")
    tick = get_run(app, fired)["event"]["data"]["tick"]  # e.g. 2026-12-04T14:30:21Z
    dry = run_cli(["backfill", "ticker", "--from", "5s", "--to", tick, "--dry-run", "--json"], env)
    assert dry.returncode == 0, dry.stderr
    ticks = [t["tick"] for t in json.loads(dry.stdout)["ticks"]]
    assert ticks[-1] == tick and len(ticks) >= 4
    assert len(runs_of(app, function_id="ticker")) == 1  # a dry run writes nothing

    done = run_cli(["backfill", "ticker", "--from", ticks[0], "--to", tick, "--json"], env)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["fired"] == len(ticks) - 1 and body["skipped"] == 1  # the scheduler's tick: skipped
    assert [t["tick"] for t in body["ticks"] if not t["fired"]] == [tick]
    again = run_cli(["backfill", "ticker", "--from", ticks[0], "--to", tick], env)
    assert again.returncode == 0 and f"0 tick(s) fired, {len(ticks)} skipped" in again.stdout, again.stdout
    runs = runs_of(app, function_id="ticker")
    assert len(runs) == len(ticks) and len({r["event_id"] for r in runs}) == len(ticks)

    for args, message in ((["backfill", "three", "--from", "5s", "--to", "1s"], "no cron trigger"),
                          (["backfill", "ticker", "--from", "2h", "--to", "1s"], "more than 1000 ticks"),
                          (["backfill", "ticker", "--from", "soon", "--to", "1s"], "--from"),
                          (["backfill", "nope", "--from", "5s", "--to", "1s"], "no function 'nope'")):
        bad = run_cli(args, env)
        assert bad.returncode == 1 and message in bad.stderr and bad.stderr.count("\n") == 1, (args, bad.stderr)
    app.close()
