"""Turn a model URI into a local directory holding the package."""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from modelyard.errors import InvalidArgument


def parse_runs_uri(uri: str) -> tuple[str, str]:
    """'runs:/<run_id>/<path>' -> (run_id, path)."""
    rest = uri[len("runs:/") :].lstrip("/")
    run_id, _, path = rest.partition("/")
    if not run_id:
        raise InvalidArgument(f"model URI {uri!r} names no run; use runs:/<run_id>/<path>")
    return run_id, path


def resolve_model_uri(uri: str, dst: Path | None = None) -> Path:
    if uri.startswith("runs:/"):
        from modelyard.fluent import client

        run_id, path = parse_runs_uri(uri)
        target = dst or Path(tempfile.mkdtemp(prefix="modelyard-model-"))
        return Path(client().download_artifacts(run_id, path, target))
    if uri.startswith("file://"):
        return Path(unquote(urlparse(uri).path))
    if "://" not in uri and ":/" not in uri and Path(uri).exists():
        return Path(uri)
    raise InvalidArgument(
        f"cannot load model from {uri!r}; use a local directory, file://..., or "
        "runs:/<run_id>/<path>"
    )
