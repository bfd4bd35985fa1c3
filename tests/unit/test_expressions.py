import subprocess
import sys

import pytest

from durably.errors import ExpressionError, InvalidInput
from durably.core.expressions import compile_expr, evaluate, evaluate_bool, evaluate_key

EV = {"event": {"name": "a", "data": {"clientId": "c1", "n": 3, "f": 2.0, "flag": True}, "ts": 1_700_000_000_000}}


def test_compile_is_cached():
    src = "event.data.n + 41 == 44 && true"
    compile_expr.cache_clear()
    p1 = compile_expr(src)
    p2 = compile_expr(src)
    assert p1 is p2
    info = compile_expr.cache_info()
    assert info.misses == 1 and info.hits == 1


@pytest.mark.parametrize("src", ["event.data.(", "event.data.x ==", "1 +* 2", ")"])
def test_compile_error_names_the_expression(src):
    with pytest.raises(ExpressionError) as exc:
        compile_expr(src)
    assert repr(src) in str(exc.value)
    assert "\n" not in str(exc.value)  # one line
    assert isinstance(exc.value, InvalidInput)


@pytest.mark.parametrize("src", ["", "   ", None, 3])
def test_compile_rejects_empty_and_non_strings(src):
    with pytest.raises(ExpressionError):
        compile_expr(src)


def test_evaluate_values():
    assert evaluate("event.data.n * 2", EV) == 6
    assert evaluate("event.data.clientId + ':x'", EV) == "c1:x"
    assert evaluate("string(int(event.ts / 300000))", EV) == "5666666"


def test_evaluate_failure_names_the_expression_and_the_cause():
    with pytest.raises(ExpressionError) as exc:
        evaluate("event.data.missing", EV)
    msg = str(exc.value)
    assert "'event.data.missing'" in msg and "missing" in msg.split("failed", 1)[1]
    with pytest.raises(ExpressionError, match="event.data.n / 0"):
        evaluate("event.data.n / 0", EV)


def test_evaluate_key_stringifies():
    assert evaluate_key("event.data.clientId", EV) == "c1"
    assert evaluate_key("event.data.n", EV) == "3"
    assert evaluate_key("event.data.f", EV) == "2"  # an integral float is not "2.0"
    assert evaluate_key("event.data.flag", EV) == "true"
    assert evaluate_key("event.data.n > 5", EV) == "false"


def test_evaluate_bool():
    assert evaluate_bool("event.data.clientId == 'c1'", EV) is True
    assert evaluate_bool("event.data.n > 5", EV) is False
    with pytest.raises(ExpressionError, match="must be a boolean"):
        evaluate_bool("event.data.n", EV)
    with pytest.raises(ExpressionError, match="no such key"):
        evaluate_bool("event.data.nope == 1", EV)


def test_async_variable_for_waits():
    env = {"event": {"data": {"k": 1}}, "async": {"data": {"k": 1}}}
    assert evaluate_bool("async.data.k == event.data.k", env) is True


@pytest.mark.parametrize("src, where, what", [
    ("event.data.x == ", "column 17", "the expression ends too soon"),
    ("event.data.x ==== 1", "column 16", "unexpected '=='"),
    ("(event.data.x", "column 14", "missing ')' at the end"),
    ("event.data.a event.data.b", "column 14", "unexpected 'event'"),
    ("event.data.a\n && &&", "line 2, column 5", "unexpected '&&'"),
])
def test_a_parse_error_is_one_short_line(src, where, what):
    with pytest.raises(ExpressionError) as e:
        compile_expr(src)
    msg = str(e.value)
    assert msg == f"invalid CEL expression {src!r}: syntax error at {where}: {what}"
    assert "\n" not in msg and "expecting" not in msg and "<input>" not in msg and "NUM_FLOAT" not in msg


def test_the_binding_loads_without_its_shell_and_is_shared_with_the_application():
    """Compiling an expression loads the binding's compiled module alone (not the package's
    command-line shell); an application's own ``import cel`` afterwards gets that module."""
    code = ("import sys\n"
            "from durably.core.expressions import evaluate\n"
            "assert evaluate('event.data.n * 2', {'event': {'data': {'n': 21}}}) == 42\n"
            "assert 'prompt_toolkit' not in sys.modules and 'cel.cli' not in sys.modules, sorted(sys.modules)\n"
            "import cel\n"
            "assert cel.compile is sys.modules['cel.cel'].compile\n"
            "assert cel.compile('1 + 2').execute({}) == 3\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
