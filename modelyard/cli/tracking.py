"""`modelyard experiments|runs|artifacts ...`: look at and manage tracking data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelyard.cli.output import (
    done,
    file_progress,
    key_values,
    ms,
    note,
    print_json,
    print_page,
    say,
    table,
)
from modelyard.client import Client
from modelyard.entities import Experiment, Run, ViewType

Uri = Annotated[
    str | None,
    typer.Option("--uri", envvar="MODELYARD_URI", help="Server address (default 127.0.0.1:50051)."),
]
Token = Annotated[str | None, typer.Option("--token", envvar="MODELYARD_TOKEN", help="API token.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
View = Annotated[
    str,
    typer.Option("--view", "-v", help="active, deleted or all (or MLflow's active_only, ...)."),
]
MaxResults = Annotated[int, typer.Option("--max-results", help="Page size.")]
PageToken = Annotated[
    str | None,
    typer.Option("--page-token", help="Where the previous page ended (it prints the token)."),
]

experiments = typer.Typer(help="Experiments.", no_args_is_help=True)
runs = typer.Typer(help="Runs.", no_args_is_help=True)
artifacts = typer.Typer(help="Run artifacts.", no_args_is_help=True)


def client_for(uri: str | None, token: str | None) -> Client:
    return Client(uri, token)


def _view(value: str) -> ViewType:
    views = {"active": ViewType.ACTIVE_ONLY, "deleted": ViewType.DELETED_ONLY, "all": ViewType.ALL}
    # MLflow's CLI spells them active_only and deleted_only: accept those from its users' habits.
    view = views.get(value.lower().removesuffix("_only"))
    if view is None:
        raise typer.BadParameter(f"--view must be one of {', '.join(views)}")
    return view


def _tags(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"--tag {pair!r} must look like key=value")
        out[key] = value
    return out


# -- experiments -------------------------------------------------------------------------------


@experiments.command("search")
@experiments.command("list")
def experiments_search(
    filter_string: Annotated[
        str, typer.Option("--filter", help="e.g. \"name LIKE 'fraud%' and tags.team = 'ml'\"")
    ] = "",
    order_by: Annotated[
        list[str] | None,
        typer.Option("--order-by", help="e.g. 'last_update_time DESC'; repeatable."),
    ] = None,
    view: View = "active",
    max_results: MaxResults = 1000,
    page_token: PageToken = None,
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Search experiments with MLflow's filter grammar (`list` is the same command)."""
    page = client_for(uri, token).search_experiments(
        view_type=_view(view),
        max_results=max_results,
        filter_string=filter_string,
        order_by=order_by,
        page_token=page_token,
    )
    print_page(page, "experiments", as_json, _experiments_table)


def _experiments_table(found: list[Experiment]) -> None:
    table(
        None,
        ["id", "name", "stage", "created", "artifact location"],
        [
            (e.experiment_id, e.name, e.lifecycle_stage, ms(e.creation_time), e.artifact_location)
            for e in found
        ],
    )


@experiments.command("create")
def experiments_create(
    name: str,
    artifact_location: Annotated[
        str | None, typer.Option(help="Where its runs' artifacts go (default: the server's root).")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option(help="key=value, repeatable.")] = None,
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Create an experiment and print its id."""
    experiment_id = client_for(uri, token).create_experiment(name, artifact_location, _tags(tag))
    if as_json:
        print_json({"experiment_id": experiment_id})
    else:
        say(f"Created experiment {name!r} with id {experiment_id}")


@experiments.command("get")
def experiments_get(
    experiment_id: Annotated[str | None, typer.Argument()] = None,
    name: Annotated[str | None, typer.Option(help="Look up by name instead of id.")] = None,
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Show one experiment, by id or --name."""
    client = client_for(uri, token)
    if experiment_id is None and name is None:
        raise typer.BadParameter(
            "give an experiment id or --name; `modelyard experiments list` shows both"
        )
    if experiment_id is not None and name is not None:
        raise typer.BadParameter("give an experiment id or --name, not both")
    if name is not None:
        from modelyard.errors import NotFound

        found = client.get_experiment_by_name(name)
        if found is None:
            raise NotFound(
                f"no experiment is named {name!r}; list them with `modelyard experiments list`"
            )
        experiment = found
    else:
        assert experiment_id is not None
        experiment = client.get_experiment(experiment_id)
    if as_json:
        print_json(experiment)
        return
    key_values(
        f"experiment {experiment.experiment_id}",
        {
            "name": experiment.name,
            "stage": experiment.lifecycle_stage,
            "artifact_location": experiment.artifact_location,
            "created": ms(experiment.creation_time),
            "updated": ms(experiment.last_update_time),
            **{f"tags.{k}": v for k, v in experiment.tags.items()},
        },
    )


@experiments.command("rename")
def experiments_rename(
    experiment_id: str,
    new_name: str,
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Rename an experiment."""
    client_for(uri, token).rename_experiment(experiment_id, new_name)
    done(
        as_json,
        f"Renamed experiment {experiment_id} to {new_name!r}",
        experiment_id=experiment_id,
        name=new_name,
    )


@experiments.command("delete")
def experiments_delete(
    experiment_id: str, uri: Uri = None, token: Token = None, as_json: Json = False
) -> None:
    """Delete an experiment and its runs (restorable)."""
    client_for(uri, token).delete_experiment(experiment_id)
    done(
        as_json,
        f"Deleted experiment {experiment_id}; "
        f"undo with `modelyard experiments restore {experiment_id}`",
        experiment_id=experiment_id,
        deleted=True,
    )


@experiments.command("restore")
def experiments_restore(
    experiment_id: str, uri: Uri = None, token: Token = None, as_json: Json = False
) -> None:
    """Restore a deleted experiment and the runs deleted with it."""
    client_for(uri, token).restore_experiment(experiment_id)
    done(
        as_json,
        f"Restored experiment {experiment_id}",
        experiment_id=experiment_id,
        restored=True,
    )


@experiments.command("set-tag")
def experiments_set_tag(
    experiment_id: str,
    key: str,
    value: str,
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Set (or overwrite) a tag on an experiment."""
    client_for(uri, token).set_experiment_tag(experiment_id, key, value)
    done(
        as_json,
        f"Set tag {key}={value!r} on experiment {experiment_id}",
        experiment_id=experiment_id,
        key=key,
        value=value,
    )


@experiments.command("delete-tag")
def experiments_delete_tag(
    experiment_id: str, key: str, uri: Uri = None, token: Token = None, as_json: Json = False
) -> None:
    """Remove a tag from an experiment."""
    client_for(uri, token).delete_experiment_tag(experiment_id, key)
    done(
        as_json,
        f"Deleted tag {key} from experiment {experiment_id}",
        experiment_id=experiment_id,
        key=key,
        deleted=True,
    )


# -- runs --------------------------------------------------------------------------------------

_SHOWN_KEYS = 6  # metric and param columns a runs table shows, each


def _runs_table(found: list[Run]) -> None:
    """Runs with up to six metric and six param columns (--json has everything)."""
    all_metrics = sorted({k for r in found for k in r.data.metrics})
    all_params = sorted({k for r in found for k in r.data.params})
    metric_keys, param_keys = all_metrics[:_SHOWN_KEYS], all_params[:_SHOWN_KEYS]
    table(
        None,
        [
            "run id",
            "name",
            "status",
            "started",
            *[f"metrics.{k}" for k in metric_keys],
            *[f"params.{k}" for k in param_keys],
        ],
        [
            (
                r.info.run_id,
                r.info.run_name,
                r.info.status,
                ms(r.info.start_time),
                *[_fmt(r.data.metrics.get(k)) for k in metric_keys],
                *[r.data.params.get(k, "") for k in param_keys],
            )
            for r in found
        ],
    )
    hidden = [
        f"{n} {kind} column{'s' if n > 1 else ''}"
        for kind, n in (
            ("metric", len(all_metrics) - len(metric_keys)),
            ("param", len(all_params) - len(param_keys)),
        )
        if n
    ]
    if hidden:
        say(
            f"{' and '.join(hidden)} not shown (the first {_SHOWN_KEYS} of each, by name); "
            "--json has them all"
        )


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


@runs.command("search")
@runs.command("list")
def runs_search(
    experiment_id: Annotated[
        list[str] | None,
        typer.Option("--experiment-id", "-e", help="Repeatable (default 0, the Default one)."),
    ] = None,
    filter_string: Annotated[
        str, typer.Option("--filter", help="e.g. \"metrics.rmse < 0.8 and params.alpha = '0.5'\"")
    ] = "",
    order_by: Annotated[
        list[str] | None, typer.Option("--order-by", help="e.g. 'metrics.rmse ASC'")
    ] = None,
    max_results: MaxResults = 100,
    page_token: PageToken = None,
    view: View = "active",
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Search runs with MLflow's filter grammar (`list` is the same command)."""
    searched = experiment_id or ["0"]
    page = client_for(uri, token).search_runs(
        searched, filter_string, _view(view), max_results, order_by, page_token
    )
    print_page(page, "runs", as_json, _runs_table)
    if as_json:
        return
    which = f"experiment{'s' if len(searched) > 1 else ''} {', '.join(searched)}"
    if not experiment_id:  # runs elsewhere would look missing: say where it looked
        note(f"searched {which} (the default); pass -e ID for another")
    if not page:
        note(f"no runs in {which} (does it exist? `modelyard experiments list`)")


@runs.command("get")
def runs_get(run_id: str, uri: Uri = None, token: Token = None, as_json: Json = False) -> None:
    """Show a run: info, params, latest metrics, tags and dataset inputs."""
    run = client_for(uri, token).get_run(run_id)
    if as_json:
        print_json(run)
        return
    info = run.info
    key_values(
        f"run {info.run_id}",
        {
            "name": info.run_name,
            "experiment_id": info.experiment_id,
            "status": info.status,
            "stage": info.lifecycle_stage,
            "user": info.user_id,
            "started": ms(info.start_time),
            "ended": ms(info.end_time),
            "parent_run_id": info.parent_run_id or "",
            "artifact_uri": info.artifact_uri,
        },
    )
    if run.data.params:
        key_values("params", run.data.params)
    if run.data.metrics:
        table(
            "metrics (latest)",
            ["key", "value", "step"],
            [(m.key, _fmt(m.value), m.step) for m in run.data.latest_metrics],
        )
    if run.data.tags:
        key_values("tags", run.data.tags)
    if run.inputs.dataset_inputs:
        table(
            "dataset inputs",
            ["name", "digest", "context"],
            [
                (
                    d.dataset.name,
                    d.dataset.digest,
                    d.context,
                )
                for d in run.inputs.dataset_inputs
            ],
        )


@runs.command("delete")
def runs_delete(run_id: str, uri: Uri = None, token: Token = None, as_json: Json = False) -> None:
    """Delete a run (restorable)."""
    client_for(uri, token).delete_run(run_id)
    done(
        as_json,
        f"Deleted run {run_id}; undo with `modelyard runs restore {run_id}`",
        run_id=run_id,
        deleted=True,
    )


@runs.command("restore")
def runs_restore(run_id: str, uri: Uri = None, token: Token = None, as_json: Json = False) -> None:
    """Restore a deleted run."""
    client_for(uri, token).restore_run(run_id)
    done(as_json, f"Restored run {run_id}", run_id=run_id, restored=True)


@runs.command("set-tag")
def runs_set_tag(
    run_id: str, key: str, value: str, uri: Uri = None, token: Token = None, as_json: Json = False
) -> None:
    """Set (or overwrite) a tag on a run."""
    client_for(uri, token).set_tag(run_id, key, value)
    done(as_json, f"Set tag {key}={value!r} on run {run_id}", run_id=run_id, key=key, value=value)


@runs.command("delete-tag")
def runs_delete_tag(
    run_id: str, key: str, uri: Uri = None, token: Token = None, as_json: Json = False
) -> None:
    """Remove a tag from a run."""
    client_for(uri, token).delete_tag(run_id, key)
    done(as_json, f"Deleted tag {key} from run {run_id}", run_id=run_id, key=key, deleted=True)


# -- artifacts ---------------------------------------------------------------------------------


@artifacts.command("list")
def artifacts_list(
    run_id: str,
    path: Annotated[str, typer.Argument()] = "",
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Every file below, not one level.")
    ] = False,
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """List a run's artifacts (one directory level unless --recursive)."""
    files = list(client_for(uri, token).iter_artifacts(run_id, path, recursive=recursive))
    if as_json:
        print_json({"files": files})
        return
    table(
        None,
        ["path", "size", "sha256"],
        [
            (
                f.path + ("/" if f.is_dir else ""),
                "" if f.is_dir else f.file_size,
                (f.sha256 or "")[:16],
            )
            for f in files
        ],
    )


@artifacts.command("download")
def artifacts_download(
    run_id: str,
    path: Annotated[str, typer.Argument(help="File or directory; empty for everything.")] = "",
    dst: Annotated[Path, typer.Option("--dst", help="Where to put it.")] = Path("."),
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Download a file or a directory, checking every file's sha256."""
    client = client_for(uri, token)
    files = list(client.iter_artifacts(run_id, path, recursive=True))
    with file_progress("downloading", as_json) as progress:
        task = progress.add_task("", total=max(len(files), 1))
        if path and not files:  # a single file
            local = client.download_artifacts(run_id, path, dst)
            count = 1
            progress.advance(task)
        else:
            base = path.strip("/")
            for f in files:
                progress.update(task, description=f.path)
                rel_dir = (
                    Path(f.path).parent.relative_to(Path(base).parent)
                    if base
                    else Path(f.path).parent
                )
                client.download_artifacts(run_id, f.path, dst / rel_dir)
                progress.advance(task)
            local = str(dst / Path(base).name) if base else str(dst)
            count = len(files)
    done(as_json, f"Downloaded to {local}", run_id=run_id, path=str(local), files=count)


@artifacts.command("upload")
def artifacts_upload(
    run_id: str,
    local_path: Annotated[Path, typer.Argument(exists=True, help="A file or a directory.")],
    artifact_path: Annotated[
        str | None, typer.Option("--artifact-path", help="The run's directory to put it in.")
    ] = None,
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Upload a file or a directory to a run."""
    client = client_for(uri, token)
    if local_path.is_dir():
        files = [p for p in local_path.rglob("*") if p.is_file()]
        with file_progress("uploading", as_json) as progress:
            task = progress.add_task("", total=len(files))
            for p in files:
                rel_parent = p.parent.relative_to(local_path).as_posix()
                parts = [x for x in (artifact_path, rel_parent if rel_parent != "." else "") if x]
                progress.update(task, description=str(p.relative_to(local_path)))
                client.log_artifact(run_id, p, "/".join(parts) or None)
                progress.advance(task)
        done(
            as_json,
            f"Uploaded {len(files)} files",
            run_id=run_id,
            artifact_path=artifact_path or "",
            files=len(files),
        )
    else:
        info = client.log_artifact(run_id, local_path, artifact_path)
        done(
            as_json,
            f"Uploaded {info.path} ({info.file_size} bytes, sha256 {info.sha256})",
            run_id=run_id,
            artifact_path=info.path,
            files=1,
            size=info.file_size,
            sha256=info.sha256,
        )
