import time

import pytest

from durably import Event
from durably.errors import InvalidInput, NotSerializable, PayloadTooLarge
from durably.core.events import coerce_events
from durably.core.jsonutil import EVENT_MAX_BYTES


def test_defaults():
    before = int(time.time() * 1000)
    e = Event("user.signup")
    after = int(time.time() * 1000)
    assert e.data == {} and e.user is None
    assert isinstance(e.id, str) and len(e.id) == 26
    assert before <= e.ts <= after
    assert Event("x").id != Event("x").id
    assert Event("x", id="").id  # an empty id gets a generated one


def test_explicit_fields_kept():
    e = Event("a", {"k": 1}, id="my-id", ts=1234.9, user={"u": 1})
    assert (e.name, e.data, e.id, e.ts, e.user) == ("a", {"k": 1}, "my-id", 1234, {"u": 1})
    assert e.to_dict() == {"name": "a", "data": {"k": 1}, "id": "my-id", "ts": 1234, "user": {"u": 1}}
    assert "user" not in Event("a").to_dict()


@pytest.mark.parametrize("kwargs,fragment", [
    ({"name": ""}, "name"),
    ({"name": "  "}, "name"),
    ({"name": 3}, "name"),
    ({"name": "a", "data": [1, 2]}, "data must be a JSON object"),
    ({"name": "a", "data": "x"}, "data must be a JSON object"),
    ({"name": "a", "user": "bob"}, "user"),
    ({"name": "a", "id": 5}, "id must be a string"),
    ({"name": "a", "ts": "yesterday"}, "ts"),
    ({"name": "a", "ts": True}, "ts"),
])
def test_validation(kwargs, fragment):
    with pytest.raises(InvalidInput, match=fragment):
        Event(**kwargs)


def test_encode_not_serializable():
    with pytest.raises(NotSerializable) as exc:
        Event("a", {"when": object()}).encode()
    assert "'a'" in str(exc.value) and "not JSON-serializable" in str(exc.value)


def test_encode_limit_1_mib():
    Event("a", {"blob": "x" * (EVENT_MAX_BYTES - 200)}).encode()
    with pytest.raises(PayloadTooLarge) as exc:
        Event("a", {"blob": "x" * EVENT_MAX_BYTES}).encode()
    msg = str(exc.value)
    assert "event 'a'" in msg and "1,048,576" in msg


def test_from_dict_round_trip():
    e = Event("a", {"k": [1, 2]}, id="i1", ts=5, user={"u": 1})
    assert Event.from_dict(e.to_dict()) == e
    assert Event.decode(e.encode()) == e
    assert Event.decode(None) is None
    assert Event.from_dict({"name": "a", "v": "2024-01"}).name == "a"  # Inngest's version field is allowed


def test_from_dict_errors():
    with pytest.raises(InvalidInput, match="unknown event field.*colour.*extra"):
        Event.from_dict({"name": "a", "extra": 1, "colour": 2})
    with pytest.raises(InvalidInput, match="'name' is required"):
        Event.from_dict({"data": {}})
    with pytest.raises(InvalidInput, match="JSON object"):
        Event.from_dict(["a"])


def test_coerce_events():
    a, b = Event("a"), Event("b")
    assert coerce_events(a) == [a]
    assert coerce_events([a, b]) == [a, b]
    assert [e.name for e in coerce_events([{"name": "c"}, a])] == ["c", "a"]
    with pytest.raises(InvalidInput):
        coerce_events("a")
    with pytest.raises(InvalidInput):
        coerce_events([a, [b]])
