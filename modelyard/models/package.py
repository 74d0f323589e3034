"""The model package format.

    model/
      MLmodel              YAML manifest (below)
      model.pkl            the flavor's own files
      requirements.txt     pip requirements the model was logged with
      input_example.json   optional

The manifest records the flavors the model can be loaded as (every flavor also offers
`python_function`), the signature, the input example, requirements, creation time, the run it
came from, and the sha256 of every other file. Loading verifies every digest and refuses a package
whose files were changed, added or removed after it was written.
"""

from __future__ import annotations

import hashlib
import os
import platform
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from modelyard.errors import DataLoss, InvalidArgument
from modelyard.models.signature import Signature

MANIFEST = "MLmodel"
FORMAT_VERSION = 1


FEATURE_SERVICE = "feature_service"


def with_feature_service(metadata: dict[str, Any] | None, feature_service: Any) -> dict[str, Any]:
    """Manifest metadata naming the feature service (object or name) a model consumes."""
    out = dict(metadata or {})
    if feature_service is not None:
        name = feature_service if isinstance(feature_service, str) else feature_service.name
        if not name:
            raise InvalidArgument("feature_service has no name", field="feature_service")
        out[FEATURE_SERVICE] = name
    return out


@dataclass
class ModelManifest:
    flavors: dict[str, dict[str, Any]]
    signature: Signature | None = None
    input_example: str | None = None
    requirements: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    run_id: str | None = None
    artifact_path: str | None = None
    model_uuid: str = field(default_factory=lambda: uuid.uuid4().hex)
    python_version: str = field(default_factory=platform.python_version)
    files: dict[str, str] = field(default_factory=dict)
    # Free-form facts other parts of the platform attach (e.g. the feature service used).
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_service(self) -> str | None:
        return self.metadata.get(FEATURE_SERVICE)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "model_uuid": self.model_uuid,
            "created": self.created,
            "run_id": self.run_id,
            "artifact_path": self.artifact_path,
            "python_version": self.python_version,
            "flavors": self.flavors,
            "signature": self.signature.to_dict() if self.signature else None,
            "input_example": self.input_example,
            "requirements": self.requirements,
            "metadata": self.metadata,
            "files": dict(sorted(self.files.items())),
        }
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelManifest:
        if not isinstance(data, dict) or "flavors" not in data:
            raise InvalidArgument(f"{MANIFEST} is not a Modelyard model manifest (no flavors)")
        signature = data.get("signature")
        return cls(
            flavors=data["flavors"],
            signature=Signature.from_dict(signature) if signature else None,
            input_example=data.get("input_example"),
            requirements=list(data.get("requirements") or []),
            created=data.get("created", ""),
            run_id=data.get("run_id"),
            artifact_path=data.get("artifact_path"),
            model_uuid=data.get("model_uuid", ""),
            python_version=data.get("python_version", ""),
            files=dict(data.get("files") or {}),
            metadata=dict(data.get("metadata") or {}),
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1024 * 1024):
            h.update(block)
    return h.hexdigest()


def _files(directory: Path) -> dict[str, Path]:
    found = {}
    for root, _dirs, names in os.walk(directory):
        for name in names:
            full = Path(root) / name
            rel = full.relative_to(directory).as_posix()
            if rel != MANIFEST:
                found[rel] = full
    return found


def write_package(directory: str | Path, manifest: ModelManifest) -> ModelManifest:
    """Digest every file in `directory` and write the manifest beside them."""
    directory = Path(directory)
    manifest.files = {rel: _sha256(path) for rel, path in _files(directory).items()}
    (directory / MANIFEST).write_text(yaml.safe_dump(manifest.to_dict(), sort_keys=False))
    return manifest


def read_manifest(directory: str | Path) -> ModelManifest:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise InvalidArgument(
            f"{directory} is not a model package: it has no {MANIFEST} file; log models with "
            "modelyard.<flavor>.log_model"
        )
    return ModelManifest.from_dict(yaml.safe_load(path.read_text()))


def verify(
    directory: str | Path, manifest: ModelManifest | None = None, ignore: tuple[str, ...] = ()
) -> ModelManifest:
    """Check every file against its recorded sha256; raise DataLoss naming what differs."""
    directory = Path(directory)
    manifest = manifest or read_manifest(directory)
    present = {k: v for k, v in _files(directory).items() if k not in ignore}
    problems = []
    for rel, digest in sorted(manifest.files.items()):
        path = present.get(rel)
        if path is None:
            problems.append(f"{rel} is missing")
        elif _sha256(path) != digest:
            problems.append(f"{rel} was modified (sha256 differs)")
    problems.extend(f"{rel} was added" for rel in sorted(set(present) - set(manifest.files)))
    if problems:
        raise DataLoss(
            f"model package {directory} failed verification: {'; '.join(problems)}. "
            "Refusing to load it; log the model again from its source"
        )
    return manifest
