"""Queue health: what ``durably health`` and ``GET /api/v1/health`` report."""

from __future__ import annotations

import time
from typing import Any

from .config import Settings
from .errors import StoreMissing

WORKER_WINDOW = 3.0  # a worker is live if it heartbeated within this many lease thirds


def collect(settings: Settings, store: Any = None, *, missing_store_raises: bool = False) -> dict:
    report: dict[str, Any] = {"ok": True, "env": settings.env, "store": {"ok": False}, "redis": None}
    own = store is None
    try:
        if store is None:
            from .runtime import open_store

            store = open_store(settings, migrate=False, create=False)
        try:
            now = store.now().result()  # the store's clock: heartbeats and leases are on it
        except Exception:  # noqa: BLE001 - reported by the read below
            now = time.time()
        h = store.health(now, settings.lease_seconds).result()
        for b in h["backlog"]:
            b["alert"] = b["oldest_age_s"] > settings.backlog_alert_seconds
        report["store"] = {"ok": True, "dialect": store.dialect}
        report["workers"] = [{"id": w["id"], "host": w["host"], "pid": w["pid"], "concurrency": w["concurrency"],
                              "heartbeat_age_s": round(now - w["heartbeat_at"], 3)} for w in h["workers"]]
        report["backlog"] = sum(b["n"] for b in h["backlog"])
        report["oldest_queued_age_s"] = round(max((b["oldest_age_s"] for b in h["backlog"]), default=0.0), 3)
        report["backlog_by_function"] = h["backlog"]
        report["stale_leases"] = h["stale_leases"]
        report["runs_by_status"] = h["counts"]
        report["alerts"] = {"backlog": report["oldest_queued_age_s"] > settings.backlog_alert_seconds,
                            "stale_leases": h["stale_leases"] > 0, "no_workers": not h["workers"]}
    except StoreMissing as exc:
        if missing_store_raises:  # `durably health` where there is no store: one line, like every reading command
            raise
        report["ok"] = False
        report["store"] = {"ok": False, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - health reports, it does not raise
        report["ok"] = False
        report["store"] = {"ok": False, "error": str(exc)}
    finally:
        if own and store is not None:
            store.close()
    if settings.redis_url:
        try:
            import redis

            r = redis.Redis.from_url(settings.redis_url, socket_timeout=1, socket_connect_timeout=1)
            r.ping()
            report["redis"] = {"ok": True}
        except Exception as exc:  # noqa: BLE001
            report["redis"] = {"ok": False, "error": str(exc)}
            report["ok"] = False
    return report
