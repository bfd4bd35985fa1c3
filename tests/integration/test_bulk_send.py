"""A list of events is recorded in one statement and its runs without flow control in
another: the rows they write are the rows that sending the events one by one writes."""

from __future__ import annotations

import concurrent.futures
import json
import sqlite3
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

import durably
from durably.errors import InvalidInput, NotSerializable
from tests.helpers import running_worker, runs_of, wait_run

# Columns that differ between two runs of the same event by construction: ids and clocks.
_COLUMNS = ("function_id", "status", "tenant", "trigger", "event", "events", "priority", "ckeys",
            "idempotency_key", "parent_run_id", "parent_step_id", "replay_of", "finish_timeout", "throttle",
            "singleton_key", "gathering", "fair_key", "attempt", "lease_owner")


def raw_runs(store_url: str, function_ids: list[str]) -> dict[str, list[dict]]:
    """Every run of these functions as the store holds it, with its delays relative to
    its creation."""
    cols = ", ".join(_COLUMNS) + ", event_id, available_at - created_at AS delay, sort_at - available_at AS ahead, " \
        "start_deadline - created_at AS start_in"
    sql = f"SELECT {cols} FROM durably_runs WHERE function_id IN ({', '.join('?' for _ in function_ids)}) " \
          "ORDER BY event_id"
    if store_url.startswith("sqlite"):
        conn = sqlite3.connect(store_url[len("sqlite:///"):])
        conn.row_factory = sqlite3.Row
        try:
            rows = [dict(r) for r in conn.execute(sql, function_ids)]
        finally:
            conn.close()
    else:
        parts = urlsplit(store_url)
        schema = parse_qs(parts.query).get("schema", ["public"])[0]
        with psycopg.connect(store_url.split("?")[0]) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            cur = conn.cursor(row_factory=psycopg.rows.dict_row)
            rows = cur.execute(sql.replace("?", "%s"), function_ids).fetchall()
    out: dict[str, list[dict]] = {}
    for r in rows:
        for k in ("delay", "ahead", "start_in"):
            if r[k] is not None:
                r[k] = round(float(r[k]), 3)
        out.setdefault(r.pop("event_id").split(":", 1)[1], []).append(r)
    return out


def test_a_list_writes_the_rows_that_single_sends_write(app_factory, store_url):
    app = app_factory()
    for prefix in ("one", "many"):
        app.function(id=f"{prefix}-plain", trigger=durably.on_event(f"{prefix}.go"))(lambda ctx: None)
        app.function(id=f"{prefix}-flow", trigger=durably.on_event(f"{prefix}.go"), tenant="event.data.t",
                     priority=durably.Priority(run="event.data.p"),
                     concurrency=durably.Concurrency(limit=2, key="event.data.t"),
                     throttle=durably.Throttle(limit=100, period="1m"), fairness=durably.Fairness(),
                     timeouts=durably.Timeouts(start="5m", finish="1h"))(lambda ctx: None)
        app.function(id=f"{prefix}-if", trigger=durably.on_event(f"{prefix}.go", if_="event.data.p > 20"))(
            lambda ctx: None)
        app.function(id=f"{prefix}-once", trigger=durably.on_event(f"{prefix}.go"),
                     idempotency="event.data.t + '/' + string(event.data.p)")(lambda ctx: None)
    data = [{"t": f"tenant-{i % 3}", "p": i * 10, "x": "é\n\"" * i} for i in range(6)]
    for i, d in enumerate(data):
        app.send(durably.Event("one.go", d, id=f"one:{i}"))
    res = app.send([durably.Event("many.go", d, id=f"many:{i}") for i, d in enumerate(data)])
    assert len(res.runs) == 21 and len(set(res.runs)) == 21 and res.duplicates == []
    one = raw_runs(store_url, ["one-plain", "one-flow", "one-if", "one-once"])
    many = raw_runs(store_url, ["many-plain", "many-flow", "many-if", "many-once"])
    assert sorted(one) == sorted(many) == [str(i) for i in range(6)]
    for key in one:
        for a, b in zip(sorted(one[key], key=lambda r: r["function_id"]),
                        sorted(many[key], key=lambda r: r["function_id"]), strict=True):
            ea, eb = json.loads(a.pop("event")), json.loads(b.pop("event"))
            assert ea["data"] == eb["data"] and ea["id"].split(":")[1] == eb["id"].split(":")[1]
            # keys name their function: one-flow against many-flow
            assert {k: v.replace("one-", "") if isinstance(v, str) else v for k, v in a.items()} == \
                {k: v.replace("many-", "") if isinstance(v, str) else v for k, v in b.items()}


def test_duplicates_in_a_list_and_across_sends(app_factory):
    app = app_factory()
    app.function(id="pay", trigger=durably.on_event("pay"))(lambda ctx: ctx.event.data["n"])
    first = app.send([durably.Event("pay", {"n": 1}, id="a"), durably.Event("pay", {"n": 2}, id="b")])
    again = app.send([durably.Event("pay", {"n": 3}, id="c"), durably.Event("pay", {"n": 4}, id="a"),
                      durably.Event("pay", {"n": 5}, id="c"), durably.Event("pay", {"n": 6}, id="d")])
    assert len(first.runs) == 2 and first.duplicates == []
    assert again.ids == ["c", "a", "c", "d"] and again.duplicates == ["a", "c"] and len(again.runs) == 2
    with running_worker(app):
        outputs = sorted(wait_run(app, rid)["output"] for rid in first.runs + again.runs)
    assert outputs == [1, 2, 3, 6]  # the first of each id is the one recorded
    assert app.store.get_event("c").result()["event"]["data"] == {"n": 3}
    same = {"name": "pay", "id": "e", "ts": 1_700_000_000_000, "data": {"n": 7}}
    twice = app.store.ingest([same, same]).result(10)  # one object twice: still one event, one run
    assert twice.ids == ["e", "e"] and twice.duplicates == ["e"] and len(twice.runs) == 1


def test_flow_control_in_a_list_keeps_its_order(app_factory):
    """Runs with keys or windows are created one by one beside the plain ones of the same list."""
    app = app_factory()
    app.function(id="plain", trigger=durably.on_event("job"))(lambda ctx: None)
    app.function(id="once", trigger=durably.on_event("job"),
                 idempotency="event.data.k")(lambda ctx: None)
    app.function(id="gather", trigger=durably.on_event("job"),
                 debounce=durably.Debounce(period="1h", key="event.data.k"))(lambda ctx: None)
    res = app.send([durably.Event("job", {"k": k}, id=f"e{i}") for i, k in enumerate("aabab")])
    by_fn: dict[str, int] = {}
    for r in runs_of(app):
        by_fn[r["function_id"]] = by_fn.get(r["function_id"], 0) + 1
    assert by_fn == {"plain": 5, "once": 2, "gather": 2}
    assert len(res.runs) == len(set(res.runs)) == 9
    assert [s["reason"] for s in res.skipped] == ["duplicate idempotency key 'a'", "duplicate idempotency key 'a'",
                                                  "duplicate idempotency key 'b'"]
    assert [s["event_id"] for s in res.skipped] == ["e1", "e3", "e4"]
    # A key a live run holds skips its run; a new key in the same list takes its own.
    again = app.send([durably.Event("job", {"k": k}, id=f"f{i}") for i, k in enumerate("ca")])
    assert [s["event_id"] for s in again.skipped if s["function_id"] == "once"] == ["f1"]
    # (the open debounce window of "a" takes f1 as its latest event)
    assert sorted(r["function_id"] for r in runs_of(app) if r["event_id"] in ("f0", "f1")) == \
        ["gather", "gather", "once", "plain", "plain"]


@pytest.mark.parametrize("bad", [{"id": "x\x00y"}, {"data": {"s": "\ud800"}}])
def test_bad_input_in_a_list_writes_nothing(app_factory, bad):
    app = app_factory()
    app.function(id="f", trigger=durably.on_event("go"))(lambda ctx: None)
    events = [durably.Event("go", {"i": 1}, id="fine")]
    with pytest.raises((InvalidInput, NotSerializable)):
        events.append(durably.Event("go", bad.get("data", {"i": 2}), id=bad.get("id")))
        app.send(events)
    assert runs_of(app) == [] and app.store.get_event("fine").result() is None


def test_concurrent_lists_sharing_ids_and_keys_record_each_once(app_factory):
    """Two processes' worth of writers (two apps, two connections) send overlapping lists in
    opposite orders at once: every id is recorded once and every key starts one run."""
    apps = [app_factory(), app_factory()]
    for a in apps:
        a.function(id="plain", trigger=durably.on_event("job"))(lambda ctx: None)
        a.function(id="once", trigger=durably.on_event("job"), idempotency="event.data.k")(lambda ctx: None)
    ids = [f"e{i}" for i in range(300)]
    lists = [[durably.Event("job", {"k": f"k{i % 100}"}, id=ids[i]) for i in order]
             for order in (range(300), range(299, -1, -1))]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda pair: pair[0].send(pair[1]), zip(apps, lists)))
    assert sorted(results[0].duplicates + results[1].duplicates) == sorted(ids)  # each id: new once, duplicate once
    runs = runs_of(apps[0])
    assert sum(r["function_id"] == "plain" for r in runs) == 300
    assert sum(r["function_id"] == "once" for r in runs) == 100
    assert len(results[0].runs) + len(results[1].runs) == 400
