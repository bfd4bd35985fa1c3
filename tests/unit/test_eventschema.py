"""Typed events, the pure parts: the JSON Schema a schema registers, the example Run now starts
from, the messages that name the failing field, the registry JSON, and the registration rule
that one event name has one schema per app."""

from __future__ import annotations

import dataclasses
import datetime
import enum
from typing import Literal

import pydantic
import pytest
from typing_extensions import TypedDict

import durably
from durably.core import eventschema
from durably.core.options import FunctionConfig
from durably.errors import InvalidEvent, InvalidInput


class Source(str, enum.Enum):
    api = "api"
    cron = "cron"


class Address(pydantic.BaseModel):
    city: str
    zip: str = "00000"


class Recompute(pydantic.BaseModel):
    clientId: str
    requestId: str | None = None
    source: Source = Source.api
    priority: int = 0
    tags: list[str]
    address: Address
    at: datetime.datetime
    kind: Literal["full", "partial"]
    ratio: float = pydantic.Field(ge=1)
    flag: bool


class Counts(TypedDict):
    clientId: str
    folders: list[str]


@dataclasses.dataclass
class Ping:
    host: str
    port: int = 80


def schema_of(t):
    return eventschema.json_schema_of(eventschema.adapter_of(t, "test"), "test")


def test_the_example_fills_required_fields_by_type_and_optional_ones_that_have_a_default():
    schema = schema_of(Recompute)
    ex = eventschema.example(schema)
    assert ex == {"clientId": "", "requestId": None, "source": "api", "priority": 0, "tags": [],
                  "address": {"city": "", "zip": "00000"}, "at": "2026-01-01T00:00:00Z", "kind": "full",
                  "ratio": 1, "flag": False}
    # ... and the example validates against the schema it was built from (the form starts valid
    # but for the placeholders' meaning).
    assert eventschema.problem(eventschema.validator("f", schema), ex) is None


def test_the_example_of_a_typeddict_and_of_a_dataclass():
    assert eventschema.example(schema_of(Counts)) == {"clientId": "", "folders": []}
    assert eventschema.example(schema_of(Ping)) == {"host": "", "port": 80}


def test_the_example_takes_min_lengths_and_items_into_account():
    schema = {"type": "object", "required": ["a", "b", "n"],
              "properties": {"a": {"type": "string", "minLength": 3}, "b": {"type": "array", "minItems": 2,
                                                                             "items": {"type": "integer"}},
                             "n": {"type": "integer", "exclusiveMinimum": 0}}}
    assert eventschema.example(schema) == {"a": "xxx", "b": [0, 0], "n": 1}


@pytest.mark.parametrize("data, message", [
    ({"tags": [], "address": {"city": "x"}}, "data.clientId: Field required"),
    ({"clientId": 5}, "data.clientId: 5 is not of type 'string'"),
    ({"clientId": "c", "tags": ["a", 3]}, "data.tags[1]: 3 is not of type 'string'"),
    ({"clientId": "c", "tags": [], "address": {}}, "data.address.city: Field required"),
])
def test_the_json_schema_side_names_the_failing_field(data, message):
    schema = schema_of(Recompute)
    with pytest.raises(InvalidEvent) as exc:
        eventschema.check("f", schema, "inbox.counts.recompute", data)
    assert str(exc.value).startswith("inbox.counts.recompute: ")
    assert message in str(exc.value), str(exc.value)
    assert exc.value.code == "invalid_event"


def test_an_extra_field_of_a_closed_model_is_named():
    class Closed(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        a: int

    with pytest.raises(InvalidEvent, match=r"^e: data.zz: Extra inputs are not permitted$"):
        eventschema.check("f", schema_of(Closed), "e", {"a": 1, "zz": 2})


def test_the_pydantic_side_names_the_field_the_same_way():
    adapter = eventschema.adapter_of(Recompute, "test")
    with pytest.raises(InvalidEvent, match=r"^events\[2\]: inbox.counts.recompute: data.clientId: Field required$"):
        eventschema.check_model(adapter, "inbox.counts.recompute", {}, "events[2]: ")
    with pytest.raises(InvalidEvent, match=r"data.address.city: Field required"):
        eventschema.check_model(adapter, "e", {"clientId": "c", "tags": [], "address": {}, "at": "2026-01-01T00:00:00Z",
                                               "kind": "full", "ratio": 1, "flag": True})


def test_validators_are_compiled_once_per_function_and_schema():
    schema = schema_of(Counts)
    assert eventschema.validator("f", schema) is eventschema.validator("f", dict(schema))
    assert eventschema.validator("g", schema) is not eventschema.validator("f", schema)


def test_a_registered_schema_that_is_not_a_json_schema_is_a_clear_error():
    with pytest.raises(InvalidInput, match="registered event schema is not a JSON Schema"):
        eventschema.validator("f", {"type": 5})


def test_on_event_refuses_what_is_not_a_schema_of_an_object():
    with pytest.raises(InvalidInput, match="schema must be a pydantic model"):
        durably.on_event("e", schema=object())
    with pytest.raises(InvalidInput, match="must describe a JSON object"):
        durably.on_event("e", schema=int)
    with pytest.raises(InvalidInput, match="durably's own"):
        durably.on_event("durably/function.failed", schema=Counts)


def test_the_schema_round_trips_the_registry_json_and_old_entries_keep_working():
    app = durably.App("t")

    @app.function(id="f", trigger=[durably.on_event("a", schema=Counts), durably.on_event("b")])
    async def f(ctx):
        return None

    config = f.fdef.config()
    assert config["event_schema"] == schema_of(Counts)
    assert config["triggers"] == [{"event": "a", "if": None, "schema": schema_of(Counts)}, {"event": "b", "if": None}]
    typed = FunctionConfig.from_json(config)
    assert typed.event_schema == schema_of(Counts)
    assert typed.to_json() == config
    old = {k: v for k, v in config.items() if k != "event_schema"}
    old["triggers"] = [{"event": "a", "if": None}]
    assert FunctionConfig.from_json(old).event_schema is None
    assert FunctionConfig.from_json(old).to_json()["event_schema"] is None


def test_the_adapter_of_an_event_is_its_triggers():
    app = durably.App("t")

    @app.function(id="f", trigger=[durably.on_event("a", schema=Counts), durably.on_event("b"),
                                   durably.on_cron("0 * * * *")])
    async def f(ctx):
        return None

    assert f.fdef.event_adapter("a") is f.fdef.triggers[0].adapter
    assert f.fdef.event_adapter("b") is None
    assert f.fdef.event_adapter("durably/cron") is None
    assert f.fdef.event_adapter("durably/function.run") is f.fdef.triggers[0].adapter  # Run now


def test_two_functions_that_give_one_event_different_schemas_fail_registration_naming_both():
    app = durably.App("t")

    @app.function(id="first", trigger=durably.on_event("inbox.counts.recompute", schema=Counts))
    async def first(ctx):
        return None

    @app.function(id="same", trigger=durably.on_event("inbox.counts.recompute", schema=Counts))
    async def same(ctx):
        return None

    @app.function(id="untyped", trigger=durably.on_event("inbox.counts.recompute"))
    async def untyped(ctx):
        return None

    with pytest.raises(durably.EventSchemaConflict) as exc:
        @app.function(id="second", trigger=durably.on_event("inbox.counts.recompute", schema=Ping))
        async def second(ctx):
            return None

    message = str(exc.value)
    assert "'inbox.counts.recompute'" in message and "'first'" in message and "'second'" in message
    assert "'Counts'" in message and "'Ping'" in message
    assert isinstance(exc.value, durably.DurablyError) and "second" not in app.functions
