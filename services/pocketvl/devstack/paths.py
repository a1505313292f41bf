"""Where the local stack keeps its state: ``$POCKETVL_HOME`` or ``./.pocketvl``."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from pocketvl.errors import StackError
from pocketvl.modeltools.repository import TINY

TINY_MODELS = tuple(TINY)


def home() -> Path:
    return Path(os.environ.get("POCKETVL_HOME", ".pocketvl")).resolve()


def checkpoint_dir() -> Path:
    return Path(os.environ.get("POCKETVL_CHECKPOINT_DIR", str(home() / "checkpoints"))).resolve()


def model_repository() -> Path:
    """The repository's ``model_repository/`` (override: ``$POCKETVL_MODEL_REPOSITORY``)."""
    configured = os.environ.get("POCKETVL_MODEL_REPOSITORY")
    if configured:
        return Path(configured).resolve()
    for base in (Path.cwd(), *Path(__file__).resolve().parents):
        candidate = base / "model_repository"
        if candidate.is_dir():
            return candidate
    raise StackError(
        "model_repository/ not found: run from the checkout or set POCKETVL_MODEL_REPOSITORY"
    )


def stand_in_repository() -> Path:
    """``bench/model_repository/``: the ``echo`` and ``fixed_latency`` benchmark models."""
    path = model_repository().parent / "bench" / "model_repository"
    if not path.is_dir():
        raise StackError(f"{path} not found: run from the checkout")
    return path


def examples_dir() -> Path:
    """``schemas/examples/``: one example request per task."""
    return model_repository().parent / "schemas" / "examples"


def ensure_tiny_checkpoints() -> Path:
    """Build the tiny test checkpoints once (deterministic; a few seconds)."""
    build_tiny_checkpoints(checkpoint_dir())
    return checkpoint_dir()


def build_tiny_checkpoints(root: Path) -> None:
    """One tiny checkpoint per LLM backbone, named as ``model_repository`` expects.

    Rebuilt when the code that builds them changes (a stamp holds its hash), so a checkout
    never serves tiny checkpoints left over from an older version.
    """
    from pocketvl.modeltools import tiny, tiny_tokenizers

    sources = (Path(tiny.__file__), Path(tiny_tokenizers.__file__))
    version = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()
    for name in TINY.values():
        target = root / name
        stamp = root / f".{name}.build"  # beside it: the checkpoint keeps the original layout
        if not stamp.is_file() or stamp.read_text() != version:
            shutil.rmtree(target, ignore_errors=True)
            tiny.build_tiny_checkpoint(target, backbone=name.rsplit("-", 1)[1])
            stamp.write_text(version)
