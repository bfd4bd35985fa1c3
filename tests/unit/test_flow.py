import pytest

from durably.core.flow import TENANT_MAX, match, match_value, plan
from durably.core.jsonutil import dumps
from durably.core.records import NewRun, Skip, Slot, UniqueKey


def cfg(**kw):
    base = {"id": "fn", "concurrency": [], "priority": None, "idempotency": None, "tenant": None, "timeouts": None}
    base.update(kw)
    return base


def ev(**data):
    return {"name": "e", "id": "ev1", "ts": 1_700_000_000_000, "data": data}


def test_plain_run():
    r = plan(cfg(), ev(), None, 0.0)
    assert isinstance(r, NewRun)
    assert r.function_id == "fn" and r.tenant == "global" and r.trigger == "event"
    assert r.slots == [] and r.unique_keys == [] and r.plan_error is None and r.priority == 0.0
    assert r.event == ev()
    assert plan(cfg(), ev(), None, 0.0).id != r.id


def test_tenant():
    t = cfg(tenant="event.data.clientId")
    assert plan(t, ev(clientId="c7"), None, 0).tenant == "c7"
    assert plan(t, ev(clientId=None), None, 0).tenant == "global"  # null: the default tenant
    assert plan(t, ev(clientId=7), None, 0).tenant == "7"
    for value in ("a:x", "%", "a/b", "x" * TENANT_MAX, "é" * TENANT_MAX):  # kept exactly as the expression gives it
        assert plan(t, ev(clientId=value), None, 0).tenant == value


@pytest.mark.parametrize("value", ["", "x" * (TENANT_MAX + 1), "x" * 5000, "a\x00b"])
def test_invalid_tenant_is_skipped_where_the_run_is_planned(value):
    for trigger in ("event", "cron", "invoke", "manual"):
        r = plan(cfg(tenant="event.data.clientId"), ev(clientId=value), None, 0, trigger=trigger)
        assert isinstance(r, Skip) and (r.function_id, r.reason) == ("fn", "invalid_tenant")


def test_idempotency_key():
    r = plan(cfg(idempotency="event.data.clientId + ':' + string(int(event.ts / 300000))"), ev(clientId="c1"), None, 0)
    assert r.idempotency_key == "c1:5666666"
    assert r.unique_keys == [UniqueKey("idempotency", "idempotency:fn", "c1:5666666", 86400.0)]


def test_concurrency_slot_keys():
    conc = [{"limit": 1, "key": "event.data.clientId", "scope": "fn"},
            {"limit": 20, "key": None, "scope": "fn"},
            {"limit": 5, "key": "event.data.region", "scope": "env"}]
    r = plan(cfg(concurrency=conc), ev(clientId="c1", region="eu"), None, 0)
    assert r.slots == [Slot("fn:fn:0=c1", 1), Slot("fn:fn:1", 20), Slot("env:event.data.region=eu", 5)]


@pytest.mark.parametrize("value,expected", [(30, 30.0), (-5.5, -5.5), (9999, 600.0), (-9999, -600.0)])
def test_priority_clamped(value, expected):
    r = plan(cfg(priority={"run": "event.data.p"}), ev(p=value), None, 0)
    assert r.priority == expected and r.plan_error is None


def test_priority_must_be_a_number():
    r = plan(cfg(priority={"run": "event.data.p"}), ev(p="high"), None, 0)
    assert "Priority" in r.plan_error


def test_if_filter():
    assert plan(cfg(), ev(source="test"), "event.data.source != 'test'", 0) is None
    assert isinstance(plan(cfg(), ev(source="web"), "event.data.source != 'test'", 0), NewRun)


def test_if_filter_that_fails_is_a_recorded_skip():
    r = plan(cfg(), ev(), "event.data.source != 'test'", 0)
    assert isinstance(r, Skip) and r.function_id == "fn"
    assert "event.data.source" in r.reason


def test_key_expression_failing_gives_a_run_with_plan_error():
    r = plan(cfg(concurrency=[{"limit": 1, "key": "event.data.clientId", "scope": "fn"}],
                 idempotency="event.data.clientId"), ev(other=1), None, 0)
    assert isinstance(r, NewRun)
    assert "event.data.clientId" in r.plan_error and "clientId" in r.plan_error
    assert r.slots == [] and r.unique_keys == []


def test_invoke_and_cron_triggers():
    assert plan(cfg(), ev(), None, 0, trigger="invoke").trigger == "invoke"


def test_start_timeout():
    assert plan(cfg(timeouts={"start": 5.0, "finish": None}), ev(), None, 0).start_timeout == 5.0


# --- matching waits ------------------------------------------------------------------------------


def _wait(trigger, path=None, if_expr=None):
    return {"match_path": path, "match_value": match_value(trigger, path) if path else None, "if_expr": if_expr,
            "event": dumps(trigger)}


def test_match_on_field():
    trigger = ev(clientId="c1")
    w = _wait(trigger, "data.clientId")
    assert match(w, {"name": "x", "data": {"clientId": "c1"}})
    assert not match(w, {"name": "x", "data": {"clientId": "c2"}})
    assert not match(w, {"name": "x", "data": {}})


def test_match_on_non_string_value():
    w = _wait(ev(n=3), "data.n")
    assert match(w, {"data": {"n": 3}}) and not match(w, {"data": {"n": "3"}})


def test_match_with_if_over_event_and_async():
    w = _wait(ev(clientId="c1", min=5), None, "async.data.clientId == event.data.clientId && async.data.v >= event.data.min")
    assert match(w, {"data": {"clientId": "c1", "v": 5}})
    assert not match(w, {"data": {"clientId": "c1", "v": 4}})
    assert not match(w, {"data": {"clientId": "c2", "v": 9}})
    assert not match(w, {"data": {"clientId": "c1"}})  # an expression error is no match


def test_match_without_conditions_takes_any():
    assert match(_wait(ev()), {"data": {}})


def test_match_accepts_a_decoded_trigger():
    w = {"match_path": None, "match_value": None, "if_expr": "async.data.k == event.data.k", "event": ev(k=1)}
    assert match(w, {"data": {"k": 1}})


def test_match_on_a_field_the_trigger_lacks_matches_nothing():
    from durably.core.flow import match, match_value

    wait = {"match_path": "data.userId", "match_value": match_value({"data": {}}, "data.userId"), "if_expr": None}
    assert not match(wait, {"name": "x", "data": {}})
    assert not match(wait, {"name": "x", "data": {"userId": None}})
