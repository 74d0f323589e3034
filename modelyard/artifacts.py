"""mlflow.artifacts' functions: a run's files by `runs:/<run_id>/<path>` URI, or by run id and
path, so code written against MLflow's module ports by changing the import."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

from modelyard import fluent
from modelyard.client import Client
from modelyard.entities import FileInfo
from modelyard.errors import InvalidArgument
from modelyard.models.uri import parse_runs_uri


def download_artifacts(
    artifact_uri: str | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    dst_path: str | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Download a run's file or directory; the local path of what was downloaded."""
    rid, path = _run_and_path(artifact_uri, run_id, artifact_path)
    return _call(tracking_uri, lambda c: c.download_artifacts(rid, path, dst_path))


def list_artifacts(
    artifact_uri: str | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    tracking_uri: str | None = None,
) -> list[FileInfo]:
    """The files and directories directly under a run's path."""
    rid, path = _run_and_path(artifact_uri, run_id, artifact_path)
    return _call(tracking_uri, lambda c: c.list_artifacts(rid, path or None))


def load_text(artifact_uri: str) -> str:
    return _read(artifact_uri).decode()


def load_dict(artifact_uri: str) -> dict[str, Any]:
    """A file log_dict wrote: JSON, or YAML where the name ends in .yaml or .yml."""
    import yaml  # as log_dict: only for the files that need it

    data = _read(artifact_uri)
    is_yaml = artifact_uri.endswith((".yaml", ".yml"))
    try:
        loaded = yaml.safe_load(data) if is_yaml else json.loads(data)
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidArgument(
            f"{artifact_uri} is not a {'YAML' if is_yaml else 'JSON'} file ({exc}); load it "
            "with load_text",
            field="artifact_uri",
        ) from None
    if not isinstance(loaded, dict):
        raise InvalidArgument(
            f"{artifact_uri} holds a {type(loaded).__name__}, not a dictionary; load it with "
            "load_text",
            field="artifact_uri",
        )
    return loaded


def load_image(artifact_uri: str) -> Any:
    """A PIL image (Pillow must be installed: pip install pillow)."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("load_image needs Pillow: pip install pillow") from None
    image = Image.open(io.BytesIO(_read(artifact_uri)))
    image.load()
    return image


def _run_and_path(
    artifact_uri: str | None, run_id: str | None, artifact_path: str | None
) -> tuple[str, str]:
    if artifact_uri is not None:
        if run_id is not None or artifact_path is not None:
            raise InvalidArgument(
                "give either artifact_uri, or run_id (and artifact_path), not both",
                field="artifact_uri",
            )
        return _parse(artifact_uri)
    if not run_id:
        raise InvalidArgument("give artifact_uri (runs:/<run_id>/<path>) or run_id", field="run_id")
    return run_id, (artifact_path or "").strip("/")


def _parse(artifact_uri: str) -> tuple[str, str]:
    run_id, path = parse_runs_uri(artifact_uri, field="artifact_uri")
    return run_id, path.strip("/")


def _read(artifact_uri: str) -> bytes:
    run_id, path = _parse(artifact_uri)
    _info, chunks = fluent.client().open_artifact(run_id, path)
    return b"".join(chunks)


def _call(tracking_uri: str | None, call: Callable[[Client], Any]) -> Any:
    """On the fluent API's client, or on one made for `tracking_uri` and closed after."""
    if tracking_uri is None:
        return call(fluent.client())
    with Client(tracking_uri) as client:
        return call(client)
