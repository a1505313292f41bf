"""Decoded RGB images through the tensor interface and back, and malformed tensors refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from pocketvl.contracts import triton as tc
from pocketvl.serving.triton_inputs import model_inputs, rgb_images


def images() -> list[tc.RgbImage]:
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 256, (900, 1600, 3), dtype=np.uint8),
        rng.integers(0, 256, (7, 5, 3), dtype=np.uint8),
    ]


def request(**override: Any) -> dict[str, npt.NDArray[Any] | None]:
    """One request's tensors as a Python-backend model reads them (with the batch dim)."""
    pixels, shapes = tc.pack_images(images())
    tensors: dict[str, npt.NDArray[Any] | None] = {
        tc.PIXELS.name: pixels[None],
        tc.IMAGE_SHAPES.name: shapes[None],
        tc.QUESTION.name: np.array([[b"What is ahead?"]], dtype=np.object_),
        tc.MAX_NEW_TOKENS.name: np.array([[7]], np.int32),
        tc.MAX_TILES.name: np.array([[3]], np.int32),
    }
    tensors.update(override)
    return tensors


def read(tensors: dict[str, npt.NDArray[Any] | None]) -> Any:
    return model_inputs(lambda spec: tensors.get(spec.name))


def test_the_model_gets_exactly_the_pixels_the_worker_decoded() -> None:
    inputs = read(request())
    sent = zip(inputs.images, images(), strict=True)
    assert all(np.array_equal(np.asarray(got), want) for got, want in sent)
    assert [image.mode for image in inputs.images] == ["RGB", "RGB"]
    assert (inputs.question, inputs.max_new_tokens, inputs.max_tiles) == ("What is ahead?", 7, 3)


def test_max_tiles_is_optional() -> None:
    assert read(request(MAX_TILES=None)).max_tiles is None


def test_the_request_is_as_large_as_its_pixels() -> None:
    pixels, shapes = tc.pack_images(images())
    assert pixels.nbytes + shapes.nbytes == tc.packed_bytes(images())
    assert pixels.nbytes == 900 * 1600 * 3 + 7 * 5 * 3


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ({"PIXELS": np.zeros((1, 10), np.uint8)}, "needs 4320105 bytes"),
        ({"IMAGE_SHAPES": np.zeros((1, 0, 2), np.int32)}, "at least one image"),
        ({"IMAGE_SHAPES": np.array([[[0, 5]]], np.int32)}, "empty image"),
        ({"PIXELS": np.zeros((1, 10), np.int32)}, "must be uint8"),
        ({"PIXELS": None}, "PIXELS is missing"),
        ({"MAX_NEW_TOKENS": np.array([[1, 2]], np.int32)}, "one value"),
    ],
)
def test_malformed_tensors_are_refused_with_a_reason(
    override: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        read(request(**override))


def test_a_grey_or_rgba_image_is_not_packed_as_rgb() -> None:
    with pytest.raises(tc.ImageTensorError, match="not an RGB uint8 image"):
        tc.pack_images([np.zeros((4, 4), np.uint8)])


def test_images_are_read_back_from_a_packed_buffer_in_order() -> None:
    a, b = np.full((2, 3, 3), 1, np.uint8), np.full((4, 1, 3), 2, np.uint8)
    pixels, shapes = tc.pack_images([a, b])
    got = [np.asarray(image) for image in rgb_images(pixels, shapes)]
    assert [g.shape for g in got] == [(2, 3, 3), (4, 1, 3)]
    assert np.array_equal(got[0], a) and np.array_equal(got[1], b)
