"""Errors durably raises, and the ones user code raises to steer retries.

Every durably error has a stable ``code``; the HTTP API reuses it in
``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import os
import traceback
from typing import Any


class DurablyError(Exception):
    """Base class of every error durably raises."""

    code = "durably_error"

    def __init__(self, message: str | None = None):
        super().__init__(message or (self.__doc__ or self.code).strip().splitlines()[0])

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(DurablyError):
    """The configuration is invalid."""

    code = "config_error"


class InvalidInput(DurablyError):
    """The input is invalid."""

    code = "invalid_input"


class UnstorableInput(InvalidInput):
    """The store cannot hold a value of the input (a NUL character, text that is not valid
    Unicode, a number out of range, a value too large for an index): bad input, not an outage."""

    code = "invalid_input"


class PayloadTooLarge(InvalidInput):
    """A payload is over its size limit."""

    code = "payload_too_large"


class NotSerializable(InvalidInput):
    """A value is not JSON-serializable."""

    code = "not_serializable"


class ExpressionError(InvalidInput):
    """A CEL expression does not compile, or failed on an event."""

    code = "expression_error"


class InvalidEvent(InvalidInput):
    """An event's data does not validate against the schema its functions declared
    (``on_event(name, schema=...)``); the message names the event and the field."""

    code = "invalid_event"


class EventSchemaConflict(InvalidInput):
    """Two functions declare different schemas for one event name."""

    code = "event_schema_conflict"


class DuplicateFunction(InvalidInput):
    """Two functions share one id."""

    code = "duplicate_function"


class UnknownFunction(DurablyError):
    """No function is registered with that id."""

    code = "unknown_function"


class NotFound(DurablyError):
    """The object does not exist."""

    code = "not_found"


class StoreUnavailable(DurablyError):
    """The store cannot be reached."""

    code = "store_unavailable"


class StoreMissing(DurablyError):
    """There is no store where the settings point (only dev, worker, server and migrate create one)."""

    code = "store_missing"


class LeaseLost(DurablyError):
    """The run's lease was taken over by another worker; this worker's writes were rejected."""

    code = "lease_lost"


class StepMismatch(DurablyError):
    """On resume, a step id was recorded with another kind: the function's code changed shape."""

    code = "step_mismatch"


# --- raised by user code -------------------------------------------------------------------


class NonRetriableError(Exception):
    """Raise from a step or a function to fail at once, without retries."""

    def __init__(self, message: str = "non-retriable error", *, cause: BaseException | None = None):
        super().__init__(message)
        if cause is not None:
            self.__cause__ = cause


class RetryAfterError(Exception):
    """Raise to be retried after ``after`` (a duration) instead of the computed backoff."""

    def __init__(self, message: str, after: Any):
        from .core.durations import parse_duration

        super().__init__(message)
        self.after = parse_duration(after)


class StepError(Exception):
    """A step failed for good (retries exhausted or non-retriable); raised inside the function.

    The function may catch it and go on; uncaught, the run fails.
    """

    def __init__(self, step_id: str, error: dict):
        self.step_id = step_id
        self.error = error
        self.non_retriable = bool(error.get("non_retriable"))
        super().__init__(f"step {step_id!r} failed: {error.get('name', 'Error')}: {error.get('message', '')}")


def error_dict(exc: BaseException) -> dict:
    """The JSON form of an exception kept in the ledger.

    Its ``stack`` is the traceback as Python prints it, chained exceptions included, without
    durably's own frames (the user's code is what a reader needs). A step that failed for good
    and failed the run: the step's own error comes first, as a cause does.
    """
    stack = _stack(exc)
    if isinstance(exc, StepError) and exc.error.get("stack") and exc.__context__ is None and exc.__cause__ is None:
        # Raised from the memo on a later attempt: the step's error is not chained any more.
        stack = (f"{exc.error['stack'].rstrip()}\n\nThe above exception failed step {exc.step_id!r} for good, "
                 f"which raised:\n\n{stack}")
    out: dict[str, Any] = {
        "name": type(exc).__name__,
        "message": str(exc),
        "stack": stack[-8000:],
    }
    if isinstance(exc, NonRetriableError):
        out["non_retriable"] = True
    if isinstance(exc, StepError):
        out["step_id"] = exc.step_id
        out["non_retriable"] = exc.non_retriable
    return out


_STDLIB = os.path.dirname(os.path.abspath(os.__file__))
# durably's own frames, and the machinery that runs steps (the event loop, the thread pool).
_HIDDEN = (os.path.dirname(os.path.abspath(__file__)) + os.sep, os.path.join(_STDLIB, "asyncio") + os.sep,
           os.path.join(_STDLIB, "concurrent") + os.sep, os.path.join(_STDLIB, "threading.py"))


def _stack(exc: BaseException) -> str:
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    seen: set[int] = set()
    todo: list[traceback.TracebackException] = [te]
    while todo:
        t = todo.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        t.stack = traceback.StackSummary.from_list(
            [f for f in t.stack if not os.path.abspath(f.filename).startswith(_HIDDEN)])
        todo.extend(x for x in (t.__cause__, t.__context__) if x is not None)
    return "".join(te.format())
