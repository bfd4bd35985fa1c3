"""durably's HTTP server: the API (``create_app``), auth, metrics."""

from .api import create_app

__all__ = ["create_app"]
