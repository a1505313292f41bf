"""A Triton request's input tensors -> what a pocketvl model works on, in one place.

Every model that takes the ``contracts.triton`` interface reads its requests here: the
PyTorch engine's Python-backend model and the preprocessing model in front of a
TensorRT-LLM engine alike. Only numpy and Pillow: no torch, so a preprocessing-only model
loads in a second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from pocketvl.contracts import triton as tc

# The named input of one request, or None when an optional input was not sent.
TensorReader = Callable[[tc.TensorSpec], "npt.NDArray[Any] | None"]


@dataclass(frozen=True)
class ModelInputs:
    images: list[Image.Image]  # RGB, in prompt order
    question: str
    max_new_tokens: int
    max_tiles: int | None  # None: the checkpoint's own cap


def rgb_images(pixels: npt.NDArray[np.uint8], shapes: npt.NDArray[np.int32]) -> list[Image.Image]:
    """``PIXELS`` + ``IMAGE_SHAPES`` -> one RGB image each (raises ``ImageTensorError``)."""
    return [Image.fromarray(array) for array in tc.unpack_images(pixels, shapes)]


def model_inputs(tensor: TensorReader) -> ModelInputs:
    """One request's inputs; a missing or malformed tensor is a ``ValueError``."""

    def required(spec: tc.TensorSpec) -> npt.NDArray[Any]:
        found = tensor(spec)
        if found is None:
            raise ValueError(f"input {spec.name} is missing")
        return found

    def first(spec: tc.TensorSpec) -> Any:
        values = required(spec).reshape(-1)
        if values.size != 1:
            raise ValueError(f"input {spec.name} must hold one value, not {values.size}")
        return values[0]

    max_tiles = None if tensor(tc.MAX_TILES) is None else int(first(tc.MAX_TILES))
    return ModelInputs(
        images=rgb_images(required(tc.PIXELS), required(tc.IMAGE_SHAPES)),
        question=bytes(first(tc.QUESTION)).decode("utf-8"),
        max_new_tokens=int(first(tc.MAX_NEW_TOKENS)),
        max_tiles=max_tiles,
    )
