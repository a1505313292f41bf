"""The tensor interface of every pocketvl Triton model, in one place.

The worker's Triton adapter, the Python-backend models (``pocketvl.serving.triton_inputs``),
the benchmark stand-ins and every ``config.pbtxt`` follow this; a test parses every
``config.pbtxt`` and checks it against these tables.

Images travel as the pixels the model tiles, decoded once by the worker: every image's RGB
bytes (row-major, height x width x 3) one after another in ``PIXELS``, and each image's
(height, width) in ``IMAGE_SHAPES``. Nothing is re-encoded on the way, so the model decodes
nothing. ``pack_images`` and ``unpack_images`` are the two ends of that layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

RgbImage = npt.NDArray[np.uint8]  # (height, width, 3), C-contiguous


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str  # config.pbtxt spelling
    dims: tuple[int, ...]
    optional: bool = False
    # Requests whose shapes differ may still share a batch: the Python backend hands each
    # request its own tensors, so the batcher need not wait for equal shapes.
    ragged: bool = False

    @property
    def client_dtype(self) -> str:
        """tritonclient's spelling of the same type."""
        return {"TYPE_STRING": "BYTES", "TYPE_INT32": "INT32", "TYPE_UINT8": "UINT8"}[
            self.data_type
        ]


# Dims exclude the batch dimension: every model sets max_batch_size > 0 and the dynamic batcher
# groups requests, so clients send a leading dimension of 1.
PIXELS = TensorSpec("PIXELS", "TYPE_UINT8", (-1,), ragged=True)  # all images' RGB, prompt order
IMAGE_SHAPES = TensorSpec("IMAGE_SHAPES", "TYPE_INT32", (-1, 2), ragged=True)  # (h, w) each
QUESTION = TensorSpec("QUESTION", "TYPE_STRING", (1,))  # UTF-8 user text (without <image>)
MAX_NEW_TOKENS = TensorSpec("MAX_NEW_TOKENS", "TYPE_INT32", (1,))
MAX_TILES = TensorSpec("MAX_TILES", "TYPE_INT32", (1,), optional=True)

TEXT = TensorSpec("TEXT", "TYPE_STRING", (1,))
PROMPT_TOKENS = TensorSpec("PROMPT_TOKENS", "TYPE_INT32", (1,))
GENERATED_TOKENS = TensorSpec("GENERATED_TOKENS", "TYPE_INT32", (1,))

INPUTS = (PIXELS, IMAGE_SHAPES, QUESTION, MAX_NEW_TOKENS, MAX_TILES)
OUTPUTS = (TEXT, PROMPT_TOKENS, GENERATED_TOKENS)


class ImageTensorError(ValueError):
    """``PIXELS`` and ``IMAGE_SHAPES`` do not describe a list of RGB images."""


def packed_bytes(images: Sequence[RgbImage]) -> int:
    """What ``images`` add to a Triton request: their pixels plus 8 bytes of shape each."""
    return sum(image.nbytes + 8 for image in images)


def pack_images(
    images: Sequence[RgbImage],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32]]:
    """``PIXELS`` and ``IMAGE_SHAPES`` for ``images`` (without the batch dimension)."""
    for image in images:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ImageTensorError(f"not an RGB uint8 image: {image.dtype} {image.shape}")
    shapes = np.array([image.shape[:2] for image in images], dtype=np.int32).reshape(-1, 2)
    if not images:
        return np.empty(0, np.uint8), shapes
    pixels = np.concatenate([image.reshape(-1) for image in images])
    return pixels, shapes


def unpack_images(pixels: npt.NDArray[np.uint8], shapes: npt.NDArray[np.int32]) -> list[RgbImage]:
    """The images ``pack_images`` packed, as views into ``pixels``; refuses a mismatch."""
    flat, dims = pixels.reshape(-1), shapes.reshape(-1, 2).astype(np.int64)
    if flat.dtype != np.uint8:
        raise ImageTensorError(f"{PIXELS.name} must be uint8, not {flat.dtype}")
    if len(dims) == 0:
        raise ImageTensorError("a request needs at least one image")
    if (dims < 1).any():
        raise ImageTensorError(f"{IMAGE_SHAPES.name} has an empty image: {dims.tolist()}")
    sizes = dims[:, 0] * dims[:, 1] * 3
    if int(sizes.sum()) != flat.size:
        raise ImageTensorError(
            f"{IMAGE_SHAPES.name} {dims.tolist()} needs {int(sizes.sum())} bytes of "
            f"{PIXELS.name}; got {flat.size}"
        )
    ends = np.cumsum(sizes)
    return [
        flat[end - size : end].reshape(int(h), int(w), 3)
        for (h, w), size, end in zip(dims, sizes, ends, strict=True)
    ]
