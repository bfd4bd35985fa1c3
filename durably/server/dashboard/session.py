"""Dashboard sessions: the admin token (role ``operator``) or the viewer token (role
``viewer``, read-only) buys a signed, HttpOnly, SameSite=Strict cookie that names the role;
every form POST carries a CSRF token bound to that session."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "durably_session"
MAX_AGE = 12 * 3600
ASCII_WHITESPACE = " \t\n\r\x0b\x0c"


class Sessions:
    def __init__(self, env: str, admin_token: bytes | None, secret_key: str | None,
                 viewer_token: bytes | None = None):
        if secret_key:
            key = secret_key.encode()
        elif admin_token:
            # Derived from the token: sessions survive restarts and end when the token changes.
            key = hmac.new(admin_token, b"durably dashboard session", hashlib.sha256).digest()
        else:
            key = secrets.token_bytes(32)  # dev without a token: per process
        self.env = env
        self.admin_token = admin_token
        self.viewer_token = viewer_token
        self._signer = URLSafeTimedSerializer(key, salt=f"durably-dashboard:{env}")
        self._csrf_key = hmac.new(key, b"csrf", hashlib.sha256).digest()

    @property
    def open(self) -> bool:
        """No admin token (allowed only in dev): the dashboard needs no login."""
        return self.admin_token is None

    def check_token(self, token: str) -> str | None:
        """The role of the token pasted into the login form (``operator`` for the admin token,
        ``viewer`` for the viewer token, None for neither): ASCII whitespace around it is
        trimmed (a pasted newline), nothing else (a trailing NBSP is a wrong token)."""
        if self.admin_token is None:
            return None
        given = token.strip(ASCII_WHITESPACE).encode("utf-8", "surrogateescape")
        if hmac.compare_digest(given, self.admin_token):
            return "operator"
        if self.viewer_token is not None and hmac.compare_digest(given, self.viewer_token):
            return "viewer"
        return None

    def new(self, authenticated: bool, role: str = "operator") -> tuple[str, dict]:
        data = {"sid": secrets.token_urlsafe(16), "auth": authenticated, "env": self.env, "role": role}
        return self._signer.dumps(data), data

    @staticmethod
    def role(session: dict) -> str:
        """The session's role: a viewer only reads."""
        return "viewer" if session.get("role") == "viewer" else "operator"

    def read(self, cookie: str | None) -> dict | None:
        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie, max_age=MAX_AGE)
        except BadSignature:
            return None
        return data if isinstance(data, dict) and data.get("env") == self.env else None

    def csrf(self, session: dict) -> str:
        return hmac.new(self._csrf_key, session["sid"].encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: dict | None, token: object) -> bool:
        """Whether ``token`` (a form field: text, a file upload, or missing) is this session's."""
        if not session or not isinstance(token, str) or not token:
            return False
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
        return hmac.compare_digest(self.csrf(session).encode(), token.encode("utf-8", "surrogatepass"))
