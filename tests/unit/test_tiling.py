"""The tiling rule, checked against the worked table and a plain reference implementation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pocketvl.internvl.tiling import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Grid,
    normalize_tiles,
    select_tile_grid,
    tile_image,
)


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
def test_worked_examples_from_the_facts_file(size: tuple[int, int], grid: Grid) -> None:
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
