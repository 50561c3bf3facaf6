"""The one error style of the ``spiral`` command line: click's plain ``Error: …`` lines on stderr.

Usage and configuration errors (exit 2) go through :func:`usage_error`, which raises click's
``UsageError`` so they print like click's own (a bad option value, a missing argument): the usage
line, a pointer to ``-h``, then ``Error: …``. Failures of the work itself (exit 1, or another code)
go through :func:`fail`: one ``Error: …`` line. No rich boxes anywhere, so errors read the same in
a terminal, a CI log and ``kubectl logs``.
"""

from __future__ import annotations

from typing import NoReturn

import typer

#: typer ships its own copy of click; only its exception classes are printed as usage errors
#: (click's own ``UsageError`` would escape as a traceback). BadParameter's base is that class.
UsageError: type[Exception] = typer.BadParameter.__bases__[0]


def usage_error(message: str, param_hint: str | None = None) -> NoReturn:
    """Exit 2 with ``message`` (naming the option when ``param_hint`` is given).

    Raises:
        UsageError: always (typer prints it and exits 2).
    """
    if param_hint is not None:
        raise typer.BadParameter(message, param_hint=param_hint)
    raise UsageError(message)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``Error: message`` on stderr and exit ``code``.

    Raises:
        typer.Exit: always.
    """
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)
