"""A 3-step function of an Inngest SDK app driven by `durably dev` over loopback.

    python bench/inngest_sdk.py [--sdk py|ts] [--no-checkpointing] [--latency 50] [--n 500] [--concurrency 8]

`--sdk py`: bench/inngest_py_app.py (FastAPI under uvicorn); `--sdk ts`: bench/inngest_ts_app.mjs
(express under node, with tests/apps/inngest_ts's node_modules: npm install there first), with the
v4 SDK's default checkpointing (the steps of a call reported to /v1/checkpoint as they finish), or
with `--no-checkpointing` the classic protocol (a call per step).

`latency`: sequential runs, one at a time; end to end = the run's finished_at - its event's ts
(the ledger's own times). `throughput`: --n events in one POST /e/, runs/s = n / (last
finished - first created). Prints figures; asserts nothing. Starts both processes itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.005)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=int, default=50)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--sdk", choices=("py", "ts"), default="py")
    ap.add_argument("--no-checkpointing", action="store_true", help="ts: the classic protocol, a call per step")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        dport, aport = _port(), _port()
        base, app_base = f"http://127.0.0.1:{dport}", f"http://127.0.0.1:{aport}"
        env = dict(os.environ, PYTHONPATH=ROOT, INNGEST_DEV="1", INNGEST_BASE_URL=base, PORT=str(aport),
                   CHECKPOINTING="0" if args.no_checkpointing else "1")
        label = args.sdk + (" classic" if args.sdk == "ts" and args.no_checkpointing else "")
        if args.sdk == "py":
            app = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.inngest_py_app:app", "--host",
                                    "127.0.0.1", "--port", str(aport), "--log-level", "warning"], env=env, cwd=ROOT)
        else:  # the app next to the test app's node_modules, so that node resolves its packages
            shutil.copy(os.path.join(ROOT, "bench", "inngest_ts_app.mjs"), os.path.join(d, "app.mjs"))
            os.symlink(os.path.join(ROOT, "tests", "apps", "inngest_ts", "node_modules"), os.path.join(d, "node_modules"))
            app = subprocess.Popen(["node", "app.mjs"], env=env, cwd=d)
        denv = dict(os.environ, PYTHONPATH=ROOT, DURABLY_DATABASE_URL=f"sqlite:///{d}/b.db", DURABLY_ENV="dev")
        dev = subprocess.Popen([sys.executable, "-m", "durably", "dev", "--port", str(dport), "-c",
                                str(args.concurrency), "-u", app_base + "/api/inngest"], env=denv, cwd=d,
                               stderr=subprocess.DEVNULL)
        client = httpx.Client(timeout=10)
        try:
            def synced():
                try:
                    r = client.get(base + "/api/v1/functions")
                    return r.status_code == 200 and any(f["id"] == "bench-three" for f in r.json()["functions"])
                except httpx.TransportError:
                    return False

            _wait(synced, 60, "the app to sync")

            def run_of(event_id: str):
                r = client.get(base + f"/api/v1/events/{event_id}").json()
                runs = r.get("runs") or []
                if not runs:
                    return None
                rid = runs[0]["id"] if isinstance(runs[0], dict) else runs[0]
                run = client.get(base + f"/api/v1/runs/{rid}").json()
                return run if run["status"] == "completed" else None

            def ts(v):  # the API's times are ISO-8601 or epoch seconds
                if isinstance(v, (int, float)):
                    return float(v)
                from datetime import datetime
                return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()

            lat = []
            for i in range(args.latency):
                sent = time.time()
                [eid] = client.post(base + "/e/key", json={"name": "bench/three", "data": {"i": i}}).json()["ids"]
                run = _wait(lambda: run_of(eid), 30, "a run")
                lat.append((ts(run["finished_at"]) - sent) * 1000)
            lat.sort()
            print(f"[{label}] latency 3-step SDK run, end to end: p50 {statistics.median(lat):.1f} ms, "
                  f"p90 {lat[int(len(lat) * 0.9) - 1]:.1f} ms (n={len(lat)})")

            events = [{"name": "bench/three", "data": {"i": i}} for i in range(args.n)]
            t0 = time.time()
            ids = client.post(base + "/e/key", json=events).json()["ids"]
            last = _wait(lambda: run_of(ids[-1]), 300, "the last run")
            _wait(lambda: all(run_of(e) for e in ids[:: max(1, len(ids) // 20)]), 300, "the runs")
            t1 = ts(last["finished_at"])
            print(f"[{label}] throughput 3-step SDK runs, 1 driver x{args.concurrency}: {args.n / (t1 - t0):.0f} runs/s "
                  f"(n={args.n})")
        finally:
            dev.terminate()
            app.terminate()
            dev.wait(20)
            app.wait(20)


if __name__ == "__main__":
    main()
