"""The functions one process knows: its own code, and every function's config in the store.

A process that loads an App (a worker, ``durably dev``, ``app.asgi()``, a test) holds that
App's ``FunctionDef``s and can execute them; ``durably server`` holds none. Either way any
function's config (what its workers registered) can be looked up in the store's registry,
so a server without user code plans runs, fires cron ticks and invokes functions by id.
"""

from __future__ import annotations

import concurrent.futures as cf
from typing import Any, Mapping

from ..functions import FunctionDef
from ..store.base import aw


class Registry:
    """Local ``FunctionDef``s (``functions`` is read live: an App's dict, so functions
    declared after the registry was made are known too) plus the store's registry."""

    def __init__(self, store: Any, functions: Mapping[str, FunctionDef] | None = None, *,
                 app_id: str | None = None, status_key: str | None = None):
        self.store = store
        self.status_key = status_key  # the status-key template this process writes with, registered beside each function
        self.local: Mapping[str, FunctionDef] = functions if functions is not None else {}
        self.app_id = app_id
        self._registered: frozenset[str] = frozenset()  # the local ids last written to the store

    def get(self, function_id: str) -> FunctionDef | None:
        """This process's code for ``function_id``, or None (registered elsewhere, or unknown)."""
        return self.local.get(function_id)

    @property
    def version(self) -> int:
        """Changes when the set of local functions changes (an App's never does once running)."""
        return getattr(self.local, "version", 0)

    def ids(self) -> list[str]:
        """The ids of the functions this process can execute, sorted."""
        return sorted(self.local)

    async def function_config(self, function_id: str) -> dict | None:
        """Any function's config: this process's own, else what the store's registry holds."""
        fdef = self.local.get(function_id)
        if fdef is not None:
            return fdef.config()
        return await aw(self.store.get_function(function_id))

    async def configs(self) -> dict[str, dict]:
        """Every function registered in the store (this env), by id."""
        return await aw(self.store.registry())

    def pending(self) -> tuple[str, list[dict]] | None:
        """What ``register`` would write now (app id, configs), or None when nothing is due."""
        if frozenset(self.local) == self._registered or self.app_id is None:
            return None
        return self.app_id, [f.config() for f in self.local.values()]

    def register(self) -> cf.Future | None:
        """Write the local functions to the store's registry, unless they are there already.

        Returns the write's future (None when there is nothing to write): sync callers take
        ``.result()``, async ones ``await aw(...)``.
        """
        ids = frozenset(self.local)
        if ids == self._registered or self.app_id is None:
            return None
        written: cf.Future = cf.Future()

        def settle(fut: cf.Future) -> None:
            exc = fut.exception()
            if exc is not None:
                written.set_exception(exc)
                return
            self._registered = ids
            written.set_result(None)

        extra = {"status_key": self.status_key} if self.status_key else {}
        configs = [{**f.config(), **extra} for f in self.local.values()]
        self.store.register(self.app_id, configs).add_done_callback(settle)
        return written
