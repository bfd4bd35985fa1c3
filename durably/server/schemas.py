"""The shapes the HTTP API accepts and returns, as pydantic models.

Request models validate what the handlers receive (unknown fields, wrong types and
out-of-range values are a 400 naming the field); response models document what the
handlers return. ``openapi.py`` builds ``/openapi.json`` from these same models, so the
document and the handlers cannot drift apart.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from ..admin import MAX_LIST
from ..core.flow import TENANT_MAX
from ..core.events import EVENT_NAME_MAX, MAX_TS_MS, name_problem
from ..core.events import NAME_PATTERN as EVENT_NAME_GRAMMAR
from ..core.types import REPLAYABLE, RUN_STATUSES
from ..errors import InvalidInput
from ..inngest.apps import URL_MAX, URL_PATTERN, check_url

RunStatus = Literal["queued", "running", "sleeping", "waiting", "completed", "failed", "cancelled"]
Replayable = Literal["failed", "completed", "cancelled"]
Cancellable = Literal["queued", "running", "sleeping", "waiting"]
assert set(get_args(RunStatus)) == set(RUN_STATUSES) and set(get_args(Replayable)) == set(REPLAYABLE)

# A name or id: at most 256 characters, no NUL, and at least one character that is neither
# whitespace nor a control character (so it is never blank once trimmed).
NAME_PATTERN = r"^[^\x00]*[^\s\x00-\x1f][^\x00]*$"
# Event names sent through the API: the grammar of event names (core/events.py), and not in
# durably's own namespace. The cron endpoint's event_name in the URL path is the same.
EVENT_NAME_PATTERN = "^(?!durably/)" + EVENT_NAME_GRAMMAR[1:]
PATH_NAME_PATTERN = EVENT_NAME_PATTERN
# Any other text the store is asked to find: no NUL (PostgreSQL text cannot hold one).
TEXT_PATTERN = r"^[^\x00]*$"
# A page cursor encodes (time, id): room for an id of EVENT_ID_MAX characters of any script.
CURSOR_MAX = 4096
# A tenant filter takes every tenant a run can have (at most TENANT_MAX characters, checked
# where runs are created), and more: tenants stored before that limit existed stay findable.
TENANT_FILTER_MAX = 8192
assert TENANT_FILTER_MAX >= TENANT_MAX

DURATION_PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h|d|w))+$"
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _integral(value: Any) -> Any:
    """JSON has one number type: 5.0 is the integer 5 (as JSON Schema says), 5.5 is not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Integers in a range that also take 5.0 (JSON has one number type): constraints first, so the
# schema shows them.
Millis = Annotated[int, Field(ge=0, le=MAX_TS_MS), BeforeValidator(_integral)]
ListLimit = Annotated[int, Field(ge=1, le=MAX_LIST), BeforeValidator(_integral)]
Concurrency = Annotated[int, Field(ge=1, le=10_000), BeforeValidator(_integral)]


def _time_filter(value: str) -> str:
    if re.fullmatch(DURATION_PATTERN, value):
        return value
    if _RFC3339.fullmatch(value):
        try:
            datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
            return value
        except ValueError:
            pass
    raise ValueError("must be an RFC 3339 time such as 2025-01-31T09:00:00Z, or a duration ago such as 30m, 1h or 7d")


def _event_name(value: str) -> str:
    problem = name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


EventName = Annotated[str, AfterValidator(_event_name), WithJsonSchema({
    "type": "string", "minLength": 1, "maxLength": EVENT_NAME_MAX, "pattern": EVENT_NAME_PATTERN,
    "description": "1 to 256 characters: segments separated by '/' (none empty, '.' or '..'), without control "
                   "characters or whitespace at either end. Names starting with 'durably/' are reserved for "
                   "durably's own events.",
    "examples": ["inbox.counts.dirty", "app/user.created"]})]


def _app_url(value: str) -> str:
    try:
        return check_url(value)
    except InvalidInput as exc:
        raise ValueError(str(exc).removeprefix("url ").removeprefix("url: ")) from None


AppUrl = Annotated[str, AfterValidator(_app_url), WithJsonSchema({
    "type": "string", "minLength": 1, "maxLength": URL_MAX, "pattern": URL_PATTERN,
    "description": "The app's serve URL: http or https, a host name or address, an optional port and path.",
    "examples": ["http://127.0.0.1:3000/api/inngest"]})]


# Event data and user: a JSON object in which no key and no string holds a NUL character (no
# store can hold one; see core/events.py). Documented by a recursive schema (``JsonValue``,
# added to the document's components by openapi.py); checked where the event is encoded.
JSON_VALUE_REF = "#/components/schemas/JsonValue"
JSON_VALUE_SCHEMA = {
    "description": "A JSON value whose strings and keys hold no NUL character (\\u0000).",
    "anyOf": [{"type": "null"}, {"type": "boolean"}, {"type": "number"},
              {"type": "string", "pattern": TEXT_PATTERN},
              {"type": "array", "items": {"$ref": JSON_VALUE_REF}},
              {"type": "object", "propertyNames": {"pattern": TEXT_PATTERN},
               "additionalProperties": {"$ref": JSON_VALUE_REF}}]}
JSON_OBJECT_SCHEMA = {"type": "object", "propertyNames": {"pattern": TEXT_PATTERN},
                      "additionalProperties": {"$ref": JSON_VALUE_REF}}
JSON_OBJECT_MARK = "x-durably-json-object"  # openapi.py puts JSON_OBJECT_SCHEMA in its place
OptionalJsonObject = Annotated[dict[str, Any] | None, WithJsonSchema(
    {"anyOf": [{"type": "object", JSON_OBJECT_MARK: True}, {"type": "null"}]})]


TimeFilter = Annotated[str, AfterValidator(_time_filter), WithJsonSchema({
    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "pattern": DURATION_PATTERN}],
    "description": "An RFC 3339 time, or a duration ago such as 30m, 1h or 7d.",
    "examples": ["1h", "2025-01-31T09:00:00Z"]})]


class _Body(BaseModel):
    """Request bodies: JSON types are taken as they are (no coercion), unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True, regex_engine="python-re")


class _Query(BaseModel):
    """Query parameters arrive as text: numbers are parsed, unknown parameters refused."""

    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- requests ----------------------------------------------------------------------------------


class EventIn(_Body):
    """An event. ``id`` defaults to a new time-ordered id, ``ts`` to now (milliseconds)."""

    name: EventName
    data: OptionalJsonObject = Field(None, description="No key or string in it may hold a NUL character.")
    id: str | None = Field(None, max_length=256, pattern=NAME_PATTERN,
                           description="A second event with the same id within 24 h is accepted and triggers nothing.")
    ts: Millis | None = Field(None, description="Milliseconds since the epoch.")
    user: OptionalJsonObject = Field(None, description="No key or string in it may hold a NUL character.")


class InvokeIn(_Body):
    """"Run now": the data of the manual trigger event (``durably/function.run``)."""

    data: OptionalJsonObject = Field(None, description="No key or string in it may hold a NUL character.")


class AppIn(_Body):
    """An Inngest SDK app to sync, by its serve URL."""

    url: AppUrl


class BulkReplayIn(_Body):
    """Replay the finished runs of a function (oldest first); already replayed runs are left out."""

    function: str = Field(min_length=1, max_length=256, pattern=TEXT_PATTERN, description="Function id.")
    status: Replayable = "failed"
    since: TimeFilter | None = None
    until: TimeFilter | None = None
    limit: ListLimit = 100
    concurrency: Concurrency | None = Field(None,
                                    description="At most this many of these replays run at once, across all workers.")
    dry_run: bool = Field(False, description="List what would be replayed; create nothing.")
    tenant: str | None = Field(None, max_length=TENANT_FILTER_MAX, pattern=TEXT_PATTERN,
                               description="Only the runs of this tenant (any tenant a run can have).")


class BulkCancelIn(_Body):
    """Cancel the unfinished runs of a function that match every filter given (newest first)."""

    function: str = Field(min_length=1, max_length=256, pattern=TEXT_PATTERN, description="Function id.")
    status: Cancellable | None = Field(None, description="One unfinished status; all four when omitted.")
    since: TimeFilter | None = Field(None, description="Created at or after.")
    until: TimeFilter | None = Field(None, description="Created before.")
    tenant: str | None = Field(None, max_length=TENANT_FILTER_MAX, pattern=TEXT_PATTERN, description="Tenant.")
    if_: str | None = Field(None, alias="if", min_length=1, max_length=4096, pattern=TEXT_PATTERN,
                            description="CEL over the run's event, e.g. event.data.plan == 'free'.")
    limit: ListLimit = 100
    dry_run: bool = Field(False, description="List what would be cancelled; cancel nothing.")


class ReplayIn(_Body):
    """Optional: rerun from a step, or with new event data. Without a body the run is replayed whole."""

    from_step: str | None = Field(None, min_length=1, max_length=4096, pattern=TEXT_PATTERN,
                                  description="A step of the run: the steps before it are copied to the new run's "
                                              "memo (not run again); it and the steps after it run afresh.")
    data: OptionalJsonObject = Field(None, description="Replaces the trigger event's data for the new run. "
                                                       "No key or string may hold a NUL.")


class BackfillIn(_Body):
    """Fire each cron tick of [from, to] once (ticks already fired are skipped)."""

    from_: TimeFilter = Field(alias="from", description="The range's start (inclusive).")
    to: TimeFilter = Field(description="The range's end (inclusive); not in the future.")
    dry_run: bool = Field(False, description="List the ticks; fire nothing.")


class RunsQuery(_Query):
    status: RunStatus | None = None
    function: str | None = Field(None, max_length=256, pattern=TEXT_PATTERN, description="Function id.")
    tenant: str | None = Field(None, max_length=TENANT_FILTER_MAX, pattern=TEXT_PATTERN,
                               description="Tenant: any tenant a run can have (no NUL).")
    since: TimeFilter | None = Field(None, description="Runs created at or after this time.")
    until: TimeFilter | None = Field(None, description="Runs created before this time.")
    limit: int = Field(50, ge=1, le=MAX_LIST)
    cursor: str | None = Field(None, max_length=CURSOR_MAX, pattern=TEXT_PATTERN,
                               description="next_cursor of the previous page.")


class EventsQuery(_Query):
    name: str | None = Field(None, max_length=256, pattern=TEXT_PATTERN, description="Event name.")
    limit: int = Field(50, ge=1, le=MAX_LIST)
    cursor: str | None = Field(None, max_length=CURSOR_MAX, pattern=TEXT_PATTERN,
                               description="next_cursor of the previous page.")


class CronQuery(_Query):
    window: int = Field(60, ge=1, le=86400, description="Dispatch window in seconds: one event per window.")


class NoQuery(_Query):
    pass


# --- responses ---------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable: invalid_input, invalid_event (data that does not fit the event's "
                                  "schema), payload_too_large, unauthorized, not_found, store_unavailable, ...")
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


class SkipOut(_Out):
    event_id: str
    function_id: str
    reason: str


class SendOut(_Out):
    ids: list[str] = Field(description="The ids of the events, in order (duplicates included).")
    runs: list[str] = Field(description="The ids of the runs the events created.")
    duplicates: list[str] = Field(description="Event ids seen within 24 h: accepted, triggered nothing.")
    skipped: list[SkipOut] = Field(description="Functions that, on purpose, created no run for an event.")


class InlineRunOut(_Out):
    function_id: str
    run_id: str
    status: Literal["completed", "failed", "timeout"]
    output: Any = None
    error: Any = None


class CronOut(_Out):
    dispatchKey: str = Field(description="'{event_name}:{window_start}': one dispatch per key.")
    eventId: str = Field(description="'cron:{event_name}:{window_start}'.")
    duplicate: bool
    mode: Literal["dispatch", "inline"]
    window: int
    windowStart: str
    pings: int = Field(description="Pings received in this window so far (0 when not recorded, inline).")
    runs: list[str] = Field(description="Runs the first ping created (empty for a duplicate).")
    inline: list[InlineRunOut] | None = Field(None, description="Inline mode only: what ran in this request.")


class RunRef(_Out):
    id: str
    function_id: str
    status: RunStatus


class RunOut(_Out):
    id: str
    function_id: str
    status: RunStatus
    tenant: str
    trigger: str | None
    event_id: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    attempts: int
    terminal_reason: str | None
    duration_ms: int | None
    replay_of: str | None = None
    parent_run_id: str | None = None


class AttemptOut(_Out):
    attempt: int | None
    started_at: str | None
    finished_at: str | None
    error: Any = None


class StepOut(_Out):
    id: str
    kind: str
    status: str
    attempts: int
    started_at: str | None
    finished_at: str | None
    wake_at: str | None
    output: Any = None
    error: Any = None
    errors: list[Any]
    attempt_log: list[AttemptOut]


class RunDetailOut(RunOut):
    event: Any = None
    events: list[Any] | None = None
    output: Any = None
    error: Any = None
    steps: list[StepOut]


class RunsPage(_Out):
    runs: list[RunOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")


class CancelOut(_Out):
    id: str
    status: Literal["cancelled"]


class ReplayOut(_Out):
    id: str = Field(description="The new run.")
    replay_of: str
    function_id: str
    from_step: str | None = Field(None, description="A rerun from this step.")
    memo: list[str] | None = Field(None, description="The steps copied from the original (a rerun from a step).")


class BackfillTick(_Out):
    tick: str = Field(description="The tick's time (UTC).")
    cron: str
    tz: str
    fired: bool = Field(description="False when the tick had been fired before (or in a dry run).")
    run_id: str | None = None


class BackfillOut(_Out):
    dry_run: bool
    function_id: str
    ticks: list[BackfillTick]
    fired: int
    skipped: int
    runs: list[str]


class BulkReplayItem(_Out):
    id: str = Field(description="The original run.")
    status: str
    created_at: str | None
    error: Any = None
    replay_id: str | None = Field(description="The new run (null in a dry run).")


class BulkCancelItem(_Out):
    id: str
    status: str = Field(description="cancelled; in a dry run (or if it ended meanwhile), its status when matched.")
    tenant: str
    created_at: str | None


class BulkCancelOut(_Out):
    dry_run: bool
    function_id: str
    count: int = Field(description="Runs cancelled (in a dry run: that match).")
    runs: list[BulkCancelItem]
    already_ended: list[str] = Field(description="Matched, but ended before they could be cancelled.")


class BulkReplayOut(_Out):
    dry_run: bool
    function_id: str
    count: int = Field(description="Replays created (in a dry run: that would be created).")
    runs: list[BulkReplayItem]
    batch_id: str | None = Field(description="The concurrency key of this batch is 'replay:{batch_id}'.")
    concurrency: int | None


class AppOut(_Out):
    url: str
    synced: bool = Field(description="Always true: a sync that failed is a 502.")
    app_id: str
    modified: bool = Field(description="Whether the sync changed the registry (false when the app was synced as it is).")
    functions: list[str] = Field(description="The ids of the app's functions in the registry.")


class InvokeOut(_Out):
    id: str = Field(description="The new run.")
    function_id: str
    event_id: str


class LastRunOut(_Out):
    id: str
    status: RunStatus
    created_at: str | None
    started_at: str | None
    finished_at: str | None


class TriggerOut(_Out):
    event: str | None = None
    if_: str | None = Field(None, alias="if")
    cron: str | None = None
    tz: str | None = None
    description: str | None = Field(None, description="Cron only: a reading of the schedule.")
    next_run_at: str | None = Field(None, description="Cron only: the next tick.")
    overlap: Literal["allow", "skip", "buffer_one"] | None = Field(
        None, description="Cron only: a tick while the previous tick's run is open starts (allow), is skipped with "
                          "reason overlap (skip), or waits for it, one at most (buffer_one).")


class FunctionOut(_Out):
    id: str
    name: str
    app_id: str
    triggers: list[TriggerOut]
    next_run_at: str | None = Field(description="The next cron tick of any of its schedules.")
    last_run: LastRunOut | None
    last_status: RunStatus | None
    last_cron_run: LastRunOut | None
    stats_24h: dict[str, int] = Field(description="Runs created in the last 24 h, by status.")
    config: dict[str, Any]
    updated_at: str | None
    paused: bool = Field(False, description="Paused: none of its runs is claimed.")
    paused_mode: Literal["queue", "skip"] | None = Field(None, description="How it is paused.")
    event_schema: dict[str, Any] | None = Field(
        default=None, description="The JSON Schema of the function's event data (on_event(name, schema=...)), or null. "
                                  "POST /api/v1/events refuses an event of that name whose data does not validate "
                                  "(400 invalid_event), as does Run now.")


class FunctionsOut(_Out):
    functions: list[FunctionOut]


class EventOut(_Out):
    id: str
    name: str | None
    data: Any = None
    ts: int | None
    user: Any = None
    received_at: str | None
    runs: list[RunRef]


class EventSkipOut(_Out):
    function_id: str
    reason: str
    created_at: str | None


class EventDetailOut(EventOut):
    skipped: list[EventSkipOut]


class EventsPage(_Out):
    events: list[EventOut]
    next_cursor: str | None


class StatusOut(_Out):
    status: str
    runId: str
    startedAt: str | None
    finishedAt: str | None
    durationMs: int | None
    attempt: int
    lastError: Any = None


class HealthOut(_Out):
    ok: bool
    env: str
    store: dict[str, Any]
    redis: dict[str, Any] | None
    workers: list[dict[str, Any]] | None = None
    backlog: int | None = None
    oldest_queued_age_s: float | None = None
    stale_leases: int | None = None
    alerts: dict[str, bool] | None = None


# --- operators' controls: pause and resume, the audit log ---------------------------------------


class PauseIn(_Body):
    """Pause a function: none of its runs is claimed until it is resumed."""

    skip: bool = Field(False, description="New triggers are recorded as skipped (reason 'paused') instead of "
                                          "creating runs that wait in queued.")


class PauseOut(_Out):
    function_id: str
    paused: bool
    mode: Literal["queue", "skip"] | None = Field(description="How it is paused; null once resumed.")
    was_paused: bool = Field(description="Whether it was paused before this call.")


class AuditQuery(_Query):
    limit: int = Field(50, ge=1, le=MAX_LIST)
    cursor: str | None = Field(None, max_length=CURSOR_MAX, pattern=TEXT_PATTERN,
                               description="next_cursor of the previous page.")


class AuditEntryOut(_Out):
    id: str
    at: str = Field(description="When the action was performed (ISO 8601, UTC).")
    env: str
    role: Literal["operator", "viewer", "cli"]
    action: str = Field(description="run_now, send_event, cancel, bulk_cancel, replay, bulk_replay, pause, "
                                    "resume, prune, ...")
    target: str | None = Field(description="The run, function or event acted on.")
    params: dict[str, Any]
    client: str | None = Field(description="The client address of the request; null from the CLI.")


class AuditPage(_Out):
    entries: list[AuditEntryOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")
