"""Statuses, kinds and reasons: each defined once, as a string enum (a member equals its value)."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SLEEPING = "sleeping"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"
    SLEEPING = "sleeping"
    WAITING = "waiting"
    CANCELLED = "cancelled"  # open (sleeping, waiting, retrying) when its run was cancelled or timed out


class StepKind(StrEnum):
    RUN = "run"
    SLEEP = "sleep"
    WAIT = "wait"
    SEND = "send"
    INVOKE = "invoke"
    PATCH = "patch"  # ctx.patched's marker: the run took the new path of a change


class TriggerKind(StrEnum):
    EVENT = "event"
    CRON = "cron"
    INVOKE = "invoke"
    MANUAL = "manual"
    REPLAY = "replay"


class TerminalReason(StrEnum):
    COMPLETED = "completed"
    RETRIES_EXHAUSTED = "retries_exhausted"
    NON_RETRIABLE = "non_retriable"
    TIMEOUT = "timeout"
    START_TIMEOUT = "start_timeout"
    EXPRESSION_ERROR = "expression_error"
    CANCELLED = "cancelled"
    NONDETERMINISM = "nondeterminism"  # a replay met a step of another kind, or one never recorded


class SkipReason(StrEnum):
    """Why a trigger created no run, as the ledger records it (codes; other skips carry a sentence)."""

    RATE_LIMITED = "rate_limited"
    INVALID_TENANT = "invalid_tenant"
    OVERLAP = "overlap"
    PAUSED = "paused"  # the function is paused in skip mode (durably functions pause ID --skip)


PAUSE_MODES: tuple[str, ...] = ("queue", "skip")
RUN_STATUSES: tuple[str, ...] = tuple(s.value for s in RunStatus)
TERMINAL: tuple[str, ...] = (RunStatus.COMPLETED.value, RunStatus.FAILED.value, RunStatus.CANCELLED.value)
PENDING: tuple[str, ...] = (RunStatus.QUEUED.value, RunStatus.SLEEPING.value, RunStatus.WAITING.value)
REPLAYABLE: tuple[str, ...] = TERMINAL
