"""CEL expressions over events, compiled once and cached.

Keys, filters and priorities are CEL (``common-expression-language``). An expression is
compiled when a function is declared, so a typo fails at import time, not at 3 a.m.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..errors import ExpressionError

if TYPE_CHECKING:
    import cel


@lru_cache(maxsize=4096)
def compile_expr(source: str) -> "cel.Program":
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError(f"invalid CEL expression {source!r}: must be a non-empty string")
    try:
        program: "cel.Program" = _binding().compile(source)
    except Exception as exc:  # the binding raises ValueError with a caret diagram
        raise ExpressionError(f"invalid CEL expression {source!r}: {_parse_error(exc)}") from None
    return program


@lru_cache(maxsize=1)
def _binding() -> Any:
    """The binding's compiled module, loaded on first use and on its own: the package's
    ``__init__`` also imports its command-line shell (prompt_toolkit, rich), about 0.1 s of
    every worker's and command's start that durably never uses. Registered as ``cel.cel``, so
    a later ``import cel`` by the application reuses it rather than loading it twice."""
    if "cel.cel" in sys.modules:
        return sys.modules["cel.cel"]
    spec = importlib.util.find_spec("cel")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, "cel" + suffix)
            ext = importlib.util.spec_from_file_location("cel.cel", path) if os.path.exists(path) else None
            if ext is not None and ext.loader is not None:
                module = importlib.util.module_from_spec(ext)
                ext.loader.exec_module(module)
                sys.modules["cel.cel"] = module
                return module
    import cel  # a layout other than the wheel's: the package as it is

    return cel


_PARSE_ERROR = re.compile(r"ERROR: <input>:(\d+):(\d+): (?:Syntax error: )?(.*)")


def _parse_error(exc: BaseException) -> str:
    """The parser's error as one short line: where, and what (not ANTLR's expected-token sets)."""
    text = str(exc)
    m = _PARSE_ERROR.search(text)
    if m is None:
        return text.splitlines()[0] if text else type(exc).__name__
    line, col, what = int(m[1]), int(m[2]), m[3].strip()
    what = re.sub(r"\s*expecting (\{.*\}|\S+)$", "", what)
    what = re.sub(r"^(mismatched|extraneous) input '<EOF>'$", "the expression ends too soon", what)
    what = re.sub(r"^(mismatched|extraneous) input ('.*')$", r"unexpected \2", what)
    what = what.replace("at '<EOF>'", "at the end")
    where = f"column {col}" if line == 1 else f"line {line}, column {col}"  # 1-based, as the parser counts
    return f"syntax error at {where}: {what}"


def evaluate(source: str, variables: dict[str, Any]) -> Any:
    """Evaluate a compiled expression; a failure names the expression and the cause."""
    program = compile_expr(source)
    try:
        return program.execute(variables)
    except Exception as exc:
        detail = str(exc).splitlines()[0] if str(exc) else ""
        if isinstance(exc, KeyError):
            detail = f"no such key: {detail}"
        raise ExpressionError(f"CEL expression {source!r} failed: {type(exc).__name__}: {detail}") from None


def evaluate_key(source: str, variables: dict[str, Any]) -> str:
    """Evaluate an expression used as a key: the result becomes a string."""
    return as_key(evaluate(source, variables))


def as_key(value: Any) -> str:
    """A CEL value as a key string (``true``, ``5`` for 5.0, strings as they are)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, str) else str(value)


def evaluate_bool(source: str, variables: dict[str, Any]) -> bool:
    value = evaluate(source, variables)
    if not isinstance(value, bool):
        raise ExpressionError(f"CEL expression {source!r} must be a boolean, got {value!r}")
    return value
