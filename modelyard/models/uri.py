"""Turn a model URI into a local directory holding the package."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from modelyard.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Sequence

    from modelyard.client.registry import RegistryClient
    from modelyard.entities.registry import ModelVersion


def parse_runs_uri(uri: str, field: str = "uri") -> tuple[str, str]:
    """'runs:/<run_id>/<path>' -> (run_id, path); anything else is refused, naming `field`."""
    if not uri.startswith("runs:/"):
        raise InvalidArgument(
            f"{field} {uri!r} is not runs:/<run_id>/<path>; give the run's id and the path in "
            "its artifacts, as log_model returns it",
            field=field,
        )
    rest = uri[len("runs:/") :].lstrip("/")
    run_id, _, path = rest.partition("/")
    if not run_id:
        raise InvalidArgument(
            f"{field} {uri!r} names no run; use runs:/<run_id>/<path>", field=field
        )
    return run_id, path


def parse_models_uri(uri: str) -> tuple[str, str, str]:
    """'models:/<name>/<version|stage|latest>' or 'models:/<name>@<alias>' -> (name, kind, ref).

    kind is one of "version", "stage", "latest", "alias".
    """
    rest = uri[len("models:/") :].strip("/")
    if "@" in rest:
        name, _, alias = rest.rpartition("@")
        if name and alias and "/" not in alias:
            return _check_name(uri, name), "alias", alias
    name, _, ref = rest.rpartition("/")
    if not name or not ref:
        raise InvalidArgument(
            f"model URI {uri!r} is not models:/<name>/<version>, models:/<name>@<alias> or "
            "models:/<name>/<stage>"
        )
    _check_name(uri, name)
    if ref.isascii() and ref.isdigit():  # int() refuses other digits, such as "²"
        return name, "version", ref
    if ref.lower() == "latest":
        return name, "latest", ref
    return name, "stage", ref


def check_models_uri(uri: str) -> tuple[str, str, str]:
    """As `parse_models_uri`, and the stage or alias it names must be one the registry could
    hold: a stage by name (any case, as MLflow), an alias by the registry's rules, which reserve
    'latest' and v<number> for versions. Refused, the URI is named, not a field it lacks."""
    from modelyard.entities.registry import Stage
    from modelyard.services.registry.names import alias_name

    name, kind, ref = parse_models_uri(uri)
    if kind == "stage":
        try:
            Stage.parse(ref)
        except ValueError:
            raise InvalidArgument(
                f"{ref!r} in {uri!r} is not a version, alias or stage (None, Staging, "
                "Production, Archived); an alias is written models:/<name>@<alias>"
            ) from None
    elif kind == "alias":
        try:
            alias_name("alias", ref)
        except InvalidArgument as exc:
            raise InvalidArgument(f"model URI {uri!r}: {exc.message}") from None
    return name, kind, ref


def _check_name(uri: str, name: str) -> str:
    """`name`, if the registry could hold a model so named: it goes into a search filter (for
    latest), where a quote in it made an error about a filter the user never wrote."""
    from modelyard.services.registry.names import model_name

    try:
        return model_name("name", name)
    except InvalidArgument as exc:
        raise InvalidArgument(f"model URI {uri!r}: {exc.message}") from None


def resolve_model_version(uri: str, registry: RegistryClient | None = None) -> tuple[str, int]:
    """(name, version) that a models:/ URI points at right now."""
    from modelyard.entities.registry import Stage
    from modelyard.errors import NotFound
    from modelyard.fluent import client

    name, kind, ref = check_models_uri(uri)
    registry = registry or client()
    if kind == "version":
        return name, int(ref)
    if kind == "alias":
        return name, registry.get_model_version_by_alias(name, ref).version
    versions: Sequence[ModelVersion]
    if kind == "latest":  # the newest version that can be loaded
        versions = registry.search_model_versions(
            f"name = '{name}' AND status = 'READY'", max_results=1, order_by=["version DESC"]
        )
    else:
        versions = registry.get_latest_versions(name, [Stage.parse(ref)])
    if not versions:
        raise NotFound(
            f"{uri} matches no version of {name!r}",
            resource_type="model_version",
            resource_name=uri,
        )
    return name, versions[0].version


def resolve_model_uri(uri: str, dst: Path | None = None) -> Path:
    if uri.startswith("models:/"):
        from modelyard.fluent import client

        name, version = resolve_model_version(uri)
        target = dst or Path(tempfile.mkdtemp(prefix="modelyard-model-"))
        return client().download_model_version(name, version, target)
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
        f"cannot load model from {uri!r}; use a local directory, file://..., "
        "runs:/<run_id>/<path>, models:/<name>/<version>, models:/<name>@<alias> or "
        "models:/<name>/<stage>"
    )
