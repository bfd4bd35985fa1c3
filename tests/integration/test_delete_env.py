"""``Store.delete_env``: every row of one env goes, in one transaction; other envs keep theirs."""

from __future__ import annotations

import durably
from tests.helpers import make_app, running_worker, wait_run


def _app(url: str, env: str) -> durably.App:
    app = make_app(url, "envs", env=env)

    @app.function(id="two-steps", trigger=durably.on_event("envs.go"),
                  concurrency=[durably.Concurrency(limit=1, key="event.data.k")])
    def two_steps(ctx: durably.Context) -> int:
        ctx.step.run("a", lambda: 1)
        return ctx.step.run("b", lambda: 2)

    return app


def _counts(app: durably.App) -> tuple[int, int, int]:
    runs = app.store.list_runs(limit=1000).result()
    events = app.store.list_events(limit=1000).result()
    steps = sum(len(app.store.get_run(r["id"]).result()["steps"]) for r in runs)
    return len(runs), len(events), steps


def test_delete_env_removes_that_env_only(store_url):
    doomed, kept = _app(store_url, "chaos-doomed"), _app(store_url, "kept")
    try:
        for app in (doomed, kept):
            sent = app.send([durably.Event("envs.go", {"k": i % 2}) for i in range(4)])
            with running_worker(app):
                for rid in sent.runs:
                    assert wait_run(app, rid)["status"] == "completed"
            app.send(durably.Event("envs.go", {"k": 9}))  # one left queued (its key and slot rows too)
        before = _counts(kept)
        assert before == (5, 5, 8) and _counts(doomed) == (5, 5, 8)
        deleted = doomed.store.delete_env().result()
        assert deleted["runs"] == 5 and deleted["events"] == 5 and deleted["steps"] == 8
        assert deleted["functions"] == 1 and deleted["triggers"] == 1
        assert _counts(doomed) == (0, 0, 0)
        assert doomed.store.registry().result() == {}
        assert _counts(kept) == before
        assert set(kept.store.registry().result()) == {"two-steps"}
        assert doomed.store.delete_env().result()["runs"] == 0  # nothing left: deleting again is a no-op
    finally:
        doomed.close()
        kept.close()
