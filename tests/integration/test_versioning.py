"""ctx.patched: a function's steps change over three deploys while runs of each version are
suspended; every run finishes on the newest code, none stranded, no committed step run again.
A change without ctx.patched fails the old run with terminal reason ``nondeterminism``."""

from __future__ import annotations

from collections import Counter

import durably
from durably.testing import TestEnv
from tests.helpers import make_app, running_worker, wait_run
from tests.integration.support import wait_step


def deploy(store_url: str, version: int, ran: Counter) -> durably.App:
    app = make_app(store_url, "shop", env="test")

    def step(name: str):
        def body(run_id: str) -> str:
            ran[run_id, name] += 1
            return name
        return body

    @app.function(id="deploy", trigger=durably.on_event("deploy.go"))
    async def fn(ctx):
        path = [await ctx.step.run("a", step("a"), ctx.run_id)]
        if version >= 2 and ctx.patched("add-c"):
            path.append(await ctx.step.run("c", step("c"), ctx.run_id))
        await ctx.step.wait_for_event("go", "deploy.resume", match="data.key", timeout="1h")
        if version >= 3 and ctx.patched("add-d"):
            path.append(await ctx.step.run("d", step("d"), ctx.run_id))
        path.append(await ctx.step.run("b", step("b"), ctx.run_id))
        return path

    return app


def start(app: durably.App, key: str) -> str:
    with running_worker(app):
        rid = app.send(durably.Event("deploy.go", {"key": key})).runs[0]
        wait_step(app, rid, "go", "waiting")
    return rid


def test_three_deploys_under_running_runs(store_url):
    ran: Counter = Counter()
    v1 = deploy(store_url, 1, ran)
    r1 = start(v1, "k1")
    v1.close()
    v2 = deploy(store_url, 2, ran)
    r2 = start(v2, "k2")
    v2.close()
    v3 = deploy(store_url, 3, ran)
    with running_worker(v3):
        r3 = v3.send(durably.Event("deploy.go", {"key": "k3"})).runs[0]
        wait_step(v3, r3, "go", "waiting")
        v3.send([durably.Event("deploy.resume", {"key": k}) for k in ("k1", "k2", "k3")])
        out = {rid: wait_run(v3, rid) for rid in (r1, r2, r3)}
    v3.close()
    assert {rid: (r["status"], r["output"]) for rid, r in out.items()} == {
        r1: ("completed", ["a", "d", "b"]),  # v1 had passed add-c without it: no c; reached add-d on v3
        r2: ("completed", ["a", "c", "d", "b"]),  # took add-c on v2 (its marker replays True on v3)
        r3: ("completed", ["a", "c", "d", "b"]),
    }
    assert all(n == 1 for n in ran.values()), ran  # no committed step ran again
    kinds = {s["step_id"]: s["kind"] for s in out[r2]["steps"]}
    assert kinds["patched:add-c"] == "patch" and kinds["patched:add-d"] == "patch"
    assert "patched:add-c" not in {s["step_id"] for s in out[r1]["steps"]}


def resume_on_changed_code(store_url: str, body) -> tuple[dict, str, Counter]:
    """A v1 run suspended at its wait, resumed on a deploy whose function is ``body(ctx, ran)``."""
    ran: Counter = Counter()
    v1 = deploy(store_url, 1, ran)
    r1 = start(v1, "k1")
    v1.close()
    app = make_app(store_url, "shop", env="test")

    @app.function(id="deploy", trigger=durably.on_event("deploy.go"))
    async def changed(ctx):
        return await body(ctx, ran)

    with running_worker(app):
        app.send(durably.Event("deploy.resume", {"key": "k1"}))
        run = wait_run(app, r1)
    app.close()
    return run, r1, ran


def test_an_unguarded_change_fails_the_old_run_as_nondeterminism(store_url):
    async def inserted_before_the_wait(ctx, ran):  # a step inserted without ctx.patched
        await ctx.step.run("a", lambda: "a")
        await ctx.step.run("inserted", lambda: ran.update([(ctx.run_id, "inserted")]))
        await ctx.step.wait_for_event("go", "deploy.resume", match="data.key", timeout="1h")

    run, r1, ran = resume_on_changed_code(store_url, inserted_before_the_wait)
    assert run["status"] == "failed" and run["terminal_reason"] == "nondeterminism"
    assert "'inserted'" in run["error"]["message"] and "'go'" in run["error"]["message"]
    assert ran[r1, "inserted"] == 0 and ran[r1, "a"] == 1


def test_a_step_of_another_kind_is_nondeterminism(store_url):
    async def sleeps_where_a_step_ran(ctx, ran):
        await ctx.step.sleep("a", "1s")  # "a" was a step.run

    run, _, _ = resume_on_changed_code(store_url, sleeps_where_a_step_ran)
    assert run["terminal_reason"] == "nondeterminism" and "'a'" in run["error"]["message"]


def test_patched_in_a_plain_def_function_and_a_bad_change_id():
    app = durably.App("patched-sync")

    @app.function(id="sync", trigger=durably.on_event("s"))
    def sync(ctx):
        first = ctx.patched("x")
        ctx.step.sleep("nap", "1h")  # replayed after the sleep: the marker answers True again
        return [first, ctx.patched("x"), ctx.step.run("after", lambda: 1)]

    @app.function(id="bad", trigger=durably.on_event("b"))
    async def bad(ctx):
        return ctx.patched("")

    with TestEnv(app) as env:
        run = env.run("sync")
        assert run.status == "completed" and run.output == [True, True, 1]
        assert run.steps["patched:x"]["status"] == "completed"
        failed = env.run("bad")
    assert failed.status == "failed" and "change id" in failed.error["message"]
