"""The `modelyard` command line: run the platform, and look at what it holds.

Commands only parse arguments and call `modelyard.Client` or the server bootstrap; output is a
table, or JSON with --json. Errors print what went wrong and what to do, without a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from modelyard.cli import auth, automl, features, registry, server, serving, tracking
from modelyard.cli.output import err_console
from modelyard.errors import ModelyardError

app = typer.Typer(
    name="modelyard",
    help="Modelyard: experiment tracking, model registry, feature store and serving.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
server.register(app)
app.add_typer(tracking.experiments, name="experiments")
app.add_typer(tracking.runs, name="runs")
app.add_typer(tracking.artifacts, name="artifacts")
app.add_typer(registry.models, name="models")
app.add_typer(serving.endpoints, name="endpoints")
app.add_typer(features.features, name="features")
app.add_typer(auth.admin, name="admin")
app.add_typer(auth.tokens, name="tokens")
app.add_typer(auth.users, name="users")
app.command("audit")(auth.audit)
app.add_typer(automl.app, name="automl")


def main() -> None:
    try:
        app()
    except ModelyardError as exc:
        hint = ""
        if exc.error_code == "UNAVAILABLE":
            hint = "\nIs the server running? Start one with `modelyard up`, or set MODELYARD_URI."
        err_console.print(f"[red]error[/red] ({exc.error_code}): {exc}{hint}")
        sys.exit(1)
    except Exception as exc:
        from pydantic import ValidationError  # here: client commands never import pydantic

        if not isinstance(exc, ValidationError):
            raise
        _print_bad_settings(exc)
        sys.exit(2)


def _print_bad_settings(exc: Any) -> None:
    """A setting from a flag or a MODELYARD_* variable that does not validate: say which."""
    for error in exc.errors():
        path = [str(part) for part in error["loc"]]
        env = "MODELYARD_" + "__".join(path).upper()
        err_console.print(
            f"[red]error[/red]: setting {'.'.join(path)} is {error.get('input')!r}: "
            f"{error['msg']}. Fix {env}, or the flag that sets it (see the command's --help), "
            "and run the command again."
        )
