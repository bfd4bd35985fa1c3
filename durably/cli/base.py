"""What every command shares: the ``durably`` group, the store options, output."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, Optional

import click

from ..config import Settings
from ..errors import InvalidInput

_HELP = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Out:
    """stdout as a rich Console, made on first use: a worker that prints nothing does not
    import rich at start-up."""

    _console: Any = None

    def __getattr__(self, name: str) -> Any:
        if _Out._console is None:
            from rich.console import Console

            _Out._console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
        return getattr(_Out._console, name)


def Table(**kwargs: Any) -> Any:  # noqa: N802 - rich's Table, imported when a table is printed
    from rich.table import Table as _Table

    return _Table(**kwargs)


out = _Out()
_state: dict[str, Any] = {}



@click.group(context_settings=_HELP)
@click.option("--database-url", envvar="DURABLY_DATABASE_URL", show_envvar=True, help="sqlite:///path or postgresql://...")
@click.option("--env", envvar="DURABLY_ENV", show_envvar=True, help="Environment name; rows of other envs are never touched.")
@click.option("--verbose", "-v", is_flag=True, help="Debug logs and full tracebacks.")
def cli(database_url: Optional[str], env: Optional[str], verbose: bool) -> None:
    """durably: durable background jobs for Python."""
    _state.update(database_url=database_url, env=env, verbose=verbose)


def _store_options(f: Any) -> Any:
    """--database-url and --env after the subcommand too (``durably runs --database-url ...``);
    given there, they override the ones before it."""

    def remember(name: str) -> Any:
        def callback(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> None:
            if value is not None:
                _state[name] = value

        return callback

    f = click.option("--env", expose_value=False, callback=remember("env"),
                     help="Environment name (as before the command).")(f)
    return click.option("--database-url", expose_value=False, callback=remember("database_url"),
                        help="sqlite:///path or postgresql://... (as before the command).")(f)


def _text(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[str]:
    """A filter or id the store is asked to find: text it can hold (an argument holding bytes
    that are not UTF-8 arrives with lone surrogates, which no store can hold)."""
    if value is None:
        return None
    from ..core.events import id_problem

    what = param.opts[0] if isinstance(param, click.Option) else (param.name or "argument").upper()
    problem = id_problem(value, what=what, limit=1 << 30)
    if problem is not None:
        raise InvalidInput(problem.replace("is not valid Unicode text", "is not valid UTF-8 text"))
    return value


def settings(**overrides: Any) -> Settings:
    return Settings.load(database_url=_state.get("database_url"), env=_state.get("env"), **overrides)


def open_store(**overrides: Any):
    """The store, for a command that only reads or sends: one that does not exist yet is not
    created (StoreMissing); only dev, worker, server and migrate create a store."""
    from ..runtime import open_store as _open

    return _open(settings(**overrides), create=False)


def _logging(default: int = logging.INFO, *, traces: bool = False) -> None:
    """Log lines as DURABLY_LOG_FORMAT says; ``traces``: set up OpenTelemetry from OTEL_*."""
    from ..telemetry import configure_logging, configure_tracing

    level = logging.DEBUG if _state.get("verbose") else default
    configure_logging(settings().log_format, level)
    if traces:
        configure_tracing()


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")

