"""The dashboard: server-rendered pages (Jinja2) over the same store and admin operations as
the HTTP API, with the same auth. Every list reads without JavaScript; a few lines of
script refresh the live parts every few seconds."""

from __future__ import annotations

import hashlib
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
from ...errors import DurablyError, InvalidEvent, InvalidInput
from ...core import eventschema
from ...core.events import MANUAL_EVENT, Event
from ...serialize import event_json, run_json
from ...core.blobs import iso
from ...store.base import aw
from .session import COOKIE, MAX_AGE, Sessions
from .views import (_chart, _plan_error_text, _timeline, ago, data_keys, data_skeleton, duration, flow_summary, mask_message)
from ...core.types import RUN_STATUSES

if TYPE_CHECKING:
    from ..api import Api

ENV_COLORS = {"production": "#c62828", "prod": "#c62828", "preview": "#ef6c00", "staging": "#ef6c00",
              "dev": "#2e7d32", "test": "#6a1b9a"}
PAGE = 50

Handler = Callable[[Request, dict], Awaitable[Response]]


class Dashboard:
    def __init__(self, api: "Api"):
        self.api = api
        s = api.settings
        self.sessions = Sessions(s.env, api.keys.admin, s.secret_key.get_secret_value() if s.secret_key else None,
                                 api.keys.viewer)
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
            Route("/logout", r(self.logout, post=True, act=False), methods=["POST"]),
            Route("/functions/{id:path}/pause", r(self.pause, post=True), methods=["POST"]),
            Route("/functions/{id:path}/resume", r(self.resume, post=True), methods=["POST"]),
            Route("/audit", r(self.audit)),
            Route("/functions/{id:path}/run", r(self.run_now_form), methods=["GET"]),
            Route("/functions/{id:path}/run", r(self.run_now, post=True), methods=["POST"]),
            Route("/runs", r(self.runs)),
            Route("/runs/cancel", r(self.cancel_many, post=True), methods=["POST"]),
            Route("/runs/{id}", r(self.run)),
            Route("/runs/{id}/rerun", r(self.rerun, post=True), methods=["POST"]),
            Route("/runs/{id}/cancel", r(self.cancel, post=True), methods=["POST"]),
            Route("/runs/{id}/replay", r(self.replay, post=True), methods=["POST"]),
            Route("/failures", r(self.failures)),
            Route("/failures/replay", r(self.failures_replay, post=True), methods=["POST"]),
            Route("/events", r(self.events)),
            Route("/events/send", r(self.send_event, post=True), methods=["POST"]),
            Route("/events/{id:path}", r(self.event)),
            Route("/health", r(self.health)),
            Route("/favicon.ico", self.favicon),
            Mount("/static", StaticFiles(packages=[("durably.server.dashboard", "static")]), name="dashboard-static"),
        ]

    # --- plumbing ------------------------------------------------------------------------------

    def _base(self, request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    def render(self, request: Request, session: dict, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        role = self.sessions.role(session)
        ctx.update(base=self._base(request), csrf=self.sessions.csrf(session), request=request, now=time.time(),
                   logged_in=not self.sessions.open and bool(session.get("auth")), path=request.url.path,
                   role=role, can_act=role == "operator")
        html = self.jinja.get_template(template).render(**ctx)
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def _page(self, handler: Handler, post: bool = False, act: bool = True) -> Callable[[Request], Awaitable[Response]]:
        """A page; ``post``: a form POST (CSRF checked); ``act``: one that changes state, which a
        viewer's session is refused (403) before anything is read or done."""
        async def endpoint(request: Request) -> Response:
            session = self.sessions.read(request.cookies.get(COOKIE))
            fresh = None
            if session is None or not session.get("auth"):
                if not self.sessions.open:
                    if post:
                        return HTMLResponse("login required", status_code=401)
                    return RedirectResponse(f"{self._base(request)}/login?{urlencode({'next': _here(request)})}",
                                            status_code=303)
                fresh, session = self.sessions.new(True)
            if post and act and self.sessions.role(session) != "operator":
                return HTMLResponse("forbidden: the viewer token may only read (log in with the admin token)",
                                    status_code=403)
            if post:
                form = await request.form()
                if not self.sessions.csrf_ok(session, form.get("csrf")):
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

    async def favicon(self, request: Request) -> Response:
        from importlib.resources import files

        data = files("durably.server.dashboard").joinpath("static/favicon.ico").read_bytes()
        return Response(data, media_type="image/x-icon", headers={"Cache-Control": "public, max-age=86400"})

    # --- login ---------------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        base = self._base(request)
        form = await request.form() if request.method == "POST" else None
        nxt = _same_site(str((form.get("next") if form else None) or request.query_params.get("next") or ""),
                         f"{base}/")
        if self.sessions.open:
            return RedirectResponse(nxt, status_code=303)
        pre = self.sessions.read(request.cookies.get(COOKIE))
        cookie = None
        if pre is None:
            cookie, pre = self.sessions.new(False)
        error = None
        if form is not None:
            if not self.sessions.csrf_ok(pre, form.get("csrf")):
                error = "The form expired; try again."
            elif (role := self.sessions.check_token(str(form.get("token") or ""))) is not None:
                value, _ = self.sessions.new(True, role)
                response: Response = RedirectResponse(nxt, status_code=303)
                self._set_cookie(request, response, value)
                return response
            else:
                error = "Wrong admin token." if self.sessions.viewer_token is None else "Wrong admin or viewer token."
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
        store = await self.store()
        rows = await aw(store.functions_overview(now - 86400))
        paused = await aw(store.paused_functions())
        fns = []
        for f in rows:
            if f["config"].get("internal"):
                continue
            j = function_json(f, now, paused)
            stats = j["stats_24h"]
            done = stats.get("completed", 0) + stats.get("failed", 0)
            j["success_rate"] = round(100 * stats.get("completed", 0) / done) if done else None
            j["flow"] = flow_summary(j["config"])
            j["last_at"] = f["last_run"]["created_at"] if f.get("last_run") else None
            j["next_at"] = _ts(j["next_run_at"])
            j["data_keys"] = data_keys(j["config"])
            j["typed"] = j["event_schema"] is not None  # Run now asks for data built from the schema
            fns.append(j)
        started = request.query_params.get("started")
        return self.render(request, session, "functions.html", functions=fns, started=started,
                           started_fn=request.query_params.get("fn"))

    async def _last_data(self, fid: str, config: dict) -> dict | None:
        """The data of the function's last event: its newest run's, else its trigger's newest event's."""
        store = await self.store()
        for r in await aw(store.list_runs(function_id=fid, limit=20)):
            data = (r.get("event") or {}).get("data")
            if data:
                return data
        for t in config.get("triggers") or []:
            if t.get("event"):
                rows = await aw(store.list_events(name=t["event"], limit=1))
                if rows and (rows[0].get("event") or {}).get("data"):
                    return rows[0]["event"]["data"]
        return None

    async def run_now_form(self, request: Request, session: dict, *, data_text: str | None = None,
                           error: str | None = None) -> Response:
        """Run now for a function whose keys read ``event.data``: ask for the data, pre-filled."""
        fid = request.path_params["id"]
        config = await admin.function_config(await self.store(), fid)
        keys = data_keys(config)
        schema = config.get("event_schema") if isinstance(config.get("event_schema"), dict) else None
        source = None
        if data_text is None:
            last = await self._last_data(fid, config)
            if last is not None:
                data_text, source = json.dumps(last, indent=2, ensure_ascii=False), "last"
            elif schema is not None:  # typed: an example of the schema, with the keys' paths too
                example = eventschema.example(schema)
                example = {**data_skeleton(keys), **example} if isinstance(example, dict) else data_skeleton(keys)
                data_text, source = json.dumps(example, indent=2, ensure_ascii=False), "schema"
            else:
                data_text, source = json.dumps(data_skeleton(keys), indent=2), "keys"
        return self.render(request, session, "run_now.html", status=400 if error else 200, fid=fid, keys=keys,
                           data_text=data_text, source=source, error=error,
                           typed_event=admin.typed_event(config) if schema is not None else None)

    async def run_now(self, request: Request, session: dict) -> Response:
        from ...core.flow import plan

        fid = request.path_params["id"]
        data_text = str(request.state.form.get("data") or "").strip()
        store = await self.api.within_deadline(self.api.registered_store)
        config = await self.api.within_deadline(lambda: admin.function_config(store, fid))
        if not data_text and (data_keys(config) or isinstance(config.get("event_schema"), dict)):
            return await self.run_now_form(request, session)
        try:
            data = _json_object(data_text, "data") if data_text else None
            admin.check_run_now_data(config, data)  # typed: the data must fit the event's schema
        except InvalidInput as exc:
            return await self.run_now_form(request, session, data_text=data_text, error=str(exc))
        # A key that cannot be read from this data would make a run that fails at once: ask again.
        planned = plan(config, Event(MANUAL_EVENT, dict(data or {})).to_dict(), None, time.time(),
                       trigger="manual")
        plan_error = getattr(planned, "plan_error", None)
        if plan_error:
            return await self.run_now_form(request, session, data_text=data_text,
                                           error="This data cannot start a run: " + _plan_error_text(plan_error))
        try:
            res = await self.api.within_deadline(lambda: admin.run_now(store, fid, data, actor=_actor(request, session)))
        except InvalidEvent as exc:  # the schema registered meanwhile refuses it: shown on the form
            return await self.run_now_form(request, session, data_text=data_text, error=str(exc))
        q = urlencode({"started": res["id"], "fn": fid})
        return RedirectResponse(f"{self._base(request)}/?{q}", status_code=303)

    # --- runs ----------------------------------------------------------------------------------

    async def runs(self, request: Request, session: dict, *, q: Any = None, **shown: Any) -> Response:
        """The ledger with its filters; ``q`` (the filters of a POST) and ``shown`` (a notice,
        a dry-run preview) when a bulk cancel renders it."""
        q = request.query_params if q is None else q
        now = time.time()
        status = q.get("status") or None
        if status and status not in RUN_STATUSES:
            raise InvalidInput(f"unknown status {status!r}")
        since = admin.parse_time(q.get("since") or None, name="since", now=now)
        until = admin.parse_time(q.get("until") or None, name="until", now=now)
        cursor = admin.decode_cursor(q["cursor"]) if q.get("cursor") else None
        if "\x00" in (q.get("tenant") or "") + (q.get("function") or ""):
            raise InvalidInput("the tenant and function filters must not contain NUL")
        rows = await aw((await self.store()).list_runs(
            status=status, function_id=q.get("function") or None, tenant=q.get("tenant") or None,
            since=since, until=until, cursor=cursor, limit=PAGE + 1))
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        waiting = await self._why_waiting([r for r in rows if r["status"] == "queued"], now)
        paused = await aw((await self.store()).paused_functions())
        items = [run_json(r) | {"started_ts": r.get("started_at"), "event_name": (r.get("event") or {}).get("name"),
                                "waiting": waiting.get(r["id"]), "paused": r["function_id"] in paused} for r in rows]
        next_q = None
        if more:
            params = {k: v for k, v in q.items() if k != "cursor" and v}
            params["cursor"] = admin.encode_cursor(rows[-1]["created_at"], rows[-1]["id"])
            next_q = urlencode(params)
        return self.render(request, session, "runs.html", runs=items, filters=dict(q), next_q=next_q,
                           first_q=urlencode({k: v for k, v in q.items() if k != "cursor" and v}),
                           live_q=urlencode({k: v for k, v in q.items() if v}),
                           cancellable=admin.CANCELLABLE, **shown)

    async def cancel_many(self, request: Request, session: dict) -> Response:
        """Cancel selected (the ticked runs), or cancel all matching the current filter: first
        a dry run that shows the count, then, confirmed, the cancel (both through admin)."""
        form = request.state.form
        filters = {k: str(form.get(f"filter_{k}") or "") for k in ("status", "function", "tenant", "since", "until")}
        if form.get("action") != "matching":
            res = await admin.cancel_runs(await self.store(), [str(x) for x in form.getlist("run")],
                                          actor=_actor(request, session))
            return await self.runs(request, session, q=filters, notice=res)
        if not filters["function"]:
            raise InvalidInput("cancel all matching needs a function filter: filter the runs by function first")
        now = time.time()
        confirm = bool(form.get("confirm"))
        res = await admin.bulk_cancel(
            await self.store(), function_id=filters["function"], status=filters["status"] or None,
            tenant=filters["tenant"] or None, since=admin.parse_time(filters["since"] or None, name="since", now=now),
            until=admin.parse_time(filters["until"] or None, name="until", now=now), limit=admin.MAX_LIST,
            dry_run=not confirm, actor=_actor(request, session))
        if confirm:
            return await self.runs(request, session, q=filters, notice={
                "count": res["count"], "runs": [r["id"] for r in res["runs"] if r["status"] == "cancelled"],
                "already_ended": res["already_ended"]})
        return await self.runs(request, session, q=filters, preview=res)

    async def run(self, request: Request, session: dict) -> Response:
        rid = request.path_params["id"]
        row = await aw((await self.store()).get_run(rid))
        if row is None:
            return self.render(request, session, "error.html", status=404, error=f"no run {rid!r}")
        run = run_json(row, detail=True)
        now = time.time()
        waiting = (await self._why_waiting([row], now)).get(rid)
        paused = (await aw((await self.store()).paused_functions())).get(row["function_id"])
        return self.render(request, session, "run.html", run=run, timeline=_timeline(row, now), waiting=waiting,
                           paused=paused,
                           live=run["status"] not in ("completed", "failed", "cancelled"))

    async def _why_waiting(self, rows: list[dict], now: float) -> dict[str, list[dict]]:
        """Why each unfinished run of ``rows`` is not running, from what the store records:
        its availability, retry backoff, throttle, debounce/batch window, the concurrency slots
        its keys need and who holds them, and the live workers that serve its function."""
        pending = [r for r in rows if r["status"] in ("queued", "sleeping", "waiting")]
        if not pending:
            return {}
        store = await self.store()
        paused = await aw(store.paused_functions())
        slots: dict[str, list[str]] | None = None
        served: set[str] | None = None
        live_workers = 0
        out: dict[str, list[dict]] = {}
        for r in pending:
            reasons: list[dict] = []
            if r["function_id"] in paused:
                reasons.append({"kind": "paused", "text": f"paused: function {r['function_id']} is paused "
                                "(Resume on the functions page releases its runs)"})
            steps = r.get("steps") or []
            at = r.get("available_at")
            if r["status"] in ("sleeping", "waiting"):
                step = next((x for x in steps if x["status"] in ("sleeping", "waiting")), None)
                what = {"sleep": "sleeping in step", "wait": "waiting for an event in step",
                        "invoke": "waiting for the run invoked by step"}.get(step["kind"] if step else "", r["status"])
                if step is not None:
                    what += f" {step['step_id']}"
                until = (step or {}).get("wake_at") or at
                then = {"sleep": ", wakes", "wait": ", times out"}.get(step["kind"] if step else "", ", until")
                reasons.append({"kind": r["status"], "text": what + (then if until else ""), "at": until})
                out[r["id"]] = reasons
                continue
            if r.get("gathering"):
                reasons.append({"kind": "gathering", "text": "gathering events (debounce/batch window) until",
                                "at": at})
            elif at is not None and at > now:
                if "steps" not in r:  # a list row: its steps say whether a step is in backoff
                    steps = ((await aw(store.get_run(r["id"]))) or {}).get("steps") or []
                retrying = next((x for x in steps if x["status"] == "retrying"), None)
                if retrying is not None:
                    log = [a for a in (retrying.get("log") or []) if a]
                    err = (log[-1].get("error") if log else None) or retrying.get("error") or {}
                    text = f"retry backoff: step {retrying['step_id']} failed attempt {len(log) or retrying.get('attempts')}"
                    if err:
                        text += f" ({err.get('name')}: {str(err.get('message') or '')[:120]})"
                    reasons.append({"kind": "backoff", "text": text + "; next attempt", "at": at})
                elif (r.get("attempt") or 0) > 0:
                    err = r.get("error") or {}
                    text = f"retry backoff: attempt {r['attempt']} failed"
                    if err:
                        text += f" ({err.get('name')}: {str(err.get('message') or '')[:120]})"
                    reasons.append({"kind": "backoff", "text": text + "; next attempt", "at": at})
                elif r.get("throttle") and r.get("started_at") is None and \
                        at > (r.get("sort_at") or at) + (r.get("priority") or 0) + 1e-6:
                    key = (r["throttle"] if isinstance(r["throttle"], list) else json.loads(r["throttle"]))[0]
                    reasons.append({"kind": "throttled", "text": f"throttled (key {key}) until", "at": at})
                else:
                    reasons.append({"kind": "scheduled", "text": "scheduled for", "at": at})
            else:
                for key, cap in (r.get("ckeys") or []):
                    if slots is None:
                        slots = {}
                        for s in await aw(store.list_slots()):
                            slots.setdefault(s["key"], []).append(s["run_id"])
                    holders = [x for x in slots.get(key, []) if x != r["id"]]
                    if len(holders) >= int(cap):
                        reasons.append({"kind": "concurrency",
                                        "text": f"concurrency key {key} is full ({len(holders)}/{int(cap)}), held by",
                                        "runs": holders[:10]})
                if served is None:
                    report = await aw(store.health(now, self.api.settings.lease_seconds))
                    served = {f for w in report["workers"] for f in (w.get("functions") or [])}
                    live_workers = len(report["workers"])
                if r["function_id"] not in served:
                    reasons.append({"kind": "no_worker", "text": (
                        f"no live worker serves function {r['function_id']}" if live_workers else
                        "no live worker: start one (durably worker APP, or durably dev APP)")})
                if not reasons:
                    reasons.append({"kind": "ready", "text": "ready: waiting for a worker to claim it"})
            if r.get("start_deadline") and r.get("started_at") is None:
                reasons.append({"kind": "deadline", "text": "cancelled if not started by", "at": r["start_deadline"]})
            out[r["id"]] = reasons
        return out

    async def cancel(self, request: Request, session: dict) -> Response:
        rid = request.path_params["id"]
        await admin.cancel_run(await self.store(), rid, actor=_actor(request, session))
        return RedirectResponse(f"{self._base(request)}/runs/{rid}", status_code=303)

    async def replay(self, request: Request, session: dict) -> Response:
        res = await admin.replay_run(await self.store(), request.path_params["id"], actor=_actor(request, session))
        return RedirectResponse(f"{self._base(request)}/runs/{res['id']}", status_code=303)

    async def rerun(self, request: Request, session: dict) -> Response:
        """Rerun from here: a new run whose steps before this one come from this run's memo,
        with the event data of the form (pre-filled with this run's)."""
        form = request.state.form
        data_text = str(form.get("data") or "").strip()
        data = _json_object(data_text, "event data") if data_text else None
        res = await admin.rerun_from_step(await self.store(), request.path_params["id"], str(form.get("step") or ""),
                                          data, actor=_actor(request, session))
        return RedirectResponse(f"{self._base(request)}/runs/{res['id']}", status_code=303)

    # --- failures ------------------------------------------------------------------------------

    async def _failure_groups(self) -> list[dict]:
        rows = await aw((await self.store()).list_runs(status="failed", limit=1000))
        groups: dict[tuple, dict] = {}
        for r in rows:
            err = r.get("error") or {}
            message = (err.get("message") or "")[:300]
            key = (r["function_id"], err.get("name") or "Error", mask_message(message))
            g = groups.get(key)
            if g is None:
                g = groups[key] = {"function_id": key[0], "error_name": key[1], "message": key[2], "count": 0,
                                   "runs": [], "last": 0.0, "reasons": set(), "examples": [],
                                   "key": hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]}
            g["count"] += 1
            g["runs"].append(r["id"])
            g["last"] = max(g["last"], r.get("finished_at") or r["created_at"])
            g["reasons"].add(r.get("terminal_reason") or "")
            if message not in g["examples"] and len(g["examples"]) < 3:
                g["examples"].append(message)
        out = sorted(groups.values(), key=lambda g: (-g["count"], -g["last"]))
        for g in out:
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
            replayed.append((await admin.replay_run(store, rid, actor=_actor(request, session)))["id"])
        return self.render(request, session, "failures.html", groups=await self._failure_groups(), preview=None,
                           replayed=replayed)

    # --- events --------------------------------------------------------------------------------

    async def events(self, request: Request, session: dict, *, form_error: str | None = None,
                     form: dict | None = None) -> Response:
        q = request.query_params
        cursor = admin.decode_cursor(q["cursor"]) if q.get("cursor") else None
        rows = await aw((await self.store()).list_events(name=q.get("name") or None, cursor=cursor,
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
            event.encode()
            audit = _actor(request, session).audit("send_event", event.id, name=name)
            res = await self.api.ingest_bounded([event.to_dict()], audit)
        except InvalidInput as exc:  # shown on the form; an outage is the 503 page
            return await self.events(request, session, form_error=str(exc), form=values)
        return RedirectResponse(f"{self._base(request)}/events/{res.ids[0]}", status_code=303)

    async def event(self, request: Request, session: dict) -> Response:
        eid = request.path_params["id"]
        row = await aw((await self.store()).get_event(eid))
        if row is None:
            return self.render(request, session, "error.html", status=404, error=f"no event {eid!r}")
        return self.render(request, session, "event.html", event=event_json(row))

    # --- pause, resume, the audit log ---------------------------------------------------------

    async def pause(self, request: Request, session: dict) -> Response:
        fid = request.path_params["id"]
        skip = bool(request.state.form.get("skip"))
        await admin.pause(await self.store(), fid, skip=skip, actor=_actor(request, session))
        return RedirectResponse(f"{self._base(request)}/", status_code=303)

    async def resume(self, request: Request, session: dict) -> Response:
        await admin.resume(await self.store(), request.path_params["id"], actor=_actor(request, session))
        return RedirectResponse(f"{self._base(request)}/", status_code=303)

    async def audit(self, request: Request, session: dict) -> Response:
        page = await admin.audit_log(await self.store(), limit=PAGE, cursor=request.query_params.get("cursor") or None)
        return self.render(request, session, "audit.html", entries=page["entries"], next_cursor=page["next_cursor"])

    # --- health --------------------------------------------------------------------------------

    async def health(self, request: Request, session: dict) -> Response:
        from starlette.concurrency import run_in_threadpool

        from ...health import collect

        store = await self.api.try_store()
        report = await run_in_threadpool(collect, self.api.settings, store)
        chart = None
        if store is not None:
            now = time.time()
            rows = await aw(store.finished_per_minute(now - 3600))
            chart = _chart(rows)
        return self.render(request, session, "health.html", report=report, chart=chart)


def _actor(request: Request, session: dict) -> admin.Actor:
    """Who acts, for the audit log: the session's role and the client's address."""
    return admin.Actor(Sessions.role(session), request.client.host if request.client else None)


def _here(request: Request) -> str:
    """The path and query of this request: where to come back to after logging in."""
    q = request.url.query
    return request.url.path + (f"?{q}" if q else "")


def _same_site(nxt: str, default: str) -> str:
    """``nxt`` if it is a path (and query) on this site, else ``default``: no open redirect.

    Browsers read ``/\\host`` like ``//host`` and drop tabs and newlines, so those are refused too.
    """
    if (not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt
            or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in nxt)):
        return default
    return nxt


def _status_of(exc: DurablyError) -> int:
    """The API's status for the error: bad input 400, not found 404, conflict 409, the store
    unreachable 503 (never shown as the user's mistake)."""
    from ..http import status_of

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


def routes(api: "Api") -> list:
    return Dashboard(api).routes()
