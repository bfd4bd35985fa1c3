import pytest

import durably
from durably.errors import DuplicateFunction, ExpressionError, InvalidInput
from durably.core.events import FUNCTION_FAILED
from durably.functions import Retry, coerce_retry


def _app() -> durably.App:
    # Declaring functions never opens the store: a bogus URL proves it.
    return durably.App("t", database_url="sqlite:////nonexistent-dir/never-opened.db")


# --- Retry ------------------------------------------------------------------------------------


def test_retries_int_is_attempts_plus_one():
    assert coerce_retry(4) == Retry(attempts=5)
    assert coerce_retry(0) == Retry(attempts=1)
    assert coerce_retry(None).attempts == 4
    r = Retry(attempts=2, initial="5s")
    assert coerce_retry(r) is r


def test_function_retries_option():
    app = _app()

    @app.function(id="f", trigger=durably.on_event("e"), retries=4)
    async def f(ctx):
        return None

    assert app.functions["f"].retry == Retry(attempts=5)
    assert app.functions["f"].config()["retry"]["attempts"] == 5


@pytest.mark.parametrize("bad", [-1, True, 1.5, "3"])
def test_bad_retries(bad):
    with pytest.raises(InvalidInput, match="retries"):
        coerce_retry(bad)


@pytest.mark.parametrize("kwargs", [{"attempts": 0}, {"attempts": True}, {"initial": "soon"}, {"max": -1},
                                    {"factor": 0.5}])
def test_bad_retry_policy(kwargs):
    with pytest.raises(InvalidInput):
        Retry(**kwargs)


def test_delay_without_jitter_is_exponential_and_capped():
    r = Retry(attempts=10, initial="1s", max="10s", factor=2, jitter=False)
    assert [r.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert Retry(initial="250ms", factor=3, jitter=False).delay(3) == pytest.approx(2.25)


def test_delay_with_jitter_stays_within_half_and_full():
    r = Retry(attempts=10, initial="1s", max="10s", factor=2, jitter=True)
    for n, full in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (9, 10)]:
        values = [r.delay(n) for _ in range(300)]
        assert all(full / 2 <= v <= full for v in values), (n, min(values), max(values))
        assert len(set(values)) > 1  # it does vary


# --- options validated at decoration time -------------------------------------------------------


def test_invalid_cel_fails_at_declaration():
    app = _app()
    with pytest.raises(ExpressionError) as exc:
        app.function(id="f", trigger=durably.on_event("e", if_="event.data.(") )
    assert "event.data.(" in str(exc.value) and "if_" in str(exc.value)
    for kwargs in ({"idempotency": "event.data.id +"}, {"tenant": "event..x"}):
        with pytest.raises(ExpressionError) as exc:
            @app.function(id="g", trigger=durably.on_event("e"), **kwargs)
            async def g(ctx):
                return None
        assert "'g'" in str(exc.value)
    with pytest.raises(ExpressionError, match="Concurrency key"):
        durably.Concurrency(limit=1, key="event.data.(")
    assert app.functions == {}


def test_invalid_cron_fails_at_declaration():
    with pytest.raises(InvalidInput, match="cron"):
        durably.on_cron("every minute")
    with pytest.raises(InvalidInput, match="time zone"):
        durably.on_cron("* * * * *", tz="Nowhere/Land")


def test_duplicate_function_id():
    app = _app()

    @app.function(id="same", trigger=durably.on_event("e"))
    async def one(ctx):
        return None

    with pytest.raises(DuplicateFunction) as exc:
        @app.function(id="same", trigger=durably.on_event("other"))
        async def two(ctx):
            return None
    assert "'same'" in str(exc.value)
    assert app.functions["same"].fn is one.__wrapped__


def test_trigger_is_required_and_typed():
    app = _app()
    with pytest.raises(InvalidInput, match="trigger"):
        app.function(id="f", trigger="e")(lambda ctx: None)
    with pytest.raises(InvalidInput, match="trigger"):
        app.function(id="f", trigger=[])(lambda ctx: None)
    with pytest.raises(InvalidInput, match="event name"):
        durably.on_event("")


def test_declaration_shape_and_config():
    app = _app()

    def handler(ctx):
        return None

    @app.function(trigger=[durably.on_event("a", if_="event.data.x == 1"), durably.on_cron("0 9 * * *", "Europe/Berlin")],
                  concurrency=3, idempotency="event.data.id", tenant="event.data.clientId", on_failure=handler)
    def plain(ctx):
        """Doc."""
        return 1

    assert plain.id == "plain" and plain.__doc__ == "Doc." and plain(None) == 1
    fdef = app.functions["plain"]
    assert fdef.is_async is False
    c = fdef.config()
    assert c["triggers"] == [{"event": "a", "if": "event.data.x == 1"}, {"cron": "0 9 * * *", "tz": "Europe/Berlin"}]
    assert c["concurrency"] == [{"limit": 3, "key": None, "scope": "fn"}]
    assert c["has_on_failure"] is True and c["tenant"] == "event.data.clientId"
    failure = app.functions["plain-failure"]
    assert failure.internal and failure.fn is handler
    assert failure.triggers[0].event == FUNCTION_FAILED
    assert "plain" in failure.triggers[0].if_
