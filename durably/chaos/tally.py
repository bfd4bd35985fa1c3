"""The battery's verdict, computed from data recorded outside the engine (pure: no I/O).

* lost: a run that did not complete, plus each step of a completed run whose effect is missing;
* double-applied: an execution of a step that started after the execution the engine committed
  had ended (a committed step run again), plus an effect of a step no completed run has;
* re-executions: executions beyond one per step (at-least-once: the step that was running when
  a worker died runs again, which is allowed);
* overlaps: two executions of the same concurrency key running at the same time. An execution
  whose process was killed ends when it was killed (or, if that is unknown, where it started).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

from .effects import Attempt

FIELDS = ("scenario", "runs", "kills", "re_executions", "lost", "double_applied", "overlaps", "duration")


@dataclass
class Row:
    scenario: str
    runs: int = 0
    kills: int = 0
    re_executions: int = 0
    lost: int = 0
    double_applied: int = 0
    overlaps: int = 0
    duration: float = 0.0
    problems: list[str] = field(default_factory=list)  # anything else that went wrong (a deadline, a dead worker)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.double_applied or self.overlaps or self.problems)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["duration"] = round(self.duration, 2)
        out["ok"] = self.ok
        return out


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    status: str
    output: Any  # a completed chaos run's output: the attempt ids the engine committed, one per step


def tally(row: Row, runs: Iterable[RunOutcome], effects: Mapping[str, str], attempts: Iterable[Attempt], *,
          steps: tuple[str, ...], kills: Mapping[int, float] | None = None, keyed: bool = False) -> Row:
    """Fill ``row``'s counts from the runs the ledger holds and the side table."""
    kills = kills or {}
    runs = list(runs)
    attempts = list(attempts)
    by_id = {a.attempt_id: a for a in attempts}
    by_key: dict[str, list[Attempt]] = defaultdict(list)
    for a in attempts:
        by_key[a.step_key].append(a)
    row.runs = len(runs)
    expected: set[str] = set()
    for run in runs:
        if run.status != "completed":
            row.lost += 1
            continue
        committed = run.output if isinstance(run.output, list) else []
        for i, step in enumerate(steps):
            key = f"{run.run_id}:{step}"
            expected.add(key)
            if key not in effects:
                row.lost += 1
            chosen = by_id.get(committed[i]) if i < len(committed) and isinstance(committed[i], str) else None
            if chosen is None or chosen.step_key != key:
                row.problems.append(f"run {run.run_id} step {step}: its output names no execution of that step")
                continue
            if chosen.ended_at is not None:
                row.double_applied += sum(1 for a in by_key[key] if a is not chosen and a.started_at > chosen.ended_at)
    done = {r.run_id for r in runs if r.status == "completed"}
    # An effect of a completed run under a step id the run does not have: a step applied twice
    # under another id. (An effect of an unfinished run is lost work, counted above.)
    row.double_applied += sum(1 for key in effects if key not in expected and key.split(":", 1)[0] in done)
    row.re_executions = sum(len(v) - 1 for v in by_key.values() if len(v) > 1)
    if keyed:
        row.overlaps = overlaps(attempts, kills)
    return row


def overlaps(attempts: Iterable[Attempt], kills: Mapping[int, float]) -> int:
    """Executions that started while another execution of the same concurrency key was running."""
    by_key: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for a in attempts:
        if a.key is None:
            continue
        end = a.ended_at if a.ended_at is not None else max(a.started_at, kills.get(a.pid, a.started_at))
        by_key[a.key].append((a.started_at, end))
    n = 0
    for spans in by_key.values():
        spans.sort()
        running_until = float("-inf")
        for start, end in spans:
            if start < running_until:
                n += 1
            running_until = max(running_until, end)
    return n
