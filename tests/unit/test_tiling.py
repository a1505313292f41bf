"""The tiling rule, checked against the worked table and a plain reference implementation."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pocketvl.vision.tiling import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Grid,
    preprocess_image,
    resize_as_trained,
    select_tile_grid,
    tiles_uint8,
)
from tests.support.reference_tiling import normalize_tiles, tile_image
from tests.support.samples import road_scene


@pytest.mark.parametrize(
    ("size", "grid"),
    [
        ((2688, 896), Grid(6, 2)),  # DriveLM stitched views: 12 tiles + thumbnail
        ((1600, 900), Grid(4, 2)),  # one nuScenes camera
        ((1280, 720), Grid(4, 2)),
        ((800, 800), Grid(2, 2)),  # DIOR-RSVG
        ((256, 256), Grid(1, 1)),  # RSVQA-LR, UCM
        ((512, 512), Grid(1, 1)),
    ],
)
def test_worked_examples_of_the_published_tiling(size: tuple[int, int], grid: Grid) -> None:
    assert select_tile_grid(*size, max_tiles=12) == grid


def reference_grid(width: int, height: int, max_num: int) -> tuple[int, int]:
    """The rule written plainly, as in InternVL's dataset code."""
    ratios = sorted(
        {
            (i, j)
            for n in range(1, max_num + 1)
            for i in range(1, n + 1)
            for j in range(1, n + 1)
            if 1 <= i * j <= max_num
        },
        key=lambda r: r[0] * r[1],
    )
    aspect, best, best_diff = width / height, (1, 1), float("inf")
    for r in ratios:
        diff = abs(aspect - r[0] / r[1])
        if diff < best_diff:
            best, best_diff = r, diff
        elif diff == best_diff and width * height > 0.5 * 448 * 448 * r[0] * r[1]:
            best = r
    return best


@settings(max_examples=400, deadline=None)
@given(width=st.integers(1, 8000), height=st.integers(1, 8000), max_num=st.integers(1, 40))
def test_grid_selection_matches_the_reference(width: int, height: int, max_num: int) -> None:
    grid = select_tile_grid(width, height, max_tiles=max_num)
    assert (grid.cols, grid.rows) == reference_grid(width, height, max_num)
    assert 1 <= grid.tiles <= max_num


def test_tie_break_prefers_larger_grid_only_for_large_images() -> None:
    # 2:1 images: (2,1) and (4,2) tie exactly; (4,2) wins only above half its canvas.
    assert select_tile_grid(896, 448, max_tiles=12) == Grid(2, 1)
    assert select_tile_grid(1800, 900, max_tiles=12) == Grid(4, 2)


def test_tiles_are_row_major_crops_plus_thumbnail() -> None:
    image = Image.new("RGB", (896, 448))
    image.paste((255, 0, 0), (0, 0, 448, 448))
    image.paste((0, 0, 255), (448, 0, 896, 448))
    tiles = tile_image(image, max_tiles=12)
    assert len(tiles) == 3
    assert tiles[0].getpixel((200, 200)) == (255, 0, 0)
    assert tiles[1].getpixel((200, 200)) == (0, 0, 255)
    assert tiles[2].size == (448, 448)  # thumbnail of the whole image, last
    assert tile_image(Image.new("RGB", (300, 300)), max_tiles=12)[0].size == (448, 448)
    assert len(tile_image(Image.new("RGB", (300, 300)), max_tiles=12)) == 1  # no thumbnail


def test_normalisation_uses_imagenet_statistics() -> None:
    tile = Image.new("RGB", (448, 448), (255, 128, 0))
    batch = normalize_tiles([tile])
    assert batch.shape == (1, 3, 448, 448)
    expected = (np.array([255, 128, 0]) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(batch[0, :, 10, 10], expected, rtol=1e-6)


# --- the fast path against a plain reference ------------------------------------------------


def camera_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """A synthetic road scene with sensor-like noise, so resampling has detail to get wrong."""
    scene = Image.open(io.BytesIO(road_scene(seed, (width, height)))).convert("RGB")
    noise = np.random.default_rng(seed).normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(scene) + noise, 0, 255).astype(np.uint8))


def plain_tiles(image: Image.Image, max_num: int, use_thumbnail: bool = True) -> list[Image.Image]:
    """InternVL's dynamic_preprocess written plainly: whole-grid resize, per-tile crops.

    The resize is two explicit single-axis calls, horizontal first, as the training-era
    Pillow did (see resize_as_trained).
    """
    cols, rows = reference_grid(image.width, image.height, max_num)

    def resize(img: Image.Image, width: int, height: int) -> Image.Image:
        wide = img.resize((width, img.height), Image.Resampling.BICUBIC)
        return wide.resize((width, height), Image.Resampling.BICUBIC)

    grid = resize(image, cols * 448, rows * 448)
    tiles = [
        grid.crop((c * 448, r * 448, (c + 1) * 448, (r + 1) * 448))
        for r in range(rows)
        for c in range(cols)
    ]
    if use_thumbnail and len(tiles) > 1:
        tiles.append(resize(image, 448, 448))
    return tiles


def as_uint8(tiles: list[Image.Image]) -> npt.NDArray[np.uint8]:
    return np.stack([np.asarray(t) for t in tiles])


@pytest.mark.parametrize(
    ("size", "max_tiles"),
    [
        ((1600, 900), 12),  # benchmark shape: nuScenes camera, width up and height down
        ((2688, 896), 12),  # benchmark shape: DriveLM stitch, only the thumbnail is resized
        ((3840, 2160), 12),  # benchmark shape: 4K, both axes down
        ((300, 300), 12),  # one upscaled tile, no thumbnail
        ((1000, 300), 12),
        ((300, 1000), 12),
        ((500, 400), 6),
        ((120, 1900), 12),
        ((800, 800), 1),  # a video frame: one tile, resized in parallel strips
    ],
)
def test_fast_tiles_match_the_plain_reference(size: tuple[int, int], max_tiles: int) -> None:
    image = camera_like(*size)
    expected = as_uint8(plain_tiles(image, max_tiles))
    fast = tiles_uint8(image, max_tiles)
    assert fast.shape == expected.shape
    assert np.abs(fast.astype(np.int16) - expected).max() <= 1
    assert np.array_equal(as_uint8(tile_image(image, max_tiles)), expected)


@settings(max_examples=25, deadline=None)
@given(width=st.integers(70, 700), height=st.integers(90, 700), max_num=st.integers(1, 12))
def test_fast_tiles_match_for_any_size(width: int, height: int, max_num: int) -> None:
    image = camera_like(width, height, seed=width * height)
    fast = tiles_uint8(image, max_num)
    expected = as_uint8(plain_tiles(image, max_num))
    assert fast.shape == expected.shape
    assert np.abs(fast.astype(np.int16) - expected).max() <= 1


@pytest.mark.parametrize("size", [(2688, 896), (1600, 900), (448, 448), (300, 700)])
def test_thumbnail_is_last_and_present_only_with_several_tiles(size: tuple[int, int]) -> None:
    image = camera_like(*size)
    grid = select_tile_grid(*size, max_tiles=12)
    tiles = tiles_uint8(image, 12)
    assert len(tiles) == grid.tiles + (1 if grid.tiles > 1 else 0)
    if grid.tiles > 1:
        thumbnail = np.asarray(resize_as_trained(image, (448, 448)))
        assert np.array_equal(tiles[-1], thumbnail)
    assert len(tiles_uint8(image, 12, use_thumbnail=False)) == grid.tiles


def test_normalised_batch_is_the_plain_arithmetic_on_the_same_tiles() -> None:
    image = camera_like(1000, 500)
    tiles = tiles_uint8(image, 12)
    expected = (tiles.astype(np.float64) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    batch = preprocess_image(image, 12)
    assert batch.dtype == np.float32
    assert batch.shape == (len(tiles), 3, 448, 448)
    assert batch.flags.c_contiguous
    np.testing.assert_allclose(batch, expected.transpose(0, 3, 1, 2), rtol=0, atol=1e-5)
    plain = normalize_tiles([Image.fromarray(t) for t in tiles])
    np.testing.assert_allclose(batch, plain, rtol=0, atol=1e-5)


def test_non_rgb_images_are_converted_first() -> None:
    gray = camera_like(640, 480).convert("L")
    assert np.array_equal(tiles_uint8(gray, 6), tiles_uint8(gray.convert("RGB"), 6))


def test_resize_matches_the_training_era_pillow_byte_for_byte() -> None:
    # Pillow 10.4's image.resize((224, 88), BICUBIC) of this noise: width grows and height
    # shrinks, the case where Pillow 13's single call reorders its passes and differs.
    noise = np.random.default_rng(7).integers(0, 256, (90, 160, 3), dtype=np.uint8)
    resized = resize_as_trained(Image.fromarray(noise), (224, 88))
    assert hashlib.sha256(resized.tobytes()).hexdigest() == (
        "421eff0af6df011a55b639bc0d40df7cacd3cab7110963682ffd4797b319a374"
    )
