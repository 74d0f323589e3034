"""`modelyard endpoints ...`: serving endpoints from the command line."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.text import Text

from modelyard.cli.output import console, done, ms, print_json, table
from modelyard.cli.tracking import Json, Token, Uri, client_for
from modelyard.client import Client
from modelyard.client.serving import served_models_arg
from modelyard.entities.serving import (
    BatchingConfig,
    Endpoint,
    InferenceLogConfig,
    MissingFeaturePolicy,
    ServedModel,
)

_DEFAULT_MAX_BATCH = 64

endpoints = typer.Typer(help="Model serving endpoints.", no_args_is_help=True)

Models = Annotated[
    list[str],
    typer.Option(
        "--model",
        help="models:/name@alias or models:/name/3, optionally =PERCENT (repeatable; sums to 100).",
    ),
]
LogSampling = Annotated[
    float | None, typer.Option(help="Record this fraction of requests in the inference log.")
]
MaxBatch = Annotated[int, typer.Option(min=1, help="Rows per batched model call (1: no batching).")]
Wait = Annotated[
    bool, typer.Option("--wait", help="Return once every served model is READY (or failed).")
]
MissingFeatures = Annotated[
    MissingFeaturePolicy,
    typer.Option(
        "--missing-features",
        case_sensitive=False,
        help="For models trained from a feature service: FAIL a call whose features are missing "
        "or stale, or IMPUTE their type's default.",
    ),
]


def _served(models: list[str], max_batch: int) -> list[ServedModel]:
    """--model values as the SDK takes them (served_models_arg), each batching `max_batch`."""
    batching = BatchingConfig(max_batch_size=max_batch)
    return [replace(s, batching=batching) for s in served_models_arg(models)]


def _show(endpoint: Endpoint) -> None:
    table(
        f"endpoint {endpoint.name} (missing features: {endpoint.missing_features})",
        ["served model", "model uri", "traffic", "state", "version", "loaded", "reason"],
        [
            (
                s.name,
                s.model_uri,
                f"{s.traffic_percent}%",
                s.state or "",
                s.version or "",
                ms(s.loaded_time),
                s.reason,
            )
            for s in endpoint.served_models
        ],
    )


@endpoints.command("create")
def endpoints_create(
    name: str,
    model: Models,
    log_sampling: LogSampling = None,
    max_batch: MaxBatch = _DEFAULT_MAX_BATCH,
    missing_features: MissingFeatures = MissingFeaturePolicy.FAIL,
    wait: Wait = False,
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Create an endpoint serving one or more registered models."""
    client = client_for(uri, token)
    served = _served(model, max_batch)
    created = client.create_endpoint(name, served, _log_config(log_sampling), missing_features)
    _report(client, created, wait, as_json)


@endpoints.command("update")
def endpoints_update(
    name: str,
    model: Models,
    log_sampling: Annotated[
        float | None,
        typer.Option(
            help="Record this fraction of requests in the inference log (0: stop logging). "
            "Omitted: keep the endpoint's current setting."
        ),
    ] = None,
    max_batch: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Rows per batched model call (1: no batching). Omitted: each model keeps its "
            "current value (64 for a model the endpoint did not serve).",
        ),
    ] = None,
    missing_features: Annotated[
        MissingFeaturePolicy | None,
        typer.Option(
            "--missing-features",
            case_sensitive=False,
            help="FAIL or IMPUTE calls whose features are missing or stale. Omitted: keep the "
            "endpoint's current policy.",
        ),
    ] = None,
    wait: Wait = False,
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Replace an endpoint's served models (unchanged ones keep serving while others load).

    --model replaces the list of served models; the other settings change only if given."""
    client = client_for(uri, token)
    # The API replaces the whole endpoint: start from what it has, so a flag left out of this
    # command does not silently reset logging, batching or the missing-features policy.
    current = client.get_endpoint(name)
    batching = {s.model_uri: s.batching for s in current.served_models}
    served = []
    for s in _served(model, _DEFAULT_MAX_BATCH):
        kept = batching.get(s.model_uri, s.batching)
        if max_batch is not None:
            kept = replace(kept, max_batch_size=max_batch)
        served.append(replace(s, batching=kept))
    log = current.inference_log if log_sampling is None else _log_config(log_sampling)
    policy = current.missing_features if missing_features is None else missing_features
    updated = client.update_endpoint(name, served, log, policy)
    _report(client, updated, wait, as_json)


def _log_config(log_sampling: float | None) -> InferenceLogConfig | None:
    return InferenceLogConfig(enabled=True, sampling_rate=log_sampling) if log_sampling else None


def _report(client: Client, endpoint: Endpoint, wait: bool, as_json: bool) -> None:
    """Show a created or updated endpoint, once its models are ready if asked to wait."""
    if wait:
        with console.status(Text(f"waiting for {endpoint.name} to load its models...")):
            endpoint = client.wait_endpoint_ready(endpoint.name)
    if as_json:
        print_json(endpoint)
    else:
        _show(endpoint)


@endpoints.command("list")
def endpoints_list(uri: Uri = None, token: Token = None, as_json: Json = False) -> None:
    """List endpoints with the state of their served models."""
    found = client_for(uri, token).list_endpoints()
    if as_json:
        print_json({"endpoints": found})
        return
    table(
        None,
        ["endpoint", "served models", "updated"],
        [
            (
                e.name,
                ", ".join(
                    f"{s.name} {s.traffic_percent}% {s.state or ''} v{s.version}"
                    for s in e.served_models
                ),
                ms(e.last_update_time),
            )
            for e in found
        ],
    )


@endpoints.command("get")
def endpoints_get(name: str, uri: Uri = None, token: Token = None, as_json: Json = False) -> None:
    """Show an endpoint: served models, traffic, state and versions."""
    endpoint = client_for(uri, token).get_endpoint(name)
    if as_json:
        print_json(endpoint)
    else:
        _show(endpoint)


@endpoints.command("delete")
def endpoints_delete(
    name: str, uri: Uri = None, token: Token = None, as_json: Json = False
) -> None:
    """Delete an endpoint."""
    client_for(uri, token).delete_endpoint(name)
    done(as_json, f"Deleted endpoint {name}", name=name, deleted=True)


@endpoints.command("predict")
def endpoints_predict(
    name: str,
    data: Annotated[
        Path,
        typer.Option(
            "--data", help="A CSV file, or JSON records / columns.", exists=True, dir_okay=False
        ),
    ],
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Send rows to an endpoint and print the predictions."""
    frame = _rows(data)
    # The SDK sends the rows as the model takes them: a column each, or one array.
    outputs = client_for(uri, token).predict(name, frame)
    if as_json:
        print_json({k: v.tolist() for k, v in outputs.items()})
        return
    names = list(outputs)
    table(None, names, list(zip(*(outputs[n].tolist() for n in names), strict=True)))


def _rows(data: Path) -> pd.DataFrame:
    """The table in a CSV or JSON file; BadParameter saying what the file must hold."""
    try:
        if data.suffix.lower() == ".csv":
            return pd.read_csv(data)
        return pd.DataFrame(json.loads(data.read_text()))
    except json.JSONDecodeError as exc:
        problem = f"is not JSON ({exc})"
    except ValueError as exc:  # JSON that is no table, an empty CSV, no text at all
        problem = f"holds no table ({exc})"
    raise typer.BadParameter(
        f"{data} {problem}; give a .csv file with a header row, or JSON records "
        '([{"a": 1, "b": 2}, ...]) or columns ({"a": [1, ...], "b": [2, ...]})',
        param_hint="'--data'",
    )
