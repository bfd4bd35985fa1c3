"""The dashboard: server-rendered pages (Jinja2) over the same store and admin operations as
the HTTP API, with the same auth. Every list reads without JavaScript; a few lines of
script refresh the live parts every few seconds."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ... import admin
from ...errors import DurablyError, InvalidInput
from ...core.events import Event
from ...serialize import event_json, run_json
from ...core.blobs import iso
from ...store.base import aw
from .session import COOKIE, MAX_AGE, Sessions
from ...core.types import RUN_STATUSES

if TYPE_CHECKING:
    from ..api import Api

ENV_COLORS = {"production": "#c62828", "prod": "#c62828", "preview": "#ef6c00", "staging": "#ef6c00",
              "dev": "#2e7d32", "test": "#6a1b9a"}
PAGE = 50

Handler = Callable[[Request, dict], Awaitable[Response]]


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
    out = []
    for c in config.get("concurrency") or []:
        out.append(f"concurrency {c['limit']}" + (f" per {c['key']}" if c.get("key") else "")
                   + (" (env)" if c.get("scope") == "env" else ""))
    if config.get("throttle"):
        t = config["throttle"]
        out.append(f"throttle {t['limit']}/{t['period']:g}s" + (f" per {t['key']}" if t.get("key") else ""))
    if config.get("rate_limit"):
        r = config["rate_limit"]
        out.append(f"rate limit {r['limit']}/{r['period']:g}s" + (f" per {r['key']}" if r.get("key") else ""))
    if config.get("debounce"):
        out.append(f"debounce {config['debounce']['period']:g}s")
    if config.get("batch"):
        out.append(f"batch {config['batch']['max_size']}")
    if config.get("idempotency"):
        out.append("idempotent")
    if config.get("singleton"):
        out.append(f"singleton ({config['singleton']['mode']})")
    if config.get("priority"):
        out.append("priority")
    retry = config.get("retry") or {}
    if retry:
        out.append(f"{retry.get('attempts', 1)} attempts")
    return out


class Dashboard:
    def __init__(self, api: "Api"):
        self.api = api
        s = api.settings
        self.sessions = Sessions(s.env, api.keys.admin, s.secret_key.get_secret_value() if s.secret_key else None)
        self.jinja = Environment(loader=PackageLoader("durably.server.dashboard", "templates"),
                                 autoescape=select_autoescape(["html"]))
        self.jinja.filters.update(ago=ago, iso=iso, duration=duration, tojson_pretty=lambda v: json.dumps(
            v, indent=2, default=str, ensure_ascii=False))
        self.jinja.globals.update(env=s.env, env_color=ENV_COLORS.get(s.env, "#1565c0"), statuses=RUN_STATUSES)

    def routes(self) -> list:
        r = self._page
        return [
            Route("/", r(self.functions)),
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", r(self.logout, post=True), methods=["POST"]),
            Route("/functions/{id:path}/run", r(self.run_now, post=True), methods=["POST"]),
            Route("/runs", r(self.runs)),
            Route("/runs/{id}", r(self.run)),
            Route("/runs/{id}/cancel", r(self.cancel, post=True), methods=["POST"]),
            Route("/runs/{id}/replay", r(self.replay, post=True), methods=["POST"]),
            Route("/failures", r(self.failures)),
            Route("/failures/replay", r(self.failures_replay, post=True), methods=["POST"]),
            Route("/events", r(self.events)),
            Route("/events/send", r(self.send_event, post=True), methods=["POST"]),
            Route("/events/{id:path}", r(self.event)),
            Route("/health", r(self.health)),
            Mount("/static", StaticFiles(packages=[("durably.server.dashboard", "static")]), name="dashboard-static"),
        ]

    # --- plumbing ------------------------------------------------------------------------------

    def _base(self, request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    def render(self, request: Request, session: dict, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.update(base=self._base(request), csrf=self.sessions.csrf(session), request=request, now=time.time(),
                   logged_in=not self.sessions.open and bool(session.get("auth")), path=request.url.path)
        html = self.jinja.get_template(template).render(**ctx)
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def _page(self, handler: Handler, post: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = self.sessions.read(request.cookies.get(COOKIE))
            fresh = None
            if session is None or not session.get("auth"):
                if not self.sessions.open:
                    if post:
                        return HTMLResponse("login required", status_code=401)
                    return RedirectResponse(f"{self._base(request)}/login?{urlencode({'next': request.url.path})}",
                                            status_code=303)
                fresh, session = self.sessions.new(True)
            if post:
                form = await request.form()
                if not self.sessions.csrf_ok(session, form.get("csrf")):  # type: ignore[arg-type]
                    return HTMLResponse("invalid or missing CSRF token: reload the page and try again",
                                        status_code=403)
                request.state.form = form
            try:
                _check_text(request)
                response = await handler(request, session)
            except DurablyError as exc:
                status = _status_of(exc)
                response = self.render(request, session, "error.html", status=status, error=str(exc),
                                       outage=status == 503)
                if status == 503:
                    response.headers["Retry-After"] = "5"
            if fresh:
                self._set_cookie(request, response, fresh)
            return response

        return endpoint

    def _set_cookie(self, request: Request, response: Response, value: str) -> None:
        response.set_cookie(COOKIE, value, max_age=MAX_AGE, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path=self._base(request) or "/")

    async def store(self) -> Any:
        return await self.api.store()

    # --- login ---------------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        base = self._base(request)
        form = await request.form() if request.method == "POST" else None
        nxt = str((form.get("next") if form else None) or request.query_params.get("next") or f"{base}/")
        if not nxt.startswith("/") or nxt.startswith("//"):  # only a path on this site: no open redirect
            nxt = f"{base}/"
        if self.sessions.open:
            return RedirectResponse(nxt, status_code=303)
        pre = self.sessions.read(request.cookies.get(COOKIE))
        cookie = None
        if pre is None:
            cookie, pre = self.sessions.new(False)
        error = None
        if form is not None:
            if not self.sessions.csrf_ok(pre, form.get("csrf")):  # type: ignore[arg-type]
                error = "The form expired; try again."
            elif self.sessions.check_token(str(form.get("token") or "")):
                value, _ = self.sessions.new(True)
                response = RedirectResponse(nxt, status_code=303)
                self._set_cookie(request, response, value)
                return response
            else:
                error = "Wrong admin token."
        response = self.render(request, pre, "login.html", status=401 if error else 200, error=error, next=nxt)
        if cookie:
            self._set_cookie(request, response, cookie)
        return response

    async def logout(self, request: Request, session: dict) -> Response:
        response = RedirectResponse(f"{self._base(request)}/login", status_code=303)
        response.delete_cookie(COOKIE, path=self._base(request) or "/")
        return response

    # --- functions -----------------------------------------------------------------------------

    async def functions(self, request: Request, session: dict) -> Response:
        from ..api import function_json

        now = time.time()
        rows = await aw((await self.store()).read("functions_overview", now - 86400))
        fns = []
        for f in rows:
            if f["config"].get("internal"):
                continue
            j = function_json(f, now)
            stats = j["stats_24h"]
            done = stats.get("completed", 0) + stats.get("failed", 0)
            j["success_rate"] = round(100 * stats.get("completed", 0) / done) if done else None
            j["flow"] = flow_summary(j["config"])
            j["last_at"] = f["last_run"]["created_at"] if f.get("last_run") else None
            j["next_at"] = _ts(j["next_run_at"])
            fns.append(j)
        started = request.query_params.get("started")
        return self.render(request, session, "functions.html", functions=fns, started=started,
                           started_fn=request.query_params.get("fn"))

    async def run_now(self, request: Request, session: dict) -> Response:
        fid = request.path_params["id"]
        data_text = str(request.state.form.get("data") or "").strip()
        data = _json_object(data_text, "data") if data_text else None
        res = await admin.run_now(await self.store(), fid, data)
        q = urlencode({"started": res["id"], "fn": fid})
        return RedirectResponse(f"{self._base(request)}/?{q}", status_code=303)

    # --- runs ----------------------------------------------------------------------------------

    async def runs(self, request: Request, session: dict) -> Response:
        q = request.query_params
        now = time.time()
        status = q.get("status") or None
        if status and status not in RUN_STATUSES:
            raise InvalidInput(f"unknown status {status!r}")
        since = admin.parse_time(q.get("since") or None, name="since", now=now)
        until = admin.parse_time(q.get("until") or None, name="until", now=now)
        cursor = admin.decode_cursor(q["cursor"]) if q.get("cursor") else None
        rows = await aw((await self.store()).read(
            "list_runs", status=status, function_id=q.get("function") or None, tenant=q.get("tenant") or None,
            since=since, until=until, cursor=cursor, limit=PAGE + 1))
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        items = [run_json(r) | {"started_ts": r.get("started_at"), "event_name": (r.get("event") or {}).get("name")}
                 for r in rows]
        next_q = None
        if more:
            params = {k: v for k, v in q.items() if k != "cursor" and v}
            params["cursor"] = admin.encode_cursor(rows[-1]["created_at"], rows[-1]["id"])
            next_q = urlencode(params)
        return self.render(request, session, "runs.html", runs=items, filters=dict(q), next_q=next_q,
                           first_q=urlencode({k: v for k, v in q.items() if k != "cursor" and v}))

    async def run(self, request: Request, session: dict) -> Response:
        rid = request.path_params["id"]
        row = await aw((await self.store()).read("get_run", rid))
        if row is None:
            return self.render(request, session, "error.html", status=404, error=f"no run {rid!r}")
        run = run_json(row, detail=True)
        return self.render(request, session, "run.html", run=run, timeline=_timeline(row),
                           live=run["status"] not in ("completed", "failed", "cancelled"))

    async def cancel(self, request: Request, session: dict) -> Response:
        rid = request.path_params["id"]
        await admin.cancel_run(await self.store(), rid)
        return RedirectResponse(f"{self._base(request)}/runs/{rid}", status_code=303)

    async def replay(self, request: Request, session: dict) -> Response:
        res = await admin.replay_run(await self.store(), request.path_params["id"])
        return RedirectResponse(f"{self._base(request)}/runs/{res['id']}", status_code=303)

    # --- failures ------------------------------------------------------------------------------

    async def _failure_groups(self) -> list[dict]:
        rows = await aw((await self.store()).read("list_runs", status="failed", limit=1000))
        groups: dict[tuple, dict] = {}
        for r in rows:
            err = r.get("error") or {}
            key = (r["function_id"], err.get("name") or "Error", (err.get("message") or "")[:300])
            g = groups.setdefault(key, {"function_id": key[0], "error_name": key[1], "message": key[2],
                                        "count": 0, "runs": [], "last": 0.0, "reasons": set()})
            g["count"] += 1
            g["runs"].append(r["id"])
            g["last"] = max(g["last"], r.get("finished_at") or r["created_at"])
            g["reasons"].add(r.get("terminal_reason") or "")
        out = sorted(groups.values(), key=lambda g: (-g["count"], -g["last"]))
        for i, g in enumerate(out):
            g["key"] = str(i)
            g["reasons"] = ", ".join(sorted(x for x in g["reasons"] if x))
        return out

    async def failures(self, request: Request, session: dict) -> Response:
        return self.render(request, session, "failures.html", groups=await self._failure_groups(), preview=None)

    async def failures_replay(self, request: Request, session: dict) -> Response:
        form = request.state.form
        groups = await self._failure_groups()
        chosen = set(form.getlist("group"))
        try:
            limit = int(form.get("limit") or 100)
        except ValueError:
            raise InvalidInput("limit must be a number") from None
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000")
        run_ids = [rid for g in groups if g["key"] in chosen for rid in g["runs"]][:limit]
        if not chosen:
            raise InvalidInput("select at least one group to replay")
        if form.get("dry_run"):
            return self.render(request, session, "failures.html", groups=groups, preview=run_ids,
                               chosen=chosen, limit=limit)
        store = await self.store()
        replayed = []
        for rid in run_ids:
            replayed.append((await admin.replay_run(store, rid))["id"])
        return self.render(request, session, "failures.html", groups=await self._failure_groups(), preview=None,
                           replayed=replayed)

    # --- events --------------------------------------------------------------------------------

    async def events(self, request: Request, session: dict, *, form_error: str | None = None,
                     form: dict | None = None) -> Response:
        q = request.query_params
        cursor = admin.decode_cursor(q["cursor"]) if q.get("cursor") else None
        rows = await aw((await self.store()).read("list_events", name=q.get("name") or None, cursor=cursor,
                                                  limit=PAGE + 1))
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        items = [event_json(e) | {"received_ts": e["received_at"]} for e in rows]
        next_q = None
        if more:
            next_q = urlencode({**({"name": q["name"]} if q.get("name") else {}),
                                "cursor": admin.encode_cursor(rows[-1]["received_at"], rows[-1]["id"])})
        return self.render(request, session, "events.html", status=400 if form_error else 200, events=items,
                           next_q=next_q, name=q.get("name") or "", form_error=form_error, form=form or {})

    async def send_event(self, request: Request, session: dict) -> Response:
        form = request.state.form
        name = str(form.get("name") or "").strip()
        data_text = str(form.get("data") or "").strip() or "{}"
        values = {"name": name, "data": data_text}
        try:
            data = _json_object(data_text, "data")
            event = Event(name, data)
            res = await self.api.app.send_async(event)
        except InvalidInput as exc:  # shown on the form; an outage is the 503 page
            return await self.events(request, session, form_error=str(exc), form=values)
        return RedirectResponse(f"{self._base(request)}/events/{res.ids[0]}", status_code=303)

    async def event(self, request: Request, session: dict) -> Response:
        eid = request.path_params["id"]
        row = await aw((await self.store()).read("get_event", eid))
        if row is None:
            return self.render(request, session, "error.html", status=404, error=f"no event {eid!r}")
        return self.render(request, session, "event.html", event=event_json(row))

    # --- health --------------------------------------------------------------------------------

    async def health(self, request: Request, session: dict) -> Response:
        from starlette.concurrency import run_in_threadpool

        from ...health import collect

        store = await self.api.try_store()
        report = await run_in_threadpool(collect, self.api.settings, store)
        chart = None
        if store is not None:
            now = time.time()
            rows = await aw(store.read("finished_per_minute", now - 3600))
            chart = _chart(rows)
        return self.render(request, session, "health.html", report=report, chart=chart)


def _status_of(exc: DurablyError) -> int:
    """The API's status for the error: bad input 400, not found 404, conflict 409, the store
    unreachable 503 (never shown as the user's mistake)."""
    from ..api import status_of

    return status_of(exc)


def _check_text(request: Request) -> None:
    """Query and path parameters the store could not hold are bad input, the same on every store."""
    for name, value in request.path_params.items():
        if "\x00" in value:
            raise InvalidInput(f"{name}: must not hold NUL characters")
    for name, value in request.query_params.multi_items():
        if "\x00" in name or "\x00" in value:
            raise InvalidInput(f"query parameter {name!r}: must not hold NUL characters")


def _ts(text: str | None) -> float | None:
    if not text:
        return None
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _json_object(text: str, what: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object, like {{\"clientId\": \"c1\"}}")
    return value


def _timeline(row: dict) -> dict:
    """Bars of a waterfall: each step's span (and each attempt) relative to the run's span."""
    steps = row.get("steps") or []
    t0 = row.get("started_at") or row["created_at"]
    ends = [t0]
    for s in steps:
        for t in (s.get("finished_at"), s.get("wake_at"), s.get("started_at")):
            if t:
                ends.append(t)
    if row.get("finished_at"):
        ends.append(row["finished_at"])
    t1 = max(ends)
    span = max(t1 - t0, 0.001)
    bars = []
    for s in steps:
        start = s.get("started_at") or t0
        end = s.get("finished_at") or (s.get("wake_at") if s["status"] in ("sleeping", "waiting") else None) or t1
        attempts = [a for a in (s.get("log") or []) if a]
        bars.append({
            "id": s["step_id"], "kind": s["kind"], "status": s["status"], "attempts": s.get("attempts") or 0,
            "left": round(100 * (start - t0) / span, 2), "width": max(0.6, round(100 * (end - start) / span, 2)),
            "ms": int((end - start) * 1000),
            "errors": [a["error"] for a in attempts if a.get("error")],
            "tries": [{"left": round(100 * ((a.get("started_at") or start) - t0) / span, 2),
                       "width": max(0.4, round(100 * ((a.get("finished_at") or end) - (a.get("started_at") or start))
                                               / span, 2)),
                       "failed": bool(a.get("error"))} for a in attempts],
        })
    return {"bars": bars, "span_ms": int(span * 1000)}


def _chart(rows: list[dict]) -> dict:
    """Runs finished per minute over the last hour, stacked by status, as SVG rectangles."""
    buckets = [{"completed": 0, "failed": 0, "cancelled": 0} for _ in range(60)]
    for r in rows:
        b = int(r["bucket"])
        if 0 <= b < 60 and r["status"] in buckets[b]:
            buckets[b][r["status"]] += r["n"]
    peak = max([sum(b.values()) for b in buckets] + [1])
    bars = []
    for i, b in enumerate(buckets):
        y = 100.0
        for status in ("completed", "failed", "cancelled"):
            h = 100.0 * b[status] / peak
            if h:
                y -= h
                bars.append({"x": i * 10, "y": round(y, 2), "h": round(h, 2), "status": status, "n": b[status],
                             "minute": 59 - i})
    return {"bars": bars, "peak": peak, "total": sum(sum(b.values()) for b in buckets)}


def routes(api: "Api") -> list:
    return Dashboard(api).routes()
