"""The records that cross the store's boundary: runs to create (with the typed flow-control
specs ``core.flow`` planned for them), claimed runs, step and wait writes, the outcome of an
ingest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


# --- flow-control specs of a planned run (evaluated keys; what the store enforces) ----------


@dataclass(frozen=True)
class Slot:
    """A concurrency slot the run must hold while it runs: at most ``limit`` holders of ``key``."""

    key: str
    limit: int

    def to_json(self) -> list[Any]:
        return [self.key, self.limit]


@dataclass(frozen=True)
class UniqueKey:
    """A key only one run may take within ``ttl`` seconds (``kind``: what it is for)."""

    kind: Literal["idempotency"]
    scope: str  # "idempotency:<function id>"
    key: str
    ttl: float


@dataclass(frozen=True)
class Gcra:
    """A generic cell rate limit on ``key``: one start per ``interval``, ``tolerance`` of burst."""

    key: str
    interval: float
    tolerance: float

    def to_json(self) -> list[Any]:
        return [self.key, self.interval, self.tolerance]


@dataclass(frozen=True)
class DebounceSpec:
    key: str
    period: float
    timeout: float | None = None


@dataclass(frozen=True)
class BatchSpec:
    key: str
    max_size: int
    timeout: float


@dataclass(frozen=True)
class SingletonSpec:
    key: str
    mode: Literal["skip", "cancel"] = "skip"


@dataclass(frozen=True)
class CancelSpec:
    """Cancel the run when an ``event`` arrives whose ``match_path`` equals ``match_value``."""

    event: str
    match_path: str | None
    match_value: str | None  # JSON text of the trigger event's value at match_path
    if_: str | None = None
    timeout: float | None = None


@dataclass
class NewRun:
    """A run to create."""

    id: str
    function_id: str
    event: dict[str, Any]
    trigger: str = "event"
    tenant: str = "global"
    fair_key: str | None = None  # the function's Fairness key for this run (None: no fair share)
    events: list[dict[str, Any]] | None = None
    delay: float = 0.0  # seconds from now until claimable
    priority: float = 0.0  # seconds ahead in the queue (negative: behind)
    slots: list[Slot] = field(default_factory=list)  # concurrency
    unique_keys: list[UniqueKey] = field(default_factory=list)  # idempotency
    idempotency_key: str | None = None
    parent_run_id: str | None = None
    parent_step_id: str | None = None
    replay_of: str | None = None
    start_timeout: float | None = None
    plan_error: str | None = None  # a key expression failed on the event: the run fails with this
    finish_timeout: float | None = None
    throttle: Gcra | None = None  # delays the first start
    rate_limit: Gcra | None = None  # no run when over
    debounce: DebounceSpec | None = None
    batch: BatchSpec | None = None
    singleton: SingletonSpec | None = None
    cancel_on: list[CancelSpec] = field(default_factory=list)
    # Rerun from a step: (original run id, seq) - the new run's memo starts with the original's
    # finished steps recorded before that seq, copied in the transaction that creates the run.
    memo_of: tuple[str, int] | None = None


@dataclass
class Skip:
    """An event that, on purpose, creates no run for a function."""

    function_id: str
    reason: str


@dataclass
class ClaimedRun:
    id: str
    function_id: str
    tenant: str
    trigger: str
    event: dict[str, Any]
    events: list[dict[str, Any]] | None
    attempt: int
    lease_gen: int
    started_at: float
    created_at: float
    resumed: bool
    now: float  # the store's clock at claim
    parent_run_id: str | None = None
    finish_deadline: float | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    mono: float | None = None  # this host's monotonic clock when ``now`` was read (same process only)
    holds: bool = True  # may hold concurrency slots or waits, to be freed when it ends


@dataclass
class StepWrite:
    step_id: str
    kind: str  # run sleep wait send invoke
    status: str  # completed failed retrying sleeping waiting
    seq: int
    attempts: int = 0
    output: str | None = None  # JSON text
    error: str | None = None  # JSON text
    attempt_log: str | None = None  # JSON text of this attempt, appended to the step's log
    started_at: float | None = None
    finished_at: float | None = None
    wake_at: float | None = None


@dataclass
class WaitWrite:
    step_id: str
    kind: str  # wait | cancel
    event_name: str
    match_path: str | None
    match_value: str | None  # JSON text
    if_expr: str | None
    expires_at: float | None
    since: float | None = None  # store time the wait began: events received since then count


@dataclass
class IngestResult:
    ids: list[str]
    runs: list[str]
    duplicates: list[str]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    # Functions whose ``if_`` filter was false for an event: not a skip (nothing is recorded),
    # but what ``durably send`` tells as the reason it started no run of them.
    filtered: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Audit:
    """The audit row of an operator's action, written by the store in the transaction that
    performs the action (so an action that fails leaves no row). ``role`` is ``operator``,
    ``viewer`` or ``cli``; ``client`` the caller's address (None from the CLI)."""

    role: str
    action: str
    target: str | None
    params: dict[str, Any] = field(default_factory=dict)
    client: str | None = None
