"""The `modelyard` command line: run the platform, and look at what it holds.

Commands only parse arguments and call `modelyard.Client` or the server bootstrap; output is a
table, or JSON with --json. Errors print what went wrong and what to do, without a traceback
(`--debug` or MODELYARD_DEBUG=1 adds it).
"""

from __future__ import annotations

import sys
import traceback
from importlib import metadata
from typing import Annotated, Any, NoReturn

import typer
from rich.text import Text
from typer import _click as click  # typer vendors click: its exceptions are these classes
from typer.rich_utils import rich_format_error

from modelyard.cli import auth, automl, features, registry, server, serving, tracking
from modelyard.cli.output import err_console, print_json
from modelyard.client import config
from modelyard.errors import ModelyardError, NoServer, Unavailable, reword

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

_DEBUG_HINT = "run it again with MODELYARD_DEBUG=1 to see the traceback"
# The services' hints name the API method that helps, right for the SDK; on the command line the
# command that calls it is what to run.
_COMMANDS = {
    "SearchExperiments": "`modelyard experiments list`",
    "CreateExperiment": "`modelyard experiments create NAME`",
    "SearchRuns": "`modelyard runs list`",
    "SearchRegisteredModels": "`modelyard models list`",
    "SearchModelVersions": "`modelyard models versions NAME`",
    "ListArtifacts": "`modelyard artifacts list RUN_ID`",
    "ListEndpoints": "`modelyard endpoints list`",
    "SetRegisteredModelAlias": "`modelyard models alias set NAME ALIAS VERSION`",
    "CreateModelVersion": "`modelyard.register_model` in Python",
}
_debug = False


def _version(asked: bool) -> None:
    if asked:
        # The installed distribution's version, the one pip and bug reports name.
        print(f"modelyard {metadata.version('modelyard')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,  # before the "missing command" check, as --help
            help="Print the installed version and exit.",
        ),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            envvar="MODELYARD_DEBUG",
            help="Print the traceback of an error too (for a bug report).",
        ),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            envvar="MODELYARD_TIMEOUT",
            min=0.001,
            help="Seconds each call to the server may take before the command gives up "
            "(default 60).",
        ),
    ] = None,
) -> None:
    global _debug
    _debug = debug
    config.set_timeout(timeout)


def main() -> None:
    as_json = "--json" in sys.argv[1:]  # a script parses what it asked for, a failure included
    try:
        # standalone_mode=False: click's own errors come here too, so --json covers them
        status = app(standalone_mode=False)
    except click.ClickException as exc:  # a usage error: a bad or missing flag, argument, file
        _usage_error(exc, as_json)
    except typer.Abort:  # EOF at a prompt
        err_console.print("Aborted.", markup=False)
        sys.exit(1)
    except Exception as exc:
        if _debug:
            traceback.print_exc()
        message, code = _describe(exc)
        if as_json:
            print_json({"error": _error_object(exc, message)})
        else:
            # soft_wrap: one line per sentence, so a path or flag is never broken in two
            err_console.print(Text.assemble(("error", "red"), message), soft_wrap=True)
        sys.exit(code)
    # click returns typer.Exit's status (130 for Ctrl-C, 0 after --help) instead of raising it
    sys.exit(status if isinstance(status, int) else 0)


def _usage_error(exc: click.ClickException, as_json: bool) -> NoReturn:
    """Exit 2 (1 for a file click cannot open) with click's message: in the JSON error shape
    with --json, else as typer draws it (usage, the --help hint, the message in a box)."""
    if not as_json:
        rich_format_error(exc)
        sys.exit(exc.exit_code)
    param = getattr(exc, "param", None)
    ctx = getattr(exc, "ctx", None)
    help_hint = f"\nSee `{ctx.command_path} --help`." if ctx is not None else ""
    print_json(
        {
            "error": {
                "code": "INVALID_ARGUMENT",
                "message": exc.format_message() + help_hint,
                "field": param.opts[0] if param is not None and param.opts else None,
            }
        }
    )
    sys.exit(exc.exit_code)


def _error_object(exc: Exception, message: str) -> dict[str, Any]:
    """`{"code", "message", "field"}`: the status name as the API's errors have it, and the
    printed message without the prefix the plain form puts after "error"."""
    if isinstance(exc, ModelyardError):  # message: " (CODE): what happened\nwhat to do"
        return {"code": exc.code.name, "message": message.partition("): ")[2], "field": exc.field}
    return {"code": "UNKNOWN", "message": message.removeprefix(":").strip(), "field": None}


def _describe(exc: Exception) -> tuple[str, int]:
    """What to print after "error" and the exit status, for any exception a command lets out.

    Known failures (the server, the database, a port or a file) get a hint of what to do; anything
    else is a bug to report, so it says how to see its traceback rather than hiding it.
    """
    if isinstance(exc, ModelyardError):
        hint = ""
        if exc.field == "tls_ca":  # the message says which CA file to give
            hint = ""
        elif isinstance(exc, NoServer) or exc.field == "uri":  # the message says what to do
            hint = "\nOn the command line, --uri names the server."
        elif isinstance(exc, Unavailable):
            hint = (
                "\nIs the server running? Start one with `modelyard up`, or point --uri "
                "(MODELYARD_URI) at the one you use."
            )
        said = reword(str(exc), _COMMANDS)
        return f" ({exc.code.name}): {said}{hint}", 1
    if isinstance(exc, OSError):
        return f": {_os_error(exc)}", 1
    # Imported only if a command already did: client commands never load pydantic or SQLAlchemy.
    if (pydantic := sys.modules.get("pydantic")) and isinstance(exc, pydantic.ValidationError):
        return _bad_settings(exc), 2
    if (sa := sys.modules.get("sqlalchemy.exc")) and isinstance(exc, sa.OperationalError):
        cause = str(exc.orig or exc).strip().splitlines()[0]
        return (
            f": could not use the metadata database: {cause}\nCheck that the database is up "
            "and reachable, and that --backend-store-uri (MODELYARD_BACKEND_STORE_URI) names it.",
            1,
        )
    if sa and isinstance(exc, sa.ArgumentError):
        return (
            f": the backend store URI is not usable: {exc}\nPass --backend-store-uri "
            "(MODELYARD_BACKEND_STORE_URI) as sqlite:///path.db or postgresql://user@host/db.",
            1,
        )
    return f": unexpected {type(exc).__name__}: {exc}\nThis is a bug; {_DEBUG_HINT}.", 1


def _os_error(exc: OSError) -> str:
    if exc.filename is not None:  # a path the user gave: say which, and what to check
        return (
            f"{exc.strerror or exc}: {exc.filename}\nCheck the path and its permissions, "
            "then run the command again."
        )
    if exc.errno is None:  # raised with a sentence of ours that already says what to do
        return str(exc)
    return f"{exc.strerror or exc}\nIf the cause is not clear, {_DEBUG_HINT}."


def _bad_settings(exc: Any) -> str:
    """A setting from a flag or a MODELYARD_* variable that does not validate: say which."""
    lines = []
    for error in exc.errors():
        path = [str(part) for part in error["loc"]]
        env = "MODELYARD_" + "__".join(path).upper()
        lines.append(
            f"setting {'.'.join(path)} is {error.get('input')!r}: {error['msg']}. Fix {env}, or "
            "the flag that sets it (see the command's --help), and run the command again."
        )
    return ": " + "\nerror: ".join(lines)
