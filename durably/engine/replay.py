"""Replay: what every execution path of a run agrees on, written once.

A run's function is called again on every attempt and its steps are matched to what earlier
attempts recorded. Three rules make that deterministic, and both execution paths (the
worker's ``executor.Execution`` and the emergency ``inline.InlineExecution``) take them
from here:

- ``StepIds``: a step's id is the id it was given, numbered on repetition in call order
  (``item``, ``item:1``, ``item:2``); a number an explicit id took already is skipped, so
  ``run("item:1")`` then ``run("item")`` twice gives ``item:1``, ``item``, ``item:2``.
- ``Memo``: a recorded step is found by its id and must be of the kind the code asks for
  now, and while the attempt is still replaying (steps recorded past this point are not
  reached yet) the code may not call a step the run never recorded: either is
  ``StepMismatch``, and the run fails with terminal reason ``nondeterminism`` naming the step
  (the code changed shape under a running run; ``ctx.patched`` is how a deploy changes it
  safely). Steps of ``parallel`` branches reach the memo in no fixed order and are exempt
  from the second rule.
- ``retry_delay``: after a failed attempt of a step (or of the body), whether it is tried
  again and when. Bad input to durably (``InvalidInput``) and ``NonRetriableError`` fail at
  once, the same for a step as for the body; ``RetryAfterError`` sets the delay; otherwise
  the function's ``Retry`` policy does, until its attempts are spent.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..errors import InvalidInput, NonRetriableError, RetryAfterError, StepMismatch
from ..functions import Retry

__all__ = ["StepIds", "Memo", "retry_delay", "fails_at_once"]


class StepIds:
    """Step ids in call order for one attempt of a run."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._used: set[str] = set()

    def next(self, id: str) -> str:
        if not isinstance(id, str) or not id:
            raise InvalidInput(f"a step id must be a non-empty string, got {id!r}")
        n = self._counts.get(id, 0)
        sid = id if n == 0 else f"{id}:{n}"
        while sid in self._used:  # an explicit id such as "item:1" took this name already
            n += 1
            sid = f"{id}:{n}"
        self._counts[id] = n + 1
        self._used.add(sid)
        return sid

    def reset(self) -> None:
        """A new call of the function body: ids are given out from the start again."""
        self._counts.clear()
        self._used.clear()


class Memo:
    """The steps earlier attempts recorded, by id; counts how many this attempt replayed."""

    def __init__(self, steps: Sequence[Mapping[str, Any]] | None = None):
        self.steps: dict[str, Mapping[str, Any]] = {s["step_id"]: s for s in steps or []}
        # Every recorded step was reached by an earlier attempt: the code before it is replay.
        self._to_replay = len(self.steps)
        self._replayed = 0
        self._reached: set[str] = set()

    @property
    def replaying(self) -> bool:
        """True until this attempt has reached every step recorded before it."""
        return self._replayed < self._to_replay

    def lookup(self, sid: str, kind: str, strict: bool = True) -> Mapping[str, Any] | None:
        """The recorded step ``sid``, or None for a new one; ``StepMismatch`` if it was recorded
        with another kind, or (``strict``) if it is new while recorded steps are still ahead."""
        m = self.steps.get(sid)
        if m is None:
            if strict and self.replaying:
                ahead = self.unreached()
                raise StepMismatch(
                    f"step {sid!r} is not in the run's history, yet the run recorded "
                    f"{', '.join(repr(s) for s in ahead[:3])}{' ...' if len(ahead) > 3 else ''} after this point: "
                    "the function's code changed under a running run (guard the change with ctx.patched)")
            return None
        if m["kind"] != kind:
            raise StepMismatch(
                f"step {sid!r} was recorded as a {m['kind']!r} step but is now a {kind!r} step: "
                "the function's code changed under a running run (guard the change with ctx.patched)"
            )
        if sid not in self._reached:
            self._reached.add(sid)
            self._replayed += 1
        return m

    def unreached(self) -> list[str]:
        """Recorded steps this attempt has not reached yet, in the order they were recorded."""
        return [sid for sid, s in sorted(self.steps.items(), key=lambda kv: kv[1].get("seq", 0))
                if sid not in self._reached]


def fails_at_once(exc: BaseException) -> bool:
    """Failures that are the same on every attempt: never retried."""
    return isinstance(exc, (NonRetriableError, InvalidInput))


def retry_delay(exc: BaseException, attempts: int, retry: Retry) -> float | None:
    """After ``attempts`` failed attempts (the last raising ``exc``): the delay in seconds
    before the next one, or None when it has failed for good."""
    if fails_at_once(exc) or attempts >= retry.attempts:
        return None
    return exc.after if isinstance(exc, RetryAfterError) else retry.delay(attempts)
