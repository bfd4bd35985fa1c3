"""Concurrency keys hold across worker processes: 3 workers, 50 runs over 5 keys, limit 1."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import durably
from tests.helpers import cli_env, runs_of, wait_for

APP = os.path.join(os.path.dirname(__file__), "..", "apps", "flow_app.py")


def test_three_workers_never_overlap_a_key(store_url, tmp_path):
    log_db = str(tmp_path / "spans.db")
    env = cli_env(store_url, FLOW_LOG_DB=log_db, DURABLY_LEASE_SECONDS="5")
    if "#schema=" in store_url:  # PostgreSQL test schemas travel in the URL fragment
        env["DURABLY_SCHEMA"] = store_url.split("#schema=")[1]
    from tests.apps import flow_app  # noqa: F401 - registers the function for the sender
    sender = flow_app.app
    sender.configure(database_url=store_url, env="test")
    try:
        res = sender.send([durably.Event("per-key", {"key": f"k{i % 5}"}) for i in range(50)])
        assert len(res.runs) == 50
        workers = [subprocess.Popen([sys.executable, "-m", "durably", "worker", APP, "--concurrency", "4"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(3)]
        try:
            wait_for(lambda: sum(r["status"] == "completed" for r in runs_of(sender, function_id="per-key")) == 50,
                     90, interval=0.2, what="50 runs completed by 3 workers")
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                w.wait(30)
    finally:
        sender.close()
    conn = sqlite3.connect(log_db)
    rows = conn.execute("SELECT run_id, key, phase, at, pid FROM spans").fetchall()
    spans: dict[str, dict] = {}
    for run_id, key, phase, at, pid in rows:
        spans.setdefault(run_id, {"key": key, "pids": set()})[phase] = at
        spans[run_id]["pids"].add(pid)
    assert len(spans) == 50
    assert len({p for s in spans.values() for p in s["pids"]}) >= 2, "work should spread over several processes"
    by_key: dict[str, list] = {}
    for s in spans.values():
        by_key.setdefault(s["key"], []).append((s["start"], s["end"]))
    for key, intervals in by_key.items():
        intervals.sort()
        for (s1, e1), (s2, e2) in zip(intervals, intervals[1:]):
            assert s2 >= e1, f"two runs of {key} overlapped: {(s1, e1)} and {(s2, e2)}"
