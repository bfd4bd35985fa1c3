"""durably: durable background jobs for Python."""

from .app import App, Function, RunResult, SendResult
from .context import Context
from .errors import (DurablyError, EventSchemaConflict, InvalidEvent, InvalidInput, NonRetriableError, RetryAfterError,
                     StepError, UnknownFunction)
from .core.events import Event
from .functions import (Batch, CancelOn, Concurrency, Debounce, Fairness, Priority, RateLimit, Retry, Singleton, Throttle,
                        Timeouts, on_cron, on_event)

from ._version import __version__

__all__ = [
    "App", "Function", "SendResult", "RunResult", "Context", "Event",
    "on_event", "on_cron",
    "Retry", "Concurrency", "Throttle", "RateLimit", "Debounce", "Batch", "Priority", "Singleton", "CancelOn",
    "Timeouts", "Fairness",
    "DurablyError", "InvalidInput", "InvalidEvent", "EventSchemaConflict", "NonRetriableError", "RetryAfterError",
    "StepError", "UnknownFunction",
]
