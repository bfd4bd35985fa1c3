"""The records the ledger's reads return (``store.base.Ledger``), as typed dicts.

Each is a ``TypedDict``: a read still returns plain dicts (callers index them,
``run["status"]``, and serialize them as they are), and the keys and value types are
declared here once. JSON columns come back decoded (``event``, ``output``, ``error``,
``config``, ...); times are the store's clock, epoch seconds, except an event's own ``ts``
(milliseconds). Pure: no I/O.
"""

from __future__ import annotations

from typing import Any, TypedDict

JsonObject = dict[str, Any]
"""A decoded JSON object (an event, an error, a function's registry config)."""

FunctionConfig = JsonObject
"""A function's registry config as stored: ``FunctionDef.config()`` decoded from JSON."""


# --- runs and steps ----------------------------------------------------------------------------


class StepRecord(TypedDict):
    """A step of a run (``get_run(..., with_steps=True)["steps"]``), in ``seq`` order."""

    step_id: str
    kind: str  # StepKind
    status: str  # StepStatus
    seq: int
    attempts: int
    output: Any  # the step's JSON result, decoded
    error: JsonObject | None
    log: list[JsonObject] | None  # one entry per attempt
    started_at: float | None
    finished_at: float | None
    wake_at: float | None


class _RunColumns(TypedDict):
    """A run, every column of its row (``get_run``, ``list_runs``, ``replay_candidates``)."""

    id: str
    env: str
    function_id: str
    status: str  # RunStatus
    tenant: str
    trigger: str  # TriggerKind
    event_id: str | None
    event: JsonObject  # the trigger event
    events: list[JsonObject] | None  # a batch's events
    available_at: float
    sort_at: float
    priority: float
    created_at: float
    started_at: float | None
    finished_at: float | None
    attempt: int
    terminal_reason: str | None  # TerminalReason
    output: Any  # the run's JSON result, decoded
    error: JsonObject | None
    lease_owner: str | None
    lease_expires_at: float | None
    lease_gen: int
    ckeys: list[list[Any]] | None  # [[slot key, limit], ...]
    idempotency_key: str | None
    parent_run_id: str | None
    parent_step_id: str | None
    replay_of: str | None
    start_deadline: float | None
    finish_timeout: float | None
    finish_deadline: float | None
    throttle: str | None  # JSON text [key, interval, tolerance], as stored
    singleton_key: str | None
    gathering: int  # 1 while a debounce/batch run still takes events
    notify_end: bool  # app.result waits on it: its end is announced (watch_end)
    fair_key: str | None  # its function's Fairness key (claims take each key's oldest in turn)


class RunRecord(_RunColumns, total=False):
    """A run's columns, and its steps from ``get_run(..., with_steps=True)``."""

    steps: list[StepRecord]


class RunRef(TypedDict):
    """A run an event created (``EventRecord["runs"]``)."""

    id: str
    function_id: str
    status: str


class RunBrief(TypedDict):
    """The newest run of a function (``FunctionRecord["last_run"]``, ``["last_cron_run"]``)."""

    id: str
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None


# --- events and skips --------------------------------------------------------------------------


class EventSkip(TypedDict):
    """A function an event created no run for, on purpose (``EventDetail["skipped"]``)."""

    function_id: str
    reason: str
    created_at: float


class SkipRecord(EventSkip):
    """A skip of the ledger (``list_skips``)."""

    event_id: str


class EventRecord(TypedDict):
    """A received event and the runs it created (``list_events``)."""

    id: str
    name: str
    ts: int  # the event's own time, ms
    received_at: float
    event: JsonObject  # the whole event
    runs: list[RunRef]


class EventDetail(EventRecord):
    """One event (``get_event``): also the functions it skipped."""

    skipped: list[EventSkip]


# --- functions ---------------------------------------------------------------------------------


class CronRecord(TypedDict):
    schedule: str  # "expr|tz"
    last_tick: float


class FunctionRecord(TypedDict):
    """A registered function with its recent activity (``list_functions``)."""

    id: str
    app_id: str
    config: FunctionConfig
    updated_at: float
    last_run: RunBrief | None
    cron: list[CronRecord]
    stats_24h: dict[str, int]  # runs created since ``since``, by status


class FunctionOverview(FunctionRecord):
    """``functions_overview``: a function and, for a cron function, its newest cron run."""

    last_cron_run: RunBrief | None


# --- status, slots -----------------------------------------------------------------------------


class StatusBlob(TypedDict):
    """The status blob of (tenant, function) (``get_status``; DESIGN §5)."""

    status: str
    runId: str
    startedAt: str | None
    finishedAt: str | None
    durationMs: int | None
    attempt: int
    lastError: str | None


class SlotRecord(TypedDict):
    """A concurrency slot held by a run (``list_slots``)."""

    key: str
    run_id: str


# --- health and metrics ------------------------------------------------------------------------


class WorkerRecord(TypedDict):
    """A worker that heartbeated within the window."""

    id: str
    host: str
    pid: int
    functions: list[str]
    concurrency: int
    started_at: float
    heartbeat_at: float


class BacklogEntry(TypedDict):
    """Ready runs of a function waiting to be claimed (``HealthSnapshot["backlog"]``)."""

    function_id: str
    n: int
    oldest_age_s: float  # how long the oldest has been ready


class HealthSnapshot(TypedDict):
    """``health``: backlog, live workers, expired leases and run counts, in one snapshot."""

    backlog: list[BacklogEntry]
    workers: list[WorkerRecord]
    stale_leases: int  # running runs whose lease has expired
    counts: dict[str, int]  # runs by status


class BacklogRow(TypedDict):
    """Ready runs of a function (``MetricsSnapshot["backlog"]``)."""

    function_id: str
    n: int
    oldest: float  # available_at of the oldest


class RunCount(TypedDict):
    """Runs of a function in a status (``MetricsSnapshot["runs"]``)."""

    function_id: str
    status: str
    n: int
    started: int  # how many of them started
    retries: int  # their retried failures, summed


class StepHistogram(TypedDict):
    """Durations (or attempts) of a function's finished ``step.run`` steps."""

    buckets: list[int]  # counts per ``reads.STEP_BUCKETS`` (ATTEMPT_BUCKETS) upper bound, then +Inf
    sum: float  # seconds (attempts)


class MetricsSnapshot(TypedDict):
    """``metrics``: everything ``/metrics`` derives from the ledger, in one snapshot."""

    runs: list[RunCount]
    dead_letters: dict[str, int]  # failed runs never replayed, by function
    steps: dict[str, StepHistogram]  # by function
    step_attempts: dict[str, StepHistogram]  # attempts of finished step.run steps, by function
    step_retries: dict[str, int]  # by function
    backlog: list[BacklogRow]
    workers: int  # live workers
    stale_leases: int


class FinishedBucket(TypedDict):
    """Runs that finished in a status within one minute (``finished_per_minute``)."""

    bucket: int  # minutes since ``since``
    status: str
    n: int


class PausedRecord(TypedDict):
    """A paused function (``paused_functions``): ``mode`` is ``queue`` or ``skip``."""

    function_id: str
    mode: str
    paused_at: float


class AuditRecord(TypedDict):
    """One row of the audit log (``list_audit``): an operator's action."""

    id: str
    env: str
    at: float
    role: str
    action: str
    target: str | None
    params: dict[str, Any]
    client: str | None


__all__ = [
    "PausedRecord", "AuditRecord",
    "JsonObject", "FunctionConfig", "StepRecord", "RunRecord", "RunRef", "RunBrief", "EventSkip", "SkipRecord",
    "EventRecord", "EventDetail", "CronRecord", "FunctionRecord", "FunctionOverview", "StatusBlob", "SlotRecord",
    "WorkerRecord", "BacklogEntry", "HealthSnapshot", "BacklogRow", "RunCount", "StepHistogram", "MetricsSnapshot",
    "FinishedBucket",
]
