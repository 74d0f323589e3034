"""The Modelyard model package: a directory with an `MLmodel` manifest, files and their digests."""

from modelyard.models.package import MANIFEST, ModelManifest, read_manifest, verify, write_package
from modelyard.models.signature import ColumnSpec, Signature, TensorSpec, infer_signature

__all__ = [
    "MANIFEST",
    "ColumnSpec",
    "ModelManifest",
    "Signature",
    "TensorSpec",
    "infer_signature",
    "read_manifest",
    "verify",
    "write_package",
]
