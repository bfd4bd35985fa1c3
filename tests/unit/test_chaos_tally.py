"""The chaos battery's verdict from a crafted side table: each kind of failure is caught."""

from __future__ import annotations

from durably.chaos.battery import judge_duplicates
from durably.chaos.effects import Attempt
from durably.chaos.tally import Row, RunOutcome, overlaps, tally

STEPS = ("one", "two")


def _attempt(aid: str, run: str, step: str, start: float, end: float | None, key: str | None = None,
             pid: int = 1) -> Attempt:
    return Attempt(aid, f"{run}:{step}", run, key, pid, start, end)


def _clean() -> tuple[list[RunOutcome], dict[str, str], list[Attempt]]:
    runs = [RunOutcome("r1", "completed", ["a1", "a2"])]
    attempts = [_attempt("a1", "r1", "one", 1.0, 1.1), _attempt("a2", "r1", "two", 1.2, 1.3)]
    return runs, {"r1:one": "a1", "r1:two": "a2"}, attempts


def test_a_clean_side_table_is_ok():
    runs, effects, attempts = _clean()
    row = tally(Row("kill9"), runs, effects, attempts, steps=STEPS)
    assert row.ok and (row.runs, row.lost, row.double_applied, row.re_executions) == (1, 0, 0, 0)


def test_a_step_re_executed_after_a_crash_is_allowed():
    runs, effects, attempts = _clean()
    # The first execution of "two" died (no end) after applying the effect; the second was committed.
    attempts[1] = _attempt("a0", "r1", "two", 1.2, None, pid=7)
    attempts.append(_attempt("a2", "r1", "two", 3.5, 3.6, pid=8))
    effects["r1:two"] = "a0"
    row = tally(Row("kill9"), runs, effects, attempts, steps=STEPS, kills={7: 1.25})
    assert row.ok and row.re_executions == 1


def test_a_committed_step_run_again_is_double_applied():
    runs, effects, attempts = _clean()
    attempts.append(_attempt("a9", "r1", "one", 2.0, 2.1))  # after a1, the committed one, had ended
    row = tally(Row("kill9"), runs, effects, attempts, steps=STEPS)
    assert row.double_applied == 1 and not row.ok


def test_an_effect_under_a_step_the_run_does_not_have_is_double_applied():
    runs, effects, attempts = _clean()
    effects["r1:one:1"] = "a7"
    row = tally(Row("kill9"), runs, effects, attempts, steps=STEPS)
    assert row.double_applied == 1 and not row.ok


def test_a_missing_effect_or_an_unfinished_run_is_lost():
    runs, effects, attempts = _clean()
    del effects["r1:two"]
    runs.append(RunOutcome("r2", "failed", None))
    row = tally(Row("kill9"), runs, effects, attempts, steps=STEPS)
    assert row.lost == 2 and not row.ok


def test_an_output_naming_no_execution_is_a_problem():
    runs, effects, attempts = _clean()
    runs[0] = RunOutcome("r1", "completed", ["a1", "nobody"])
    row = tally(Row("kill9"), runs, effects, attempts, steps=STEPS)
    assert row.problems and not row.ok


def test_overlaps_of_one_key_are_counted_and_a_killed_execution_ends_when_killed():
    spans = [_attempt("a", "r1", "one", 1.0, 2.0, key="k"), _attempt("b", "r2", "one", 1.5, 2.5, key="k"),
             _attempt("c", "r3", "one", 1.5, 2.5, key="other")]
    assert overlaps(spans, {}) == 1
    killed = [_attempt("a", "r1", "one", 1.0, None, key="k", pid=5), _attempt("b", "r1", "one", 4.0, 4.1, key="k")]
    assert overlaps(killed, {5: 1.2}) == 0
    assert overlaps(killed, {5: 4.05}) == 1  # still running when the next execution began
    runs = [RunOutcome("r1", "completed", ["a", "x"])]
    row = tally(Row("concurrency"), runs, {}, spans, steps=STEPS, keyed=True)
    assert row.overlaps == 1 and not row.ok


def test_duplicates_verdict():
    one = {"windowStart": "2026-01-01T00:00:00Z"}
    ok = judge_duplicates(Row("duplicates"), [(202, one)] + [(200, one)] * 9,
                          [(200, {"runs": ["r"]})] + [(200, {"runs": []})] * 9, [{"id": "c"}], [{"id": "d"}])
    assert ok.ok and ok.runs == 2
    twice = judge_duplicates(Row("duplicates"), [(202, one), (202, one)], [(200, {"runs": ["r"]})],
                             [{"id": "c1"}, {"id": "c2"}], [{"id": "d"}])
    assert twice.double_applied == 2 and not twice.ok
    refused = judge_duplicates(Row("duplicates"), [(202, one), (503, {"error": {}})], [(200, {"runs": ["r"]})],
                               [{"id": "c"}], [])
    assert refused.problems and refused.lost == 1 and not refused.ok
