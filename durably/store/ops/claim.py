"""Claiming: leasing ready runs under their concurrency slots and throttles."""

from __future__ import annotations

from typing import Any, Iterator

from ...core import flow
from ...core.blobs import blob_attempt
from ...core.jsonutil import dumps, loads
from ...core.records import ClaimedRun
from .runs import cancel
from .tx import Tx
from .tx import stage_blob as _status

# --- claiming ------------------------------------------------------------------------------


CLAIM_SCAN_MAX = 5000  # candidates one claim may look at when most are blocked by their keys


def _candidates(tx: Tx, functions: str, limit: int):
    """Ready runs in claim order, fetched page by page until the caller has enough."""
    page = limit + 16  # enough when few are blocked; pages grow fourfold when many are
    after_sort = after_id = None
    seen = 0
    while seen < CLAIM_SCAN_MAX:
        rows = tx.all("claim_candidates", env=tx.env, now=tx.now, functions=functions, limit=page,
                      after_sort=after_sort, after_id=after_id)
        yield from rows
        seen += len(rows)
        if len(rows) < page:
            return
        after_sort, after_id = rows[-1]["sort_at"], rows[-1]["id"]
        page = min(page * 4, 1000)


def _fair_candidates(tx: Tx, functions: str, limit: int) -> list[Any]:
    """Ready runs of fair functions, the oldest of each key in turn (one statement)."""
    return tx.all("claim_fair_candidates", env=tx.env, now=tx.now, functions=functions, limit=limit)


def _interleave(fair: list[Any], plain: Iterator[Any]) -> Iterator[Any]:
    """Fair functions' candidates and the others', one of each in turn, then the rest."""
    for c in fair:
        yield c
        nxt = next(plain, None)
        if nxt is not None:
            yield nxt
    yield from plain


def _take_slots(tx: Tx, run_id: str, ckeys: list, full_keys: set[str]) -> bool:
    """Take one slot of every concurrency key of a run, or none (keys in a fixed order)."""
    for key, cap in sorted(ckeys):
        if key in full_keys:
            break
        used = {r[0] for r in tx.all("slots_used", env=tx.env, key=key)}
        if not any(slot not in used and tx.exec("take_slot", env=tx.env, key=key, slot=slot, run_id=run_id)
                   for slot in range(int(cap))):
            full_keys.add(key)
            break
    else:
        return True
    tx.exec("release_slots", run_id=run_id)
    return False


def claim(tx: Tx, owner: str, functions: str, limit: int, lease: float) -> tuple[list[ClaimedRun], float | None, float]:
    """Lease up to ``limit`` ready runs, taking their concurrency slots in this transaction.

    Flow control decides run by run which candidates may start; the chosen runs are then
    leased by one UPDATE. A throttled run is leased on its own at once, as its start
    consumes the throttle's budget that the next candidate of the same key is judged by.
    """
    rows: list[Any] = []
    chosen: list[Any] = []  # candidates cleared to start, leased together below
    order: dict[str, int] = {}  # claim order of the candidates
    full_keys: set[str] = set()
    fair = _fair_candidates(tx, functions, limit)
    candidates = _candidates(tx, functions, limit)
    for c in _interleave(fair, candidates) if fair else candidates:
        if len(rows) + len(chosen) >= limit:
            break
        order[c["id"]] = len(order)
        if c["start_deadline"] is not None and c["started_at"] is None and c["start_deadline"] < tx.now:
            cancel(tx, c["id"], "start_timeout")
            continue
        throttled = None
        if c["throttle"] and c["started_at"] is None:
            key, interval, tolerance = loads(c["throttle"])
            trow = tx.one("gcra_get", env=tx.env, key=key)
            ok, tat = flow.gcra(trow[0] if trow else None, tx.now, interval, tolerance)
            if not ok:
                tx.exec("defer_run", run_id=c["id"], at=tat)
                continue
            throttled = (key, tat)  # consumed only if the run is claimed below
        ckeys = loads(c["ckeys"]) if c["ckeys"] else None
        if ckeys and not _take_slots(tx, c["id"], ckeys, full_keys):
            continue
        if throttled is None:
            chosen.append(c)
            continue
        row = tx.one("claim_runs", ids=dumps([c["id"]]), owner=owner, now=tx.now, lease=lease)
        if row is None:
            if ckeys:
                tx.exec("release_slots", run_id=c["id"])
            continue
        tx.exec("gcra_set", env=tx.env, key=throttled[0], tat=throttled[1])
        rows.append((c, row))
    if chosen:
        got = {r["id"]: r for r in tx.all("claim_runs", ids=dumps([c["id"] for c in chosen]), owner=owner,
                                            now=tx.now, lease=lease)}
        for c in chosen:
            row = got.get(c["id"])
            if row is not None:
                rows.append((c, row))
            elif c["ckeys"]:  # taken by another worker meanwhile: give its slots back
                tx.exec("release_slots", run_id=c["id"])
        rows.sort(key=lambda cr: order[cr[0]["id"]])
    served: dict[tuple[str, str], float] = {}
    for c, _row in rows:
        if c.get("fair_key") is not None:  # in claim order: the last served of a key is the latest
            served[(c["function_id"], c["fair_key"])] = tx.now + len(served) * 1e-6
    if served:
        tx.exec("fair_served", env=tx.env, served=dumps([[f, k, at] for (f, k), at in served.items()]))
    claimed: list[ClaimedRun] = []
    mono = getattr(tx, "mono", None)
    for c, row in rows:
        if c["gathering"]:  # the claim closed its debounce/batch window: no more events join it
            tx.exec("close_gathering", run_id=row["id"])
            tx.exec("close_batch", run_id=row["id"])
        run = ClaimedRun(
            id=row["id"], function_id=row["function_id"], tenant=row["tenant"], trigger=row["trigger"],
            event=loads(row["event"]), events=loads(row["events"]), attempt=row["attempt"],
            lease_gen=row["lease_gen"], started_at=row["started_at"], created_at=row["created_at"],
            resumed=bool(row["resumed"]), now=tx.now, parent_run_id=row["parent_run_id"],
            finish_deadline=row["finish_deadline"], mono=mono, holds=bool(row["holds"]),
        )
        if run.resumed or run.trigger == "replay":  # a rerun from a step starts with a copied memo
            run.steps = [dict(s) for s in tx.all("load_steps", run_id=run.id)]
        _status(tx, run.tenant, run.function_id, "running", run.id, run.started_at, None, _running_attempt(run), None)
        claimed.append(run)
    next_at = None
    if len(claimed) < limit:
        r = tx.one("next_available", env=tx.env, functions=functions)
        next_at = r[0] if r else None
    return claimed, next_at, tx.now


def _running_attempt(run: ClaimedRun) -> int:
    """The blob's ``attempt`` of a run claimed now: the attempt about to run (1-based), a
    retried step's next try included."""
    steps = 0
    for st in run.steps or ():
        n = st.get("attempts") or 0
        steps = max(steps, n + 1 if st.get("status") == "retrying" else n)
    return blob_attempt(run.attempt + 1, steps)
