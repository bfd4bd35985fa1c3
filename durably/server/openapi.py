"""``/openapi.json``, built from the route table and the pydantic models the handlers use.

Each operation's parameters come from its query model, its request body from its body
model, its responses from its declared statuses; the security of an operation is the key
this server actually requires for it (a route left open in ``dev`` declares none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from . import schemas
from .auth import ENV_HEADER, EVENT_KEY_HEADER, Keys

if TYPE_CHECKING:
    from .api import Op

REF = "#/components/schemas/{model}"
REASONS = {200: "OK", 201: "Created", 202: "Accepted", 400: "Invalid request (the message names the field)",
           401: "Missing or wrong credentials", 404: "Not found", 409: "Conflict (another env, or the run's state)",
           403: "Forbidden: the viewer token may only read", 413: "Payload too large",
           502: "The app could not be reached or refused the sync", 503: "Store (or Redis) unreachable"}
SECURITY: dict[str, list[dict[str, list[str]]]] = {"event": [{"eventKey": []}, {"eventKeyHeader": []}], "cron": [{"cronSecret": []}],
            "admin": [{"adminToken": []}]}


def _security(op: "Op", keys: Any) -> list[dict[str, list[str]]]:
    if not keys.required(op.auth):
        return []
    if op.auth == "admin" and op.method == "GET" and keys.viewer is not None:
        return [*SECURITY["admin"], {"viewerToken": []}]
    return SECURITY[op.auth]


def _models(ops: list["Op"]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    seen: dict[type[BaseModel], JsonSchemaMode] = {schemas.ErrorOut: "serialization", schemas.EventIn: "validation"}
    for op in ops:
        if isinstance(op.body, type) and issubclass(op.body, BaseModel):
            seen[op.body] = "validation"
        for _status, model, _desc in op.responses:
            if model is not None:
                seen[model] = "serialization"
    return list(seen.items())


def _strip_null(schema: dict) -> dict:
    """A query parameter is absent rather than null: drop the null branch of Optional[X]."""
    variants = schema.get("anyOf")
    if variants:
        rest = [v for v in variants if v.get("type") != "null"]
        if len(rest) == 1:
            out = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
            out.update(rest[0])
            return out
    return {k: v for k, v in schema.items() if not (k == "default" and v is None)}


def _query_parameters(model: type[BaseModel]) -> list[dict]:
    props = model.model_json_schema(ref_template=REF).get("properties", {})
    params = []
    for name, field in model.model_fields.items():
        schema = _strip_null(dict(props[name]))
        schema.pop("title", None)
        p: dict[str, Any] = {"name": name, "in": "query", "required": field.is_required(), "schema": schema}
        if field.description:
            p["description"] = field.description
        params.append(p)
    return params


def _json_objects(schema: Any) -> Any:
    """Event data and user: the recursive schema of a JSON object without NUL characters."""
    if isinstance(schema, dict):
        if schema.get(schemas.JSON_OBJECT_MARK):
            return dict(schemas.JSON_OBJECT_SCHEMA)
        return {k: _json_objects(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_json_objects(v) for v in schema]
    return schema


def build(ops: list["Op"], *, env: str, keys: Keys, version: str, server_url: str) -> dict:
    mapping, defs = models_json_schema(_models(ops), ref_template=REF)
    components: dict[str, Any] = {"schemas": defs.get("$defs", {})}
    components["schemas"] = _json_objects(components["schemas"])
    components["schemas"]["JsonValue"] = schemas.JSON_VALUE_SCHEMA
    components["schemas"]["EventsBody"] = {
        "description": "One event, or a list of 1 to 1000 events (sent in one transaction).",
        "anyOf": [{"$ref": REF.format(model="EventIn")},
                  {"type": "array", "items": {"$ref": REF.format(model="EventIn")}, "minItems": 1, "maxItems": 1000}],
    }
    components["securitySchemes"] = {
        "eventKey": {"type": "http", "scheme": "bearer", "description": "DURABLY_EVENT_KEY"},
        "eventKeyHeader": {"type": "apiKey", "in": "header", "name": EVENT_KEY_HEADER, "description": "DURABLY_EVENT_KEY"},
        "cronSecret": {"type": "http", "scheme": "bearer", "description": "CRON_SECRET"},
        "adminToken": {"type": "http", "scheme": "bearer", "description": "DURABLY_ADMIN_TOKEN"},
        "viewerToken": {"type": "http", "scheme": "bearer",
                        "description": "DURABLY_VIEWER_TOKEN: the admin routes that read (GET) only"},
    }
    components["parameters"] = {"Env": {
        "name": ENV_HEADER, "in": "header", "required": False, "schema": {"type": "string", "enum": [env]},
        "description": "If sent, must name this server's env; another env is refused with 409 and nothing is written.",
    }}
    env_header = {ENV_HEADER: {"description": "The env that served the request.", "required": True,
                               "schema": {"type": "string"}}}
    paths: dict[str, dict] = {}
    for op in ops:
        params: list[dict] = [{"$ref": "#/components/parameters/Env"}]
        for name, desc in op.path_params.items():
            params.append({"name": name, "in": "path", "required": True, "description": desc,
                           "schema": op.path_schemas.get(name, {"type": "string", "minLength": 1})})
        params.extend(_query_parameters(op.query))
        responses: dict[str, Any] = {}
        for status, model, desc in op.responses:
            content: dict[str, Any]
            if op.media_type == "application/json" or status >= 400:
                ref = mapping[(model, "serialization")] if model is not None else {}
                content = {"application/json": {"schema": ref}}
            else:
                content = {op.media_type.split(";")[0]: {"schema": {"type": "string"}}}
            responses[str(status)] = {"description": desc or REASONS.get(status, ""), "headers": env_header,
                                      "content": content}
        errors = [400, 409, *op.errors]
        if keys.required(op.auth):
            errors.append(401)
        if op.auth == "admin" and op.method != "GET" and keys.viewer is not None:
            errors.append(403)  # the viewer token is refused on every state-changing route
        for status in sorted(set(errors)):
            responses.setdefault(str(status), {
                "description": REASONS[status], "headers": env_header,
                "content": {"application/json": {"schema": mapping[(schemas.ErrorOut, "serialization")]}}})
        operation: dict[str, Any] = {"operationId": op.name, "summary": op.summary, "tags": [op.tag],
                                     "parameters": params, "responses": responses,
                                     "security": _security(op, keys)}
        if op.description:
            operation["description"] = op.description
        if op.body is not None:
            schema = ({"$ref": "#/components/schemas/EventsBody"} if op.body == "events"
                      else mapping[(cast("type[BaseModel]", op.body), "validation")])
            operation["requestBody"] = {"required": op.body_required,
                                        "content": {"application/json": {"schema": schema}}}
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "durably", "version": version,
                 "description": f"Events, cron dispatch, the run ledger and health of env '{env}'."},
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": components,
    }
