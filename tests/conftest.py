"""Shared fixtures: the tiny checkpoint (built once per session) and sample images."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from pocketvl.devstack.paths import build_tiny_checkpoints
from pocketvl.settings import TINY_CHECKPOINT

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def checkpoint_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("checkpoints")
    build_tiny_checkpoints(root)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(checkpoint_root: Path) -> Path:
    return checkpoint_root / TINY_CHECKPOINT


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
