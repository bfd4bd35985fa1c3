"""Prometheus metrics for ``GET /metrics``, in a registry of this API instance (no globals).

Runs execute in worker processes that the API process does not see, so what is about runs
is derived from the ledger at scrape time, in one read snapshot: runs started and
finished by function and status, retries, step durations, queue depth and oldest age,
dead letters (failed runs not replayed yet), live workers and stale leases. These
counters follow the ledger: pruning old runs lowers them, which Prometheus reads as a
counter reset. The snapshot is cached for a few seconds so that several scrapers do not
each scan the ledger.

What the API process does itself is observed directly: HTTP requests, cron pings by
outcome, and the status-sink errors of an app loaded in this process.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ..core.types import TERMINAL
from ..store.base import aw
from ..store.reads import ATTEMPT_BUCKETS, STEP_BUCKETS


class _Ledger(Collector):
    def __init__(self) -> None:
        self.snapshot: dict | None = None
        self.now = 0.0
        self.up = 0

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("durably_store_up", "1 if the last scrape could read the store, else 0")
        up.add_metric([], self.up)
        yield up
        s = self.snapshot
        if s is None:
            return
        started = CounterMetricFamily("durably_runs_started", "Runs that have started, by function", labels=["function"])
        finished = CounterMetricFamily("durably_runs_finished", "Runs that have ended, by function and status",
                                       labels=["function", "status"])
        current = GaugeMetricFamily("durably_runs", "Runs in the ledger by function and current status",
                                    labels=["function", "status"])
        retries = CounterMetricFamily("durably_retries", "Retries taken, of steps and of code outside steps, "
                                      "by function", labels=["function"])
        per_fn_started: dict[str, int] = {}
        per_fn_retries: dict[str, int] = {}
        for r in s["runs"]:
            fn, status = r["function_id"], r["status"]
            per_fn_started[fn] = per_fn_started.get(fn, 0) + (r["started"] or 0)
            per_fn_retries[fn] = per_fn_retries.get(fn, 0) + (r["retries"] or 0)
            current.add_metric([fn, status], r["n"])
            if status in TERMINAL:
                finished.add_metric([fn, status], r["n"])
        for fn, n in sorted(per_fn_started.items()):
            started.add_metric([fn], n)
        for fn, n in s["step_retries"].items():
            per_fn_retries[fn] = per_fn_retries.get(fn, 0) + n
        for fn, n in sorted(per_fn_retries.items()):
            retries.add_metric([fn], n)
        yield from (started, finished, current, retries)

        dead = GaugeMetricFamily("durably_dead_letters", "Failed runs not replayed yet, by function",
                                 labels=["function"])
        for fn, n in sorted(s["dead_letters"].items()):
            dead.add_metric([fn], n)
        yield dead

        steps = HistogramMetricFamily("durably_step_duration_seconds",
                                      "Finished step.run steps: seconds from the first attempt to the end",
                                      labels=["function"])
        for fn, h in sorted(s["steps"].items()):
            cumulative, buckets = 0, []
            for bound, n in zip((*map(str, STEP_BUCKETS), "+Inf"), h["buckets"]):
                cumulative += n
                buckets.append((bound, cumulative))
            steps.add_metric([fn], buckets, sum_value=h["sum"])
        yield steps

        tries = HistogramMetricFamily("durably_step_attempts", "Finished step.run steps: attempts each took",
                                      labels=["function"])
        for fn, h in sorted(s.get("step_attempts", {}).items()):
            cumulative, buckets = 0, []
            for bound, n in zip((*(str(float(b)) for b in ATTEMPT_BUCKETS), "+Inf"), h["buckets"]):
                cumulative += n
                buckets.append((bound, cumulative))
            tries.add_metric([fn], buckets, sum_value=h["sum"])
        yield tries

        depth = GaugeMetricFamily("durably_queue_depth", "Runs ready to start now, by function", labels=["function"])
        age = GaugeMetricFamily("durably_queue_oldest_age_seconds", "Age of the oldest ready run, by function",
                                labels=["function"])
        for b in s["backlog"]:
            depth.add_metric([b["function_id"]], b["n"])
            age.add_metric([b["function_id"]], max(0.0, self.now - b["oldest"]) if b["oldest"] is not None else 0.0)
        yield depth
        yield age
        workers = GaugeMetricFamily("durably_workers_live", "Workers that heartbeated recently")
        workers.add_metric([], s["workers"])
        stale = GaugeMetricFamily("durably_stale_leases", "Running runs whose lease expired (worker gone)")
        stale.add_metric([], s["stale_leases"])
        yield workers
        yield stale


class Metrics:
    def __init__(self, *, worker_window: float, cache_seconds: float = 5.0):
        self.registry = CollectorRegistry(auto_describe=False)
        self.worker_window = worker_window
        self.cache_seconds = cache_seconds
        self._ledger = _Ledger()
        self._read_at = float("-inf")
        self.registry.register(self._ledger)
        self.http_requests = Counter("durably_http_requests", "HTTP requests served, by route and status",
                                     ["route", "method", "status"], registry=self.registry)
        self.http_seconds = Histogram("durably_http_request_duration_seconds", "HTTP request latency, by route",
                                      ["route"], registry=self.registry,
                                      buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
        self.cron_pings = Counter("durably_cron_pings", "Cron endpoint pings, by outcome "
                                  "(dispatched, duplicate, inline, unavailable)", ["outcome"], registry=self.registry)
        self.status_sink_errors = Counter("durably_status_sink_errors", "Status blob writes that failed, by sink",
                                          ["sink"], registry=self.registry)

    # An App loaded in this process reports to its observers (see App._status_sink_failed).
    def status_sink_failed(self, sink: str, exc: BaseException | None = None) -> None:
        self.status_sink_errors.labels(sink).inc()

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http_requests.labels(route, method, str(status)).inc()
        self.http_seconds.labels(route).observe(seconds)

    async def render(self, store: Any) -> bytes:
        """Refresh the ledger snapshot (unless fresh) and render the exposition text."""
        mono = time.monotonic()
        if mono - self._read_at >= self.cache_seconds:
            now = time.time()
            try:
                if store is None:
                    raise RuntimeError("store unavailable")
                self._ledger.snapshot = await aw(store.metrics(now, self.worker_window))
                self._ledger.now, self._ledger.up = now, 1
            except Exception:  # noqa: BLE001 - an unreachable store shows as durably_store_up 0
                self._ledger.snapshot, self._ledger.up = None, 0
            self._read_at = mono
        return generate_latest(self.registry)
