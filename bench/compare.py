"""Print durably's peerbench figures beside the best peer's of the same run, with ratios.

    python bench/compare.py bench/results

Reads the ``<peer>.json`` files that peerbench's run.py wrote with ``--results-dir``. For
each workload/store/processes key that durably has, the best peer is the fastest (W1,
W2: runs/s) or quickest (W3: p50 latency) among the other systems measured on that key.
The DESIGN §10 targets are printed beside (ratios to a named peer, or absolute bounds).
"""

from __future__ import annotations

import glob
import json
import os
import sys

# key prefix -> (metric, higher is better, label)
METRIC = {"w1": ("per_s", True, "jobs/s"), "w2": ("per_s", True, "runs/s"), "w3": ("p50_ms", False, "p50 ms")}

# DESIGN §10 targets: (workload, store) -> (peer, ratio) or ("abs", bound)
TARGETS = {
    ("w1", "sqlite"): ("huey", 3.0), ("w1", "postgres"): ("pgqueuer", 3.0),
    ("w2", "sqlite"): ("dbos_fastpoll", 10.0), ("w2", "postgres"): ("absurd", 5.0),
}


def median(agg: dict, metric: str) -> float | None:
    if not agg or not agg.get("ok_reps"):
        return None
    m = agg.get("metrics", {}).get(metric)
    return m["median"] if m else None


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}" if v >= 10 else f"{v:,.2f}"


def main(results_dir: str) -> int:
    data = {}
    for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
        peer = os.path.splitext(os.path.basename(path))[0]
        if peer != "limits":
            with open(path) as f:
                data[peer] = json.load(f)
    mine = data.pop("durably", None)
    if not mine:
        print(f"no durably results in {results_dir}")
        return 1
    print("| workload/store/procs | durably | best peer | peer figure | durably / best | target (DESIGN §10) |")
    print("|---|---|---|---|---|---|")
    for key in sorted(mine):
        wl, store = key.split("/")[:2]
        metric, higher, label = METRIC[wl]
        ours = median(mine[key], metric)
        best_peer, best = None, None
        for peer, d in data.items():
            v = median(d.get(key), metric)
            if v is None:
                continue
            if best is None or (v > best if higher else v < best):
                best_peer, best = peer, v
        ratio = "-"
        if ours is not None and best:
            ratio = f"{ours / best:.2f}x" if higher else f"{best / ours:.2f}x quicker"
        target = ""
        t = TARGETS.get((wl, store))
        if t:
            tv = median(data.get(t[0], {}).get(key), metric)
            got = f"{ours / tv:.2f}x" if ours is not None and tv else "not measured"
            target = f">= {t[1]:g}x {t[0]}: {got}"
        elif wl == "w3" and store == "postgres":
            tv = median(data.get("pgqueuer", {}).get(key), metric)
            target = "p50 below pgqueuer's and < 2 ms" + (f": pgqueuer {fmt(tv)} ms" if tv else "")
        elif wl == "w3":
            target = "p50 < 1 ms in one process (bench/core.py's `latency in-process`)"
        flag = "" if mine[key].get("verified", True) else " (unverified)"
        print(f"| {key} | {fmt(ours)} {label}{flag} | {best_peer or '-'} | {fmt(best)} | {ratio} | {target} |")
    cpu = [(k, median(a, "worker_cpu_ms_per_job")) for k, a in sorted(mine.items()) if k.startswith("w1")]
    if cpu:
        print("\nworker CPU ms per no-op job (target <= 0.2): "
              + ", ".join(f"{k} {fmt(v)}" for k, v in cpu))
    # Bulk intake (DESIGN §10): the W1 enqueue of one list, beside pgqueuer's bulk enqueue.
    intake = []
    for key in sorted(k for k in mine if k.startswith("w1/") and k.endswith("/p1")):
        ours = median(mine[key], "enqueue_per_s")
        if key.startswith("w1/postgres"):
            pq = median(data.get("pgqueuer", {}).get(key), "enqueue_per_s")
            vs = f"{ours / pq:.2f}x pgqueuer's {fmt(pq)} (target >= 0.5x)" if ours and pq else "pgqueuer not measured"
        else:
            vs = "target >= 20,000"
        intake.append(f"{key} {fmt(ours)} events/s, {vs}")
    if intake:
        print("bulk enqueue: " + "; ".join(intake))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "results")))
