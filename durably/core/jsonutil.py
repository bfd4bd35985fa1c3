"""JSON encoding with the checks durably promises: serializable, and under a size limit."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import NotSerializable, PayloadTooLarge

MiB = 1024 * 1024
EVENT_MAX_BYTES = 1 * MiB
STEP_OUTPUT_MAX_BYTES = 4 * MiB

_OPTS = orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)  # pydantic models
    if callable(dump):
        return dump(mode="json")
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def dumps(value: Any, *, what: str = "value", limit: int | None = None) -> str:
    try:
        raw = orjson.dumps(value, default=_default, option=_OPTS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise NotSerializable(f"{what} is not JSON-serializable: {exc}") from None
    if limit is not None and len(raw) > limit:
        raise PayloadTooLarge(f"{what} is {len(raw):,} bytes, over the limit of {limit:,} bytes")
    return raw.decode()


def loads(text: str | bytes | None) -> Any:
    if text is None:
        return None
    return orjson.loads(text)
