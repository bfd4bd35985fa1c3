"""The public JSON shapes of runs, steps and events (CLI ``--json`` and the HTTP API)."""

from __future__ import annotations

from typing import Any

from .core.blobs import iso


def run_json(r: dict, *, detail: bool = False) -> dict:
    attempts = (r.get("attempt") or 0) + (1 if r.get("started_at") is not None else 0)
    out: dict[str, Any] = {
        "id": r["id"],
        "function_id": r["function_id"],
        "status": r["status"],
        "tenant": r.get("tenant") or "global",
        "trigger": r.get("trigger"),
        "event_id": r.get("event_id"),
        "created_at": iso(r.get("created_at")),
        "started_at": iso(r.get("started_at")),
        "finished_at": iso(r.get("finished_at")),
        "attempts": attempts,
        "terminal_reason": r.get("terminal_reason"),
    }
    if r.get("started_at") is not None and r.get("finished_at") is not None:
        out["duration_ms"] = int(round((r["finished_at"] - r["started_at"]) * 1000))
    else:
        out["duration_ms"] = None
    if r.get("replay_of"):
        out["replay_of"] = r["replay_of"]
    if r.get("parent_run_id"):
        out["parent_run_id"] = r["parent_run_id"]
    if detail:
        out["event"] = r.get("event")
        if r.get("events") is not None:
            out["events"] = r["events"]
        out["output"] = r.get("output")
        out["error"] = r.get("error")
        out["steps"] = [step_json(s) for s in r.get("steps", [])]
    return out


def step_json(s: dict) -> dict:
    log = [a for a in (s.get("log") or []) if a]
    return {
        "id": s["step_id"],
        "kind": s["kind"],
        "status": s["status"],
        "attempts": s.get("attempts") or 0,
        "started_at": iso(s.get("started_at")),
        "finished_at": iso(s.get("finished_at")),
        "wake_at": iso(s.get("wake_at")),
        "output": s.get("output"),
        "error": s.get("error"),
        "errors": [a["error"] for a in log if a.get("error")],
        "attempt_log": [
            {"attempt": a.get("attempt"), "started_at": iso(a.get("started_at")),
             "finished_at": iso(a.get("finished_at")), "error": a.get("error")}
            for a in log
        ],
    }


def event_json(e: dict) -> dict:
    ev = e.get("event") or {}
    out = {
        "id": e["id"],
        "name": e.get("name") or ev.get("name"),
        "data": ev.get("data"),
        "ts": ev.get("ts"),
        "user": ev.get("user"),
        "received_at": iso(e.get("received_at")),
        "runs": [{"id": r["id"], "function_id": r["function_id"], "status": r["status"]} for r in e.get("runs", [])],
    }
    if "skipped" in e:
        out["skipped"] = e["skipped"]
    return out
