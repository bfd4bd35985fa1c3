"""Typed events: an event name's data schema (``on_event(name, schema=Model)``).

Two sides of one schema. In a process with the app's code, the schema is a pydantic
``TypeAdapter`` over what the user gave (a model, a TypedDict, a dataclass): ``app.send``
validates with it and ``ctx.event.model`` is parsed with it. Everywhere else (the HTTP API,
the CLI, the store's ingest transaction) only the JSON Schema the function registered is
known, and data is validated against it with ``jsonschema``, without importing user code.
Both name the failing field the same way: ``inbox.counts.recompute: data.clientId: Field
required``.

``example(schema)`` builds the data the dashboard's Run now form starts from.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any, Callable, Iterable

import orjson

from ..errors import InvalidEvent, InvalidInput

# --- the pydantic side (code loaded) ---------------------------------------------------------


def adapter_of(schema: Any, what: str) -> Any:
    """A pydantic ``TypeAdapter`` for ``schema``, or InvalidInput saying why it cannot be one."""
    from pydantic import PydanticUserError, TypeAdapter

    try:
        return TypeAdapter(schema)
    except (PydanticUserError, TypeError, ValueError) as exc:
        raise InvalidInput(f"{what}: schema must be a pydantic model, a TypedDict or a dataclass "
                           f"(anything pydantic's TypeAdapter takes), got {schema!r}: {exc}") from None


def json_schema_of(adapter: Any, what: str) -> dict[str, Any]:
    """The JSON Schema of ``adapter``'s type (what is registered with the function)."""
    try:
        schema = adapter.json_schema()
    except Exception as exc:  # noqa: BLE001 - pydantic raises several kinds for types without a JSON Schema
        raise InvalidInput(f"{what}: the schema has no JSON Schema ({exc})") from None
    if not isinstance(schema, dict) or schema.get("type") not in (None, "object"):
        raise InvalidInput(f"{what}: the schema must describe a JSON object (an event's data), "
                           f"not {schema.get('type')!r}")
    return schema


def _path(loc: Iterable[Any]) -> str:
    out = "data"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def check_model(adapter: Any, event_name: str, data: Any, where: str = "") -> Any:
    """``data`` parsed by ``adapter``; InvalidEvent naming the event and the first failing field."""
    from pydantic import ValidationError

    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InvalidEvent(f"{where}{event_name}: {_path(err.get('loc', ()))}: {err['msg']}") from None


# --- the JSON Schema side (no code) ----------------------------------------------------------


def schema_hash(schema: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def same_schema(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    if a is None or b is None:
        return a is b
    return schema_hash(a) == schema_hash(b)


_VALIDATORS: dict[tuple[str, str], Any] = {}
_VALIDATORS_MAX = 1024
_lock = threading.Lock()


def validator(function_id: str, schema: dict[str, Any]) -> Any:
    """The compiled validator of a registered schema, cached per (function, schema hash)."""
    key = (function_id, schema_hash(schema))
    found = _VALIDATORS.get(key)
    if found is not None:
        return found
    from jsonschema import validators
    from jsonschema.exceptions import SchemaError

    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise InvalidInput(f"function {function_id!r}: its registered event schema is not a JSON Schema: "
                           f"{exc.message}") from None
    made = cls(schema)
    with _lock:
        if len(_VALIDATORS) >= _VALIDATORS_MAX:
            _VALIDATORS.clear()
        _VALIDATORS[key] = made
    return made


def problem(validator_: Any, data: Any) -> str | None:
    """The first problem of ``data`` against a compiled validator (``data.clientId: Field
    required``), or None when it validates."""
    from jsonschema.exceptions import relevance

    errors = list(validator_.iter_errors(data))
    if not errors:
        return None
    # As pydantic does: the first field in the schema's order, then the most relevant error.
    order = {k: i for i, k in enumerate((validator_.schema.get("properties") or {}))}
    first = min(order.get(_top_field(e), len(order)) for e in errors)
    err = max((e for e in errors if order.get(_top_field(e), len(order)) == first), key=relevance)
    path = _path(err.absolute_path)
    if err.validator == "required" and isinstance(err.instance, dict):
        missing = [k for k in err.validator_value if k not in err.instance]
        if missing:
            return f"{path}.{missing[0]}: Field required"
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        known = set((err.schema or {}).get("properties") or {})
        extra = [k for k in err.instance if k not in known]
        if extra:
            return f"{path}.{extra[0]}: Extra inputs are not permitted"
    return f"{path}: {err.message}"


def _top_field(err: Any) -> Any:
    """The top-level field an error is about (the missing one, for a ``required`` at the top)."""
    if err.absolute_path:
        return err.absolute_path[0]
    if err.validator == "required" and isinstance(err.instance, dict):
        return next((k for k in err.validator_value if k not in err.instance), None)
    return None


def check(function_id: str, schema: dict[str, Any], event_name: str, data: Any, where: str = "") -> None:
    """InvalidEvent unless ``data`` validates against ``function_id``'s registered schema."""
    checker(function_id, schema)(event_name, data, where)


def checker(function_id: str, schema: dict[str, Any]) -> Callable[[str, Any, str], None]:
    """``check`` of one registered schema, its validator looked up once (for a batch of events)."""
    compiled = validator(function_id, schema)

    def check_one(event_name: str, data: Any, where: str = "") -> None:
        value = data if data is not None else {}
        if compiled.is_valid(value):
            return
        found = problem(compiled, value)
        if found is not None:
            raise InvalidEvent(f"{where}{event_name}: {found}")

    return check_one


def typed_event(config: dict[str, Any]) -> str | None:
    """The name of a registered function's first typed event (whose schema is its ``event_schema``)."""
    for t in config.get("triggers") or []:
        if isinstance(t, dict) and isinstance(t.get("schema"), dict) and isinstance(t.get("event"), str):
            return str(t["event"])
    return None


def check_config(config: dict[str, Any], data: Any) -> None:
    """InvalidEvent unless ``data`` fits the registered function's ``event_schema`` (if it has
    one): the data of a manual run (Run now) or of an invoke."""
    schema = config.get("event_schema")
    if isinstance(schema, dict):
        check(str(config["id"]), schema, typed_event(config) or str(config["id"]), dict(data or {}))


# --- an example of the data ------------------------------------------------------------------

_FORMATS = {"date-time": "2026-01-01T00:00:00Z", "date": "2026-01-01", "time": "00:00:00", "email": "user@example.com",
            "uuid": "00000000-0000-0000-0000-000000000000", "uri": "https://example.com/", "duration": "PT0S"}


def example(schema: dict[str, Any]) -> Any:
    """Data that fills ``schema``: every required field with a placeholder of its type (or its
    default, enum, const or example), and optional fields that have a default."""
    return _example(schema, schema, 0)


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    for _ in range(32):
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return node
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            return {}
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        ref = target.get("$ref")
    return node


def _example(node: Any, root: dict[str, Any], depth: int) -> Any:
    if not isinstance(node, dict) or depth > 12:
        return None
    node = _resolve(node, root)
    for key in ("default", "const"):
        if key in node:
            return node[key]
    if node.get("enum"):
        return node["enum"][0]
    if node.get("examples") and isinstance(node["examples"], list):
        return node["examples"][0]
    for key in ("anyOf", "oneOf"):
        options = [o for o in node.get(key) or [] if isinstance(o, dict)]
        if options:
            usable = [o for o in options if _resolve(o, root).get("type") != "null"] or options
            return _example(usable[0], root, depth + 1)
    if node.get("allOf"):
        merged: dict[str, Any] = {}
        for part in node["allOf"]:
            merged.update(_resolve(part, root) if isinstance(part, dict) else {})
        return _example(merged, root, depth + 1)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in node):
        required = set(node.get("required") or [])
        out: dict[str, Any] = {}
        for name, prop in (node.get("properties") or {}).items():
            if name in required:
                out[name] = _example(prop, root, depth + 1)
            elif isinstance(prop, dict) and "default" in _resolve(prop, root):
                out[name] = _resolve(prop, root)["default"]
        return out
    if kind == "array":
        items = node.get("items")
        n = int(node.get("minItems") or 0)
        return [_example(items, root, depth + 1) for _ in range(min(n, 3))]
    if kind == "string":
        if node.get("format") in _FORMATS:
            return _FORMATS[node["format"]]
        return "x" * int(node.get("minLength") or 0)
    if kind in ("integer", "number"):
        low = node.get("minimum", node.get("exclusiveMinimum"))
        if isinstance(low, (int, float)):
            value = low + (1 if "minimum" not in node else 0)
            return int(value) if kind == "integer" else value
        return 0
    if kind == "boolean":
        return False
    return None
