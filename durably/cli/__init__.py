"""The ``durably`` command line.

Exit codes: 0 ok, 1 error (bad input, unreachable store; one line on stderr), 2 usage.
"""

from __future__ import annotations

import sys

import click

from ..errors import DurablyError
from .base import _state, cli
from . import chaos, ledger, operations, processes  # noqa: F401 - they add their commands to ``cli``

_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2; before, help and Exit(0)


def main() -> None:
    try:
        # Without standalone mode click returns (not raises) the code of a click Exit.
        code = cli.main(prog_name="durably", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Abort:
        sys.stderr.write("aborted\n")
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except _NO_ARGS as exc:  # ``durably`` alone: its help
        sys.stdout.write(exc.format_message() + "\n")
    except click.ClickException as exc:
        sys.stderr.write(f"error: {exc.format_message()}\n")
        sys.exit(exc.exit_code)
    except DurablyError as exc:
        if _state.get("verbose"):
            raise
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
