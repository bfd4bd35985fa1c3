"""Fairness (DESIGN §2), measured: one tenant's backlog against 20 small tenants, and the cost.

    python bench/fairness.py                      # SQLite
    python bench/fairness.py --store postgres     # PostgreSQL (BENCH_PG_DSN)
    python bench/fairness.py --store both --reps 3

``start delay``: 10,000 queued runs of tenant ``big``, then 20 tenants x 10 runs sent after
them; one worker process x 8 drains them. The delay of a run is started_at - created_at (the
store's clock), counted from the first run's start (every run was queued before the worker
started); the figure is the p50/p99/max over the 200 small tenants' runs, without and
with ``fairness=durably.Fairness()``. ``W1``: the drain of 5,000 no-op runs (bench/core.py's),
without and with fairness, in the same run; ``ratio`` = with / without (target >= 0.90).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import durably  # noqa: E402
from bench.core import ENV, Ledger, drain, fresh_store, open_app, start_worker, stop_worker, worker_env  # noqa: E402

BIG, KEYS, PER_KEY = 10_000, 20, 10


def start_delay(kind: str, event: str, concurrency: int) -> dict:
    with fresh_store(kind) as url:
        app = open_app(url)
        app.register()
        app.send([durably.Event(event, {"k": "big"}) for _ in range(BIG)])
        app.send([durably.Event(event, {"k": f"t{k:02d}"}) for k in range(KEYS) for _ in range(PER_KEY)])
        app.close()
        total = BIG + KEYS * PER_KEY
        ledger = Ledger(url)
        with tempfile.TemporaryFile("w+") as log:
            w = start_worker(worker_env(url), concurrency, log)
            try:
                deadline = time.time() + 600
                while ledger.finished() < total:
                    if w.poll() is not None:
                        log.seek(0)
                        raise RuntimeError("the worker exited early:\n" + log.read()[-3000:])
                    if time.time() > deadline:
                        raise TimeoutError(f"not drained after 600 s ({ledger.finished()}/{total})")
                    time.sleep(0.05)
            finally:
                stop_worker(w)
        # Every run was queued before the worker started: a run's delay is from the first start.
        first = ledger.one("SELECT MIN(started_at) FROM durably_runs WHERE env = ?", ENV)[0]
        rows = ledger.conn.execute(
            "SELECT started_at - {0} FROM durably_runs WHERE env = {0} AND tenant <> 'big'".format(ledger.ph),
            (first, ENV)).fetchall()
        big_last = ledger.one("SELECT MAX(finished_at) - MIN(started_at) FROM durably_runs WHERE env = ?", ENV)[0]
        ledger.close()
    delays = sorted(r[0] for r in rows)

    def pct(p: float) -> float:
        return 1000.0 * delays[min(len(delays) - 1, int(p * len(delays)))]

    return {"small_runs": len(delays), "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": 1000.0 * delays[-1],
            "drain_s": big_last}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", choices=["sqlite", "postgres", "both"], default="sqlite")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    out = []
    modes = (("off", "bench.tenant_plain", "bench.noop"), ("on", "bench.tenant_fair", "bench.noop_fair"))
    for kind in stores:
        d: dict[str, list] = {"off": [], "on": []}
        w: dict[str, list] = {"off": [], "on": []}
        for _ in range(args.reps):  # off and on side by side in each repetition: the machine's drift hits both
            for mode, delay_event, _w1 in modes:
                d[mode].append(start_delay(kind, delay_event, args.concurrency))
            for mode, _delay, w1_event in modes:
                w[mode].append(drain(kind, w1_event, 5000, 1, args.concurrency))
        for mode, _d, _w in modes:
            row = {"store": kind, "fairness": mode,
                   "p99_ms": statistics.median(x["p99_ms"] for x in d[mode]),
                   "p50_ms": statistics.median(x["p50_ms"] for x in d[mode]),
                   "max_ms": statistics.median(x["max_ms"] for x in d[mode]),
                   "w1_per_s": statistics.median(x["per_s"] for x in w[mode]),
                   "w1_range": [min(x["per_s"] for x in w[mode]), max(x["per_s"] for x in w[mode])]}
            out.append(row)
            print(f"{kind:8} fairness {mode:3}: small tenants' start delay p50 {row['p50_ms']:8.1f} ms  "
                  f"p99 {row['p99_ms']:8.1f} ms  max {row['max_ms']:8.1f} ms | W1 {row['w1_per_s']:7.0f} jobs/s "
                  f"(range {row['w1_range'][0]:.0f}-{row['w1_range'][1]:.0f})", flush=True)
        off, on = out[-2], out[-1]
        print(f"{kind:8} W1 with fairness / without: {on['w1_per_s'] / off['w1_per_s']:.2f} (target >= 0.90)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
