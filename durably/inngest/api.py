"""The endpoints the Inngest SDKs call, at the host root (the SDKs drop any path prefix).

- ``POST /fn/register``: the app's sync. Its functions become registry entries; answered as
  Inngest answers (``{"ok": true, "modified": bool}``; a refused sync is a 400 whose
  ``error`` is a string, which is what the TypeScript SDK reads).
- ``POST /e/{event_key}``: one event or a list, recorded by the same ingest as
  ``POST /api/v1/events``; answered ``{"ids": [...], "status": 200}``. The key is checked
  like ``DURABLY_EVENT_KEY`` (with no key configured, in dev, any key is accepted, as the
  SDKs' dev mode sends ``NO_EVENT_KEY_SET``).
- ``GET /v0/runs/{id}/batch`` and ``/actions``: a run's events and its memoized steps, for the
  SDK's ``use_api`` requests.
- ``POST /v1/checkpoint/{id}/async``: the TypeScript SDK's checkpointing, the steps one call
  ran so far, recorded by that call's driver (``driver.CHECKPOINTS``) before the answer. A
  call not in flight in this process is a 404 (the SDK then reports the steps in its answer);
  a run whose lease this process lost, a 409 (the SDK stops that call).

With ``DURABLY_INNGEST_SIGNING_KEY`` the app's requests must carry its key's bearer hash;
without it, outside dev, syncs are refused.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core.events import Event
from ..core.jsonutil import dumps
from ..errors import DurablyError, InvalidInput, LeaseLost
from ..steps import Interrupt
from .driver import CHECKPOINTS
from ..store.base import aw
from .signing import bearer_ok
from .sync import SyncError, translate
from .wire import hashed, memo_value, sdk_event

if TYPE_CHECKING:
    from ..server.api import Api

log = logging.getLogger("durably.inngest")

MAX_EVENTS = 5000  # Inngest's limit per request


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def routes(api: "Api") -> list[Route]:
    signing = api.settings.inngest_signing_key
    signing_key = signing.get_secret_value() if signing is not None else None

    async def register(request: Request) -> Response:
        if signing_key is not None:
            if not bearer_ok(request.headers.get("authorization"), signing_key):
                return _json({"ok": False, "status": 401,
                              "error": "the app's INNGEST_SIGNING_KEY is not DURABLY_INNGEST_SIGNING_KEY "
                                       "(or the sync is unsigned): sync refused"}, 401)
        elif api.settings.env != "dev":
            return _json({"ok": False, "status": 401,
                          "error": f"env {api.settings.env!r}: set DURABLY_INNGEST_SIGNING_KEY (the app's "
                                   "INNGEST_SIGNING_KEY) to sync SDK apps outside dev"}, 401)
        try:
            payload = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return _json({"ok": False, "status": 400, "error": f"malformed JSON: {exc}"}, 400)
        try:
            sync = translate(payload)
            runtime = await api.open()
            store = runtime.store
            before = await aw(store.registry())
            taken = sorted(c["id"] for c in sync.configs
                           if c["id"] in before and not (before[c["id"]] or {}).get("inngest"))
            if taken:  # never overwrite a native function's registry entry
                raise SyncError(f"function id(s) {', '.join(map(repr, taken))} belong to a durably app's "
                                "own functions: rename the SDK app or its functions")
            modified = any(before.get(c["id"]) != orjson.loads(dumps(c)) for c in sync.configs)
            if modified:
                await aw(store.register(sync.app_id, sync.configs))
            for hook in list(getattr(runtime, "inngest_hooks", ())):
                hook()
        except (SyncError, InvalidInput) as exc:
            log.warning("sync of %r refused: %s", payload.get("url") if isinstance(payload, dict) else None, exc)
            return _json({"ok": False, "status": 400, "error": str(exc)}, 400)
        except DurablyError as exc:
            return _json({"ok": False, "status": 503, "error": str(exc)}, 503)
        log.info("app %r synced from %s: %d function(s)%s", sync.app_id, sync.url, len(sync.configs),
                 "" if modified else " (unchanged)")
        return _json({"ok": True, "status": 200, "modified": modified, "app_id": sync.app_id})

    async def send(request: Request) -> Response:
        expected = api.keys.event
        key = request.path_params["event_key"].encode()
        if expected is not None and not hmac.compare_digest(key, expected):
            return _json({"ids": [], "status": 401, "error": "Event key not found"}, 401)
        try:
            body = orjson.loads(await request.body())
            events = _events(body)
            if any(e["name"].startswith("durably/") for e in events):
                raise InvalidInput("event names starting with 'durably/' are reserved for durably's own events")
            result = await api.ingest(events)
        except orjson.JSONDecodeError as exc:
            return _json({"ids": [], "status": 400, "error": f"malformed JSON: {exc}"}, 400)
        except InvalidInput as exc:
            return _json({"ids": [], "status": 400, "error": str(exc)}, 400)
        except DurablyError as exc:
            return _json({"ids": [], "status": 503, "error": str(exc)}, 503)
        return _json({"ids": result.ids, "status": 200})

    async def run_data(request: Request) -> Response:
        """``use_api`` requests: a run's events (``batch``) or its memoized steps (``actions``)."""
        if signing_key is not None and not bearer_ok(request.headers.get("authorization"), signing_key):
            return _json({"error": "unauthorized"}, 401)
        if signing_key is None and api.settings.env != "dev":
            return _json({"error": "set DURABLY_INNGEST_SIGNING_KEY to serve SDK apps outside dev"}, 401)
        try:
            run = await aw((await api.store()).get_run(request.path_params["run_id"], with_steps=True))
        except DurablyError as exc:
            return _json({"error": str(exc)}, 503)
        if run is None or request.path_params["what"] not in ("batch", "actions"):
            return _json({"error": "not found"}, 404)
        if request.path_params["what"] == "batch":
            return _json([sdk_event(e) for e in (run["events"] or [run["event"]])])
        memo = {}
        for st in run.get("steps") or []:
            settled, value = memo_value(st["kind"], st["status"], st["output"], st["error"])
            if settled:
                memo[hashed(st["step_id"])] = value
        return _json(memo)

    async def checkpoint(request: Request) -> Response:
        """The steps a call of the TypeScript SDK ran so far (checkpointing)."""
        if signing_key is not None and not bearer_ok(request.headers.get("authorization"), signing_key):
            return _json({"error": "unauthorized"}, 401)
        if signing_key is None and api.settings.env != "dev":
            return _json({"error": "set DURABLY_INNGEST_SIGNING_KEY to serve SDK apps outside dev"}, 401)
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return _json({"error": f"malformed JSON: {exc}"}, 400)
        steps = body.get("steps") if isinstance(body, dict) else None
        if not isinstance(steps, list) or not all(isinstance(st, dict) for st in steps) or \
                not isinstance(body.get("qi_id"), str):
            return _json({"error": "a checkpoint is {run_id, qi_id, steps: [ops]}"}, 400)
        try:
            found = await CHECKPOINTS.report(request.path_params["run_id"], body["qi_id"], steps)
        except LeaseLost as exc:
            return _json({"error": str(exc)}, 409)
        except Interrupt:  # the run suspends (a step to retry, a sleep): its call's answer says the rest
            found = True
        except Exception as exc:  # noqa: BLE001 - not recorded: the SDK reports the steps in its answer
            log.warning("checkpoint of run %s not recorded: %s", request.path_params["run_id"], exc)
            return _json({"error": f"not recorded: {exc}"}, 503)
        if not found:
            return _json({"error": "no call of this run is in flight on this server"}, 404)
        return _json({})

    return [Route("/fn/register", register, methods=["POST"]),
            Route("/v1/checkpoint/{run_id}/async", checkpoint, methods=["POST"]),
            Route("/e/{event_key}", send, methods=["POST"]),
            Route("/v0/runs/{run_id}/{what:str}", run_data, methods=["GET"])]


def _events(body: Any) -> list[dict]:
    items = body if isinstance(body, list) else [body]
    if not items:
        raise InvalidInput("no events")
    if len(items) > MAX_EVENTS:
        raise InvalidInput(f"{len(items)} events in one request; at most {MAX_EVENTS}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidInput(f"events[{i}]: must be an object")
        item = {k: v for k, v in item.items() if v is not None and not (k == "id" and v == "")}
        item.pop("v", None)
        try:
            e = Event.from_dict(item)
            e.encode()
        except InvalidInput as exc:
            raise InvalidInput(f"events[{i}]: {exc}") from None
        out.append(e.to_dict())
    return out
