"""The five events of the inbox system and their payloads (seed 004's ``EventSchemas``).

The app validates what it sends with these models before sending. Once durably's
``on_event(name, schema=Model)`` is available, each trigger in ``jobs.py`` names its model so
that every sender (the API, the CLI) is checked against it too.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

import durably

INBOX_COUNTS_DIRTY = "inbox.counts.dirty"
INBOX_COUNTS_RECOMPUTE = "inbox.counts.recompute"
ANALYTICS_RECOMPUTE = "analytics.aggregates.recompute"
PROCESS_REQUESTED = "background/process.requested"
MAINTENANCE_REQUESTED = "background/maintenance.requested"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")


class InboxCounts(_Payload):
    """``inbox.counts.dirty`` and ``inbox.counts.recompute`` (seed 001's contract)."""

    clientId: str = Field(min_length=1, max_length=200)  # noqa: N815 - the wire names
    requestId: str = Field(min_length=1, max_length=200)  # noqa: N815
    source: str = Field(min_length=1, max_length=100)
    priority: int | None = Field(default=None, ge=-600, le=600)


class InboxCountsDirty(InboxCounts):
    pass


class InboxCountsRecompute(InboxCounts):
    pass


class AnalyticsRecompute(_Payload):
    """``analytics.aggregates.recompute``: one client, or every active one without ``clientId``."""

    clientId: str | None = Field(default=None, min_length=1, max_length=200)  # noqa: N815
    requestId: str | None = Field(default=None, max_length=200)  # noqa: N815
    source: str = Field(default="api", min_length=1, max_length=100)
    priority: int | None = Field(default=None, ge=-600, le=600)


class BackgroundRequested(_Payload):
    """``background/process.requested`` and ``background/maintenance.requested`` (cron windows)."""

    source: Literal["cron", "manual", "api"] = "cron"
    dispatch_key: str | None = None
    window_start: str | None = None
    window: int | None = None


class ProcessRequested(BackgroundRequested):
    pass


class MaintenanceRequested(BackgroundRequested):
    pass


SCHEMAS: dict[str, type[BaseModel]] = {
    INBOX_COUNTS_DIRTY: InboxCountsDirty,
    INBOX_COUNTS_RECOMPUTE: InboxCountsRecompute,
    ANALYTICS_RECOMPUTE: AnalyticsRecompute,
    PROCESS_REQUESTED: ProcessRequested,
    MAINTENANCE_REQUESTED: MaintenanceRequested,
}


def event(name: str, data: dict, *, id: str | None = None) -> durably.Event:
    """A durably Event whose data was checked against ``name``'s model (pydantic's
    ValidationError, a 400 in the API, if it does not fit)."""
    model = SCHEMAS[name].model_validate(data)
    return durably.Event(name, model.model_dump(exclude_none=True), id=id)
