"""Where the local stack keeps its state: ``$POCKETVL_HOME`` or ``./.pocketvl``."""

from __future__ import annotations

import os
from pathlib import Path

from pocketvl.errors import StackError

TINY_MODELS = ("internvl2_tiny_qwen2",)


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


def ensure_tiny_checkpoints() -> Path:
    """Build the tiny test checkpoint once (deterministic; about 2 s)."""
    from pocketvl.internvl.tiny import build_tiny_checkpoint
    from pocketvl.settings import TINY_CHECKPOINT

    target = checkpoint_dir() / TINY_CHECKPOINT
    if not (target / "model.safetensors").is_file():
        build_tiny_checkpoint(target)
    return checkpoint_dir()
