import pathlib
import re
import time

import pytest

from durably import Event
from durably.errors import InvalidInput, NotSerializable, PayloadTooLarge
from durably.core.events import NAME_PATTERN, coerce_events, name_problem
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


# --- the grammar of event names (DESIGN §2/§4: names such as `background/process.requested`) ---

VALID_NAMES = [
    "inbox.counts.dirty", "app/user.created", "background/process.requested", "durably/function.failed",
    "user.signup", "bad-output", "a", "crash.go", "order_paid:v2", "user signed up", "é/ü.ñ", "...", "..a", "a..b",
    "a/.hidden", "x" * 256, "inngest/function.finished",
]
INVALID_NAMES = [
    ("../../../etc/passwd", "segments"), ("a/../b", "segments"), ("a/..", "segments"), ("./a", "segments"),
    (".", "segments"), ("..", "segments"), ("/etc/passwd", "segments"), ("a/", "segments"), ("a//b", "segments"),
    ("a\x00b", "'\\x00' at position 1"), ("a\nb", "'\\n'"), ("a\tb", "'\\t'"), ("\x7f", "'\\x7f'"),
    ("a\x85", "'\\x85'"), ("a\u2028b", "'\\u2028'"), ("\udcff", "'\\udcff'"), (" a", "whitespace"),
    ("a ", "whitespace"), ("a\u00a0", "whitespace"), ("a\\b", "'\\'"), ("x" * 257, "257 characters; at most 256"),
    ("", "non-empty"), ("   ", "non-empty"),
]


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_names(name):
    assert Event(name).name == name
    assert re.match(NAME_PATTERN, name)  # the pattern the API documents agrees


@pytest.mark.parametrize("name,fragment", INVALID_NAMES)
def test_invalid_names_are_refused_with_the_reason(name, fragment):
    with pytest.raises(InvalidInput) as exc:
        Event(name)
    assert fragment in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(InvalidInput):
        coerce_events({"name": name})
    if "\udcff" not in name and len(name) <= 256:  # the document states the length apart (maxLength)
        assert not re.match(NAME_PATTERN, name)


def test_triggers_use_the_grammar():
    import durably

    with pytest.raises(InvalidInput, match="on_event: event name '../x'"):
        durably.on_event("../x")
    with pytest.raises(InvalidInput, match="CancelOn: event name"):
        durably.CancelOn("a\x00")


def test_every_name_the_tests_and_examples_use_is_valid():
    root = pathlib.Path(__file__).resolve().parents[2]
    found = set()
    hostile = {"test_events.py", "test_unstorable_input.py", "test_hostile_input.py"}  # bad names on purpose
    for path in [*root.glob("tests/**/*.py"), *root.glob("examples/**/*.py")]:
        if path.name in hostile:
            continue
        for m in re.finditer(r"""(?:on_event|Event|CancelOn)\(\s*["']([^"']+)["']""", path.read_text()):
            found.add(m.group(1))
    assert len(found) > 30
    assert [n for n in found if name_problem(n) is not None] == []


@pytest.mark.parametrize("kwargs,fragment", [
    ({"id": "a\x00b"}, "NUL"),
    ({"id": "\ud800"}, "not valid Unicode"),
    ({"id": "x" * 513}, "513 characters; at most 512"),
    ({"ts": -1}, "from 0 to"),
    ({"ts": 10**30}, "from 0 to"),
    ({"ts": 2**63}, "from 0 to"),
    ({"ts": float("inf")}, "from 0 to"),
    ({"ts": float("nan")}, "from 0 to"),
])
def test_ids_and_ts_the_store_cannot_hold(kwargs, fragment):
    with pytest.raises(InvalidInput, match=fragment):
        Event("a", **kwargs)
    assert Event("a", id="x" * 512, ts=253402300799999).ts == 253402300799999


@pytest.mark.parametrize("data,user,where", [
    ({"k": "a\x00b"}, None, "data.k"),
    ({"a\x00": 1}, None, "data (key 'a\\x00')"),
    ({"k": [1, {"deep": "\x00"}]}, None, "data.k[1].deep"),
    ({}, {"u": "\x00"}, "user.u"),
])
def test_a_nul_character_in_data_is_refused_naming_where(data, user, where):
    with pytest.raises(InvalidInput) as exc:
        Event("a", data, user=user).encode()
    assert f"{where} holds a NUL character" in str(exc.value)


def test_text_that_only_looks_like_an_escaped_nul_is_fine():
    text = Event("a", {"k": "back\\u0000slash", "j": "\\\\u0000"}).encode()
    assert '"back\\\\u0000slash"' in text
