"""What the dashboard's pages show, shaped from ledger records: pure functions, no I/O
(times and durations as text, a function's flow control, failure messages masked into
groups, the keys Run now asks for, a run's trace and the health chart)."""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

from ...core.blobs import iso
from ...core.options import FunctionConfig


def ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return ""
    d = (now or time.time()) - ts
    future = d < 0
    d = abs(d)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        if d >= size:
            text = f"{int(d // size)}{unit}"
            break
    else:
        text = "now"
        return text
    return f"in {text}" if future else f"{text} ago"


def duration(ms: float | None) -> str:
    if ms is None:
        return ""
    if ms < 1000:
        return f"{int(ms)} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"


def flow_summary(config: dict) -> list[str]:
    """The function's flow control (read from its typed ``FunctionConfig``) and its attempts."""
    typed = FunctionConfig.from_json({"id": "?", **config})
    n = typed.retry.attempts
    return [*typed.flow_control(), f"{n} attempt" + ("" if n == 1 else "s")]


_MASKS = [
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b0[xX][0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{6,}\b"), "<hex>"),
    (re.compile(r"\b(?=[0-9A-Za-z]*[0-9])(?=[0-9A-Za-z]*[A-Za-z])[0-9A-Za-z]{20,}\b"), "<id>"),  # ULIDs, tokens
    (re.compile(r"\b(?=[\w-]*[A-Za-z])(?=[\w-]*[0-9])[A-Za-z][\w-]*[_-][\w-]*\b"), "<id>"),  # ord_8f3k2, user-42
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
]


def mask_message(message: str) -> str:
    """An error message with its ids, uuids, hex strings and numbers masked, so that one bug
    hit with different ids is one group: "order 1234 not found" -> "order <n> not found"."""
    for pattern, repl in _MASKS:
        message = pattern.sub(repl, message)
    return message


_READS_DATA = re.compile(r"\bevent\s*(?:\.\s*data\b|\[\s*[\"']data[\"']\s*\])")
_DATA_PATH = re.compile(r"\bevent\s*\.\s*data((?:\s*\.\s*[A-Za-z_]\w*)+)")


def data_keys(config: dict) -> list[tuple[str, str]]:
    """The function's key expressions (tenant, concurrency, throttle, ...) that read ``event.data``,
    as (what, expression): Run now must be given data for them."""
    out: list[tuple[str, str]] = []

    def walk(what: str, value: Any) -> None:
        if isinstance(value, str):
            if _READS_DATA.search(value):
                out.append((what, value))
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{what}.{k}" if what else k, v)
        elif isinstance(value, list):
            for v in value:
                walk(what, v)

    for k, v in config.items():
        if k not in ("id", "name", "triggers", "retry", "timeouts", "has_on_failure", "internal", "cancel_on"):
            walk(k, v)
    return out


def data_skeleton(keys: list[tuple[str, str]]) -> dict:
    """A data object with an empty value at every ``event.data.a.b`` path the keys read."""
    out: dict = {}
    for _, expr in keys:
        for m in _DATA_PATH.finditer(expr):
            parts = [p.strip() for p in m.group(1).split(".") if p.strip()]
            node = out
            for p in parts[:-1]:
                node = node.setdefault(p, {}) if isinstance(node.get(p, {}), dict) else node
            node.setdefault(parts[-1], "")
    return out


def _plan_error_text(error: Any) -> str:
    if isinstance(error, str):
        try:
            error = json.loads(error)
        except ValueError:
            return error
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def _nice_step(span: float, ticks: int = 6) -> float:
    """A round tick interval (1, 2 or 5 times a power of ten) giving about ``ticks`` ticks."""
    import math

    raw = max(span, 1e-6) / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _span_text(seconds: float) -> str:
    return duration(seconds * 1000)


def _tick_text(seconds: float, step: float) -> str:
    if step < 1:
        return f"{seconds * 1000:g} ms"
    if step < 60:
        return f"{seconds:g} s"
    if step < 3600:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"


def _timeline(row: dict, now: float | None = None) -> dict:
    """The run's trace: per step, one bar per attempt (failed ones red, with their error), the
    backoff between attempts as a gap, sleeps and waits as the span they really took (a wait
    that ended early ends where it ended), all on an axis from the run's start to its end (or
    to now while it is unfinished), never to a timeout that did not happen."""
    now = time.time() if now is None else now
    steps = row.get("steps") or []
    t0 = row.get("started_at") or row["created_at"]
    finished = row.get("finished_at")
    ends = [t0, finished or now]
    for st in steps:
        for a in st.get("log") or []:
            if a and a.get("finished_at"):
                ends.append(a["finished_at"])
        if st.get("finished_at"):
            ends.append(st["finished_at"])
    t1 = finished if finished else max(ends)
    span = max(t1 - t0, 0.001)

    def pos(t: float) -> float:
        return round(100 * min(max(t - t0, 0.0), span) / span, 3)

    def seg(kind: str, start: float, end: float, title: str, **extra: Any) -> dict:
        left = pos(start)
        return {"kind": kind, "left": left, "width": round(max(pos(end) - left, 0.0), 3), "title": title,
                "ms": int(round((end - start) * 1000)), **extra}

    lanes = []
    for st in steps:
        kind, status = st["kind"], st["status"]
        start = st.get("started_at") or t0
        segs: list[dict] = []
        errors = []
        if kind in ("sleep", "wait", "invoke"):
            pending = status in ("sleeping", "waiting")
            end = now if pending else (st.get("finished_at") or t1)
            wake = st.get("wake_at")
            what = {"sleep": "sleep", "wait": "wait for an event", "invoke": "wait for the invoked run"}[kind]
            if pending:
                title = f"{st['step_id']}: {what}, {_span_text(end - start)} so far" + (
                    f", until {iso(wake)}" if wake else "")
            else:
                title = f"{st['step_id']}: {what}, {_span_text(end - start)}"
                if status == "cancelled":
                    title += " (cancelled with its run)"
                elif kind == "wait" and wake and end < wake - 0.001:
                    title += f" (ended early; its timeout was {_span_text(wake - start)})"
                elif kind == "wait" and status == "completed" and st.get("output") is None:
                    title += " (timed out)"
            segs.append(seg("idle", start, end, title, pending=pending))
        else:
            log = [a for a in (st.get("log") or []) if a]
            if not log:  # a step recorded without its attempt log: one bar for its whole span
                end = st.get("finished_at") or (now if not finished else t1)
                segs.append(seg("work", start, end, f"{st['step_id']}: {status}, {_span_text(end - start)}",
                                failed=status == "failed"))
            prev_end = None
            for a in log:
                a_start = a.get("started_at") or start
                a_end = a.get("finished_at") or (now if not finished else t1)
                if prev_end is not None and a_start > prev_end:
                    segs.append(seg("gap", prev_end, a_start,
                                    f"backoff before attempt {a.get('attempt')}: {_span_text(a_start - prev_end)}"))
                err = a.get("error")
                title = f"{st['step_id']} attempt {a.get('attempt')}: "
                if err:
                    title += f"failed after {_span_text(a_end - a_start)}: {err.get('name')}: {err.get('message')}"
                    errors.append(err)
                else:
                    title += f"ok, {_span_text(a_end - a_start)}"
                segs.append(seg("work", a_start, a_end, title, failed=bool(err), attempt=a.get("attempt")))
                prev_end = a_end
            if status == "retrying" and prev_end is not None:
                nxt = row.get("available_at")
                until = f" until {iso(nxt)}" if nxt and nxt > now else ""
                segs.append(seg("gap", prev_end, max(prev_end, now if not finished else t1),
                                f"backoff{until}", pending=True))
        first = min((x["left"] for x in segs), default=0.0)
        last = max((x["left"] + x["width"] for x in segs), default=0.0)
        if st.get("finished_at") is not None and st["finished_at"] < (row.get("created_at") or t0):
            # A rerun from a step: this step was copied from the original run's memo, not run here.
            segs = [seg("memo", t0, t0, f"{st['step_id']}: {status} in the original run (copied from its memo, "
                                        "not run again)")]
        lanes.append({"id": st["step_id"], "kind": kind, "status": status, "segments": segs,
                      "memo": segs[0]["kind"] == "memo" if segs else False,
                      "attempts": st.get("attempts") or 0, "errors": errors,
                      "ms": int(round(span * (last - first) / 100 * 1000))})
    step = _nice_step(span)
    ticks = []
    i = 0
    while i * step <= span * 1.0001 and i < 40:
        ticks.append({"left": pos(t0 + i * step), "label": _tick_text(i * step, step)})
        i += 1
    return {"bars": lanes, "span_ms": int(round(span * 1000)), "span_text": _span_text(span), "ticks": ticks,
            "live": not finished}


def _chart(rows: list[dict]) -> dict:
    """Runs finished per minute over the last hour, stacked by status, as SVG rectangles, with a
    y axis (runs per minute, round ticks from 0 to the peak) and an x axis (minutes ago)."""
    buckets = [{"completed": 0, "failed": 0, "cancelled": 0} for _ in range(60)]
    for r in rows:
        k = int(r["bucket"])
        if 0 <= k < 60 and r["status"] in buckets[k]:
            buckets[k][r["status"]] += r["n"]
    peak = max([sum(b.values()) for b in buckets] + [1])
    step = max(1, int(_nice_step(peak, 4)))
    top = -(-peak // step) * step  # the axis' top: the peak rounded up to a tick
    left, right, plot_top, plot_h, width = 48, 10, 10, 140, 640
    plot_w = width - left - right
    col = plot_w / 60
    bars = []
    for i, b in enumerate(buckets):
        y = float(plot_top + plot_h)
        for status in ("completed", "failed", "cancelled"):
            h = plot_h * b[status] / top
            if h:
                y -= h
                bars.append({"x": round(left + i * col + 0.5, 2), "y": round(y, 2), "w": round(col - 1, 2),
                             "h": round(h, 2), "status": status, "n": b[status], "minute": 59 - i})
    yticks = [{"y": round(plot_top + plot_h - plot_h * v / top, 2), "label": str(v)}
              for v in range(0, top + 1, step)]
    xticks = [{"x": round(left + (60 - m) * col, 2), "label": "now" if m == 0 else f"−{m} min"}
              for m in (60, 50, 40, 30, 20, 10, 0)]
    return {"bars": bars, "peak": peak, "total": sum(sum(b.values()) for b in buckets), "yticks": yticks,
            "xticks": xticks, "left": left, "right": width - right, "top": plot_top, "bottom": plot_top + plot_h,
            "width": width, "height": plot_top + plot_h + 34}
