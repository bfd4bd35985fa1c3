"""Who may call what: the event key, the cron secret, the admin token (the operator) and the
optional viewer token, and the env guard.

Roles: the admin token is the operator, allowed everything. ``DURABLY_VIEWER_TOKEN``, when
set, authenticates the admin routes that read (GET); a state-changing admin route answers
it 403 ``forbidden`` before reading its body, so a viewer's attempt changes nothing.

A key that is configured is always required, in every env. Only with ``DURABLY_ENV=dev``
may a key be unset, and then the routes it guards are open; outside ``dev`` a missing key
stops the server before it serves anything. Keys are compared in constant time, byte for
byte: only HTTP's own optional whitespace (space, tab) around a value is ignored.

Envs never mix: every env has its own keys, so a key of another env simply does not
match (401), and a request that says it is for another env (``X-Durably-Env``) is refused
(409) before anything is read or written.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request

from ..config import Settings
from ..errors import ConfigError, DurablyError

Kind = Literal["event", "cron", "admin", "none"]
Role = Literal["operator", "viewer"]
ENV_HEADER = "X-Durably-Env"
EVENT_KEY_HEADER = "X-Durably-Event-Key"

# What guards each kind of route, and the setting that configures it.
SETTINGS = {"event": ("event_key", "DURABLY_EVENT_KEY"), "cron": ("cron_secret", "CRON_SECRET"),
            "admin": ("admin_token", "DURABLY_ADMIN_TOKEN")}


class Unauthorized(DurablyError):
    """Missing or wrong credentials."""

    code = "unauthorized"


class Forbidden(DurablyError):
    """Authenticated, but the role may not do this (a viewer asking to change state)."""

    code = "forbidden"


class EnvMismatch(DurablyError):
    """The request is for another env."""

    code = "env_mismatch"


@dataclass(frozen=True)
class Keys:
    env: str
    event: bytes | None
    cron: bytes | None
    admin: bytes | None
    viewer: bytes | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "Keys":
        """The configured keys; outside ``dev``, a missing one is a ConfigError naming it."""
        values: dict[str, bytes | None] = {}
        missing = []
        for kind, (attr, var) in SETTINGS.items():
            secret = getattr(settings, attr)
            raw = secret.get_secret_value() if secret is not None else ""
            values[kind] = raw.encode() if raw else None
            if not raw:
                missing.append(var)
        if missing and settings.env != "dev":
            raise ConfigError(
                f"DURABLY_ENV={settings.env} requires {', '.join(missing)} to be set (only DURABLY_ENV=dev may "
                "run with open routes)")
        viewer = settings.viewer_token.get_secret_value() if settings.viewer_token is not None else ""
        return cls(env=settings.env, event=values["event"], cron=values["cron"], admin=values["admin"],
                   viewer=viewer.encode() if viewer else None)

    def required(self, kind: Kind) -> bool:
        return kind != "none" and getattr(self, kind) is not None

    def open_kinds(self) -> list[str]:
        return [k for k in SETTINGS if getattr(self, k) is None]


# The optional whitespace HTTP itself allows around a header value (RFC 9110 §5.6.3): space
# and tab, nothing else. A credential with any other character around it (NBSP, NEL, a
# zero-width space) is a different credential.
_OWS = " \t"


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.strip(_OWS).partition(" ")
    token = token.strip(_OWS)
    return token if scheme.lower() == "bearer" and token else None


def _matches(given: str | None, expected: bytes) -> bool:
    """Byte for byte, in constant time. Header values arrive decoded as Latin-1, so encoding
    them back as Latin-1 gives exactly the bytes that were sent (a UTF-8 key matches a UTF-8
    header); nothing is normalized, case-folded or stripped here."""
    if given is None:
        return False
    try:
        raw = given.encode("latin-1")
    except UnicodeEncodeError:  # not from the wire (a header value is always Latin-1 here)
        raw = given.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(raw, expected)


def check_env(request: Request, env: str) -> None:
    """Refuse a request addressed to another env (checked before anything else)."""
    claimed = request.headers.get(ENV_HEADER)
    if claimed is not None and claimed != env:
        raise EnvMismatch(f"this server serves env {env!r}; the request is for env {claimed!r}")


def authorize(request: Request, keys: Keys, kind: Kind) -> Role:
    """The caller's role; Unauthorized unless the request carries the credential that ``kind``
    needs. The viewer token is accepted for the admin routes (as role ``viewer``): whether it
    may do what it asks is for ``require_operator``."""
    bearer = _bearer(request)
    viewer = kind == "admin" and keys.viewer is not None and _matches(bearer, keys.viewer)
    if not keys.required(kind):
        return "viewer" if viewer else "operator"
    expected: bytes = getattr(keys, kind)
    event_key = request.headers.get(EVENT_KEY_HEADER)
    if kind == "event" and event_key is not None and _matches(event_key.strip(_OWS), expected):
        return "operator"
    if _matches(bearer, expected):
        return "operator"
    if viewer:
        return "viewer"
    what = {"event": "event key (DURABLY_EVENT_KEY)", "cron": "cron secret (CRON_SECRET)",
            "admin": "admin token (DURABLY_ADMIN_TOKEN)"}[kind]
    raise Unauthorized(f"missing or wrong {what} of env {keys.env!r}: send 'Authorization: Bearer <key>'")


def require_operator(role: str, what: str) -> None:
    """Refuse (403) a viewer's attempt to change state."""
    if role != "operator":
        raise Forbidden(f"the viewer token (DURABLY_VIEWER_TOKEN) may only read: {what} needs the admin token "
                        "(DURABLY_ADMIN_TOKEN)")
