"""Regenerate the committed gRPC/protobuf code under modelyard/_gen from protos/.

protoc names Python modules after proto paths (`modelyard.tracking.v1`), so the output is moved
under `modelyard._gen` and its import lines are rewritten to match. Run after editing a .proto:

    python scripts/generate_protos.py
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GEN = ROOT / "modelyard" / "_gen"
PACKAGE = "modelyard._gen"
# Top-level proto packages whose generated modules move under modelyard._gen.
TOP_LEVEL = ("modelyard", "inference")

_IMPORT = re.compile(r"^(from|import) (modelyard|inference)([. ])", re.MULTILINE)
_QUALIFIED = re.compile(r"\b(modelyard|inference)\.(?=\w+(\.\w+)*_pb2)")


def _target(top: str) -> str:
    return PACKAGE if top == "modelyard" else f"{PACKAGE}.{top}"


def _private_pool(text: str) -> str:
    """The OIP's `inference.*` names are also defined by tritonclient and KServe; a private
    descriptor pool lets both live in one process (the wire format is unaffected)."""
    text = text.replace("_descriptor_pool.Default()", "_POOL")
    return text.replace(
        "_sym_db = _symbol_database.Default()",
        "_POOL = _descriptor_pool.DescriptorPool()\n_sym_db = _symbol_database.Default()",
    )


def _rewrite(path: Path) -> None:
    text = path.read_text()
    if path.name.endswith("_pb2.py") and "/inference/" in path.as_posix():
        text = _private_pool(text)
    text = _IMPORT.sub(lambda m: f"{m[1]} {_target(m[2])}{m[3]}", text)
    if path.suffix == ".pyi":
        # Stubs name types by fully qualified module (modelyard.common.v1.common_pb2.Tag).
        text = _QUALIFIED.sub(lambda m: f"{_target(m[1])}.", text)
    path.write_text(text)


def generate(out: Path) -> None:
    """Generate every proto under protos/ into `out` (a directory shaped like modelyard/_gen)."""
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--mypy_out={tmp}",
            f"--mypy_grpc_out={tmp}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed; see the message above")
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for top in TOP_LEVEL:
            src = Path(tmp) / top
            if not src.exists():
                continue
            dest = out if top == "modelyard" else out / top
            shutil.copytree(src, dest, dirs_exist_ok=True)
        for directory in [out, *[d for d in out.rglob("*") if d.is_dir()]]:
            (directory / "__init__.py").touch()
        for path in out.rglob("*.py*"):
            if path.name != "__init__.py":
                _rewrite(path)
        (out / "__init__.py").write_text(
            '"""Generated from protos/ by scripts/generate_protos.py. Do not edit."""\n'
        )


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else GEN)
    print(f"generated {GEN.relative_to(ROOT)}")
