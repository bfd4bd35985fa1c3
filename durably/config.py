"""Settings read from the environment (``DURABLY_*``); CLI flags override them.

Eighteen typed fields, read here by hand rather than with pydantic-settings: importing
pydantic costs every worker process and every CLI command about 0.3 s of start-up (half
of it, on a small machine), and a worker that starts in 0.3 s instead of 0.6 s matters
where workers come and go with the load. The HTTP API, which validates request bodies,
still uses pydantic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

from .errors import ConfigError


class Secret:
    """A secret setting: its value only through ``get_secret_value()``; printed as stars."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __str__(self) -> str:
        return "**********" if self._value else ""

    def __repr__(self) -> str:
        return f"Secret('{self}')"


# --- parsers: a raw value (a string from the environment, or a typed override) -> the value --


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"must be a string, not {type(v).__name__}")
    return v


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        s = v.strip().lower()
        if s in ("1", "true", "t", "yes", "y", "on"):
            return True
        if s in ("0", "false", "f", "no", "n", "off"):
            return False
    raise ValueError(f"must be true or false, not {v!r}")


def _float(v: Any) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    try:
        return float(_str(v).strip())
    except ValueError:
        raise ValueError(f"must be a number, not {v!r}") from None


def _int(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    try:
        return int(_str(v).strip())
    except ValueError:
        raise ValueError(f"must be a whole number, not {v!r}") from None


def _secret(v: Any) -> Secret:
    return v if isinstance(v, Secret) else Secret(_str(v))


def _env_name(v: Any) -> str:
    v = _str(v).strip()
    if not v or not all(c.isalnum() or c in "-_." for c in v):
        raise ValueError("must be letters, digits, '-', '_' or '.'")
    return v


def _synchronous(v: Any) -> str:
    v = _str(v).strip().lower()
    if v not in ("full", "normal", "extra", "off"):
        raise ValueError("must be 'full' or 'normal'")
    return v


def _event_loop(v: Any) -> str:
    v = _str(v).strip().lower()
    if v not in ("auto", "asyncio", "uvloop"):
        raise ValueError(f"must be 'auto', 'asyncio' or 'uvloop', not {v!r}")
    return v


def _log_format(v: Any) -> str:
    v = _str(v).strip().lower()
    if v not in ("text", "json"):
        raise ValueError(f"must be 'text' or 'json', not {v!r}")
    return v


def _prune_after(v: Any) -> str | None:
    v = _str(v).strip()
    if not v:
        return None
    from .core.durations import parse_duration

    try:
        seconds = parse_duration(v, name="DURABLY_PRUNE_AFTER")
    except Exception as exc:  # noqa: BLE001 - reported as a settings error
        raise ValueError(str(exc)) from None
    if seconds <= 0:
        raise ValueError("must be a positive duration such as 30d")
    return v


def _positive(v: Any) -> float:
    v = _float(v)
    if v <= 0:
        raise ValueError("must be > 0")
    return v


def _setting(default: Any, parse: Callable[[Any], Any], env: str | None = None) -> Any:
    return field(default=default, metadata={"parse": parse, "env": env})


@dataclass(frozen=True)
class Settings:
    database_url: str = _setting("sqlite:///.durably/durably.db", _str)
    redis_url: str | None = _setting(None, _str)
    env: str = _setting("dev", _env_name)
    event_key: Secret | None = _setting(None, _secret)
    admin_token: Secret | None = _setting(None, _secret)
    viewer_token: Secret | None = _setting(None, _secret)  # read-only API and dashboard (optional)
    cron_secret: Secret | None = _setting(None, _secret, env="CRON_SECRET")
    inline_fallback: bool = _setting(False, _bool)
    backlog_alert_seconds: float = _setting(300.0, _float)
    port: int = _setting(8288, _int)
    lease_seconds: float = _setting(30.0, _positive)
    sqlite_synchronous: str = _setting("full", _synchronous)
    status_key: str = _setting("durably:{env}:job:v1:{tenant}:{function}", _str)
    secret_key: Secret | None = _setting(None, _secret)
    prune_after: str | None = _setting(None, _prune_after)
    schema_: str = _setting("durably", _str, env="DURABLY_SCHEMA")
    event_loop: str = _setting("auto", _event_loop)
    log_format: str = _setting("text", _log_format)
    dispatch_timeout: float = _setting(2.0, _positive)
    production_env: str = _setting("production", _env_name)
    inngest_signing_key: Secret | None = _setting(None, _secret)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Build settings from ``environ`` (default: the process environment; names are
        not case-sensitive, other variables are ignored) and ``overrides`` (field names;
        ``None`` means not given)."""
        data = _from_environ(os.environ if environ is None else environ)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls._build(data)

    def replace(self, **overrides: Any) -> "Settings":
        """These settings with some fields changed (``None`` means unchanged), validated."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update({k: v for k, v in overrides.items() if v is not None})
        return self._build(data)

    @classmethod
    def _build(cls, data: dict[str, Any]) -> "Settings":
        if "schema" in data:  # the field is ``schema_``; ``schema`` is taken for it
            data["schema_"] = data.pop("schema")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            raw = data.pop(f.name)
            if raw is None:
                values[f.name] = None
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError as exc:
                raise ConfigError(f"invalid setting {_env_var(f)}: {exc}") from None
        if data:
            raise ConfigError(f"unknown setting {sorted(data)[0]!r}")
        return cls(**values)


def _env_var(f: Any) -> str:
    return f.metadata["env"] or "DURABLY_" + f.name.upper()


_BY_ENV_VAR = {_env_var(f): f.name for f in fields(Settings)}
# Also read under the prefixed name, when the variable the contract names is not set.
_ALSO = {"DURABLY_" + f.name.upper(): f.name for f in fields(Settings) if f.metadata["env"] and not f.name.endswith("_")}


def _from_environ(environ: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    also: dict[str, str] = {}
    for key, value in environ.items():
        upper = key.upper()
        name = _BY_ENV_VAR.get(upper)
        if name is not None:
            out[name] = value
        elif upper in _ALSO:
            also[_ALSO[upper]] = value
    return {**also, **out}


def masked_url(url: str) -> str:
    """A database URL without its password, for logs and messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))
