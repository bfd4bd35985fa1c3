"""Settings read from the environment (``DURABLY_*``); CLI flags override them."""

from __future__ import annotations

from typing import Mapping

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DURABLY_", extra="ignore", case_sensitive=False)

    database_url: str = "sqlite:///.durably/durably.db"
    redis_url: str | None = None
    env: str = "dev"
    event_key: SecretStr | None = None
    admin_token: SecretStr | None = None
    cron_secret: SecretStr | None = Field(default=None, validation_alias="CRON_SECRET")
    inline_fallback: bool = False
    backlog_alert_seconds: float = 300.0
    port: int = 8288
    lease_seconds: float = 30.0
    sqlite_synchronous: str = "full"
    status_key: str = "durably:{env}:job:v1:{tenant}:{function}"
    secret_key: SecretStr | None = None
    prune_after: str | None = None
    schema_: str = Field(default="durably", validation_alias="DURABLY_SCHEMA")

    @field_validator("env")
    @classmethod
    def _env(cls, v: str) -> str:
        v = v.strip()
        if not v or not all(c.isalnum() or c in "-_." for c in v):
            raise ValueError("DURABLY_ENV must be letters, digits, '-', '_' or '.'")
        return v

    @field_validator("sqlite_synchronous")
    @classmethod
    def _sync(cls, v: str) -> str:
        v = v.strip().lower()
        if v not in ("full", "normal", "extra", "off"):
            raise ValueError("DURABLY_SQLITE_SYNCHRONOUS must be 'full' or 'normal'")
        return v

    @field_validator("prune_after")
    @classmethod
    def _prune_after(cls, v: str | None) -> str | None:
        if v is None or not str(v).strip():
            return None
        from .durations import parse_duration

        try:
            seconds = parse_duration(str(v).strip(), name="DURABLY_PRUNE_AFTER")
        except Exception as exc:  # noqa: BLE001 - reported as a settings error
            raise ValueError(str(exc)) from None
        if seconds <= 0:
            raise ValueError("DURABLY_PRUNE_AFTER must be a positive duration such as 30d")
        return str(v).strip()

    @field_validator("lease_seconds")
    @classmethod
    def _lease(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("DURABLY_LEASE_SECONDS must be > 0")
        return v

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Build settings from ``environ`` (default: the process environment) and overrides."""
        try:
            if environ is not None:
                data = {}
                for k, v in environ.items():
                    ku = k.upper()
                    if ku == "CRON_SECRET":
                        data["CRON_SECRET"] = v
                    elif ku == "DURABLY_SCHEMA":
                        data["DURABLY_SCHEMA"] = v
                    elif ku.startswith("DURABLY_"):
                        data[ku[len("DURABLY_"):].lower()] = v
                data.update({k: v for k, v in overrides.items() if v is not None})
                return _from_mapping(cls, data)
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err.get("loc", ()))
            raise ConfigError(f"invalid setting {loc.upper() or ''}: {err.get('msg')}") from None


def _from_mapping(cls: type[Settings], data: dict) -> Settings:
    # Isolate from os.environ: build a subclass that reads nothing from the environment.
    class _Isolated(cls):  # type: ignore[misc, valid-type]
        model_config = SettingsConfigDict(env_prefix="DURABLY_NONE_ISOLATED_", extra="ignore", populate_by_name=True)

    return _Isolated(**data)
