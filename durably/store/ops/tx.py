"""The transaction the store verbs' bodies run in, and what every body shares."""

from __future__ import annotations

from typing import Any, Callable, Protocol

from ...core import blobs

KEY_TTL = 86400.0


class Tx(Protocol):
    env: str

    @property
    def now(self) -> float: ...

    status_in_store: bool
    woke: bool
    ended: bool

    def one(self, name: str, /, **params: Any) -> Any: ...
    def all(self, name: str, /, **params: Any) -> list[Any]: ...
    def exec(self, name: str, /, **params: Any) -> int: ...
    def all_many(self, calls: list[tuple[str, dict]]) -> list[list[Any]]: ...
    def exec_at_commit(self, name: str, /, **params: Any) -> None: ...
    def stage_status(self, tenant: str, function_id: str, make_blob: Callable[[], dict]) -> None: ...


def stage_blob(tx: Tx, tenant: str, function_id: str, status: str, run_id: str, started: float | None,
               finished: float | None, attempt: int, error: Any) -> None:
    """Stage the status blob of (tenant, function): the dialect writes the last one staged at
    commit, to its table or, with Redis, to the status sink once the transaction committed."""
    tx.stage_status(tenant or "global", function_id,
                    lambda: blobs.blob(status, run_id, started, finished, attempt, error))
