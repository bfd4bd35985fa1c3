"""The records that cross the store's boundary: runs to create, claimed runs, step and wait
writes, the outcome of an ingest."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class NewRun:
    """A run to create."""

    id: str
    function_id: str
    event: dict
    trigger: str = "event"
    tenant: str = "global"
    events: list[dict] | None = None
    delay: float = 0.0  # seconds from now until claimable
    priority: float = 0.0  # seconds ahead in the queue (negative: behind)
    ckeys: list[list] | None = None  # [[slot key, limit], ...]
    keys: list[tuple[str, str, float]] = field(default_factory=list)  # (scope, key, ttl) unique
    idempotency_key: str | None = None
    parent_run_id: str | None = None
    parent_step_id: str | None = None
    replay_of: str | None = None
    start_timeout: float | None = None
    plan_error: str | None = None  # a key expression failed on the event: the run fails with this
    finish_timeout: float | None = None
    throttle: list | None = None  # [gcra key, interval, tolerance]: delays the first start
    rate_limit: list | None = None  # [gcra key, interval, tolerance]: no run when over
    debounce: dict | None = None  # {"key", "period", "timeout"}
    batch: dict | None = None  # {"key", "max_size", "timeout"}
    singleton: dict | None = None  # {"key", "mode"}
    cancel_on: list[dict] = field(default_factory=list)  # [{"event", "match_path", "match_value", "if", "timeout"}]


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
    event: dict
    events: list[dict] | None
    attempt: int
    lease_gen: int
    started_at: float
    created_at: float
    resumed: bool
    now: float  # the store's clock at claim
    parent_run_id: str | None = None
    finish_deadline: float | None = None
    steps: list[dict] = field(default_factory=list)
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
    skipped: list[dict] = field(default_factory=list)
