"""The plain per-tile InternVL2 tiling, as InternVL's dataset code reads: the reference
``pocketvl.vision.tiling.preprocess_image`` is checked against."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

from pocketvl.vision.tiling import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TILE_SIZE,
    resize_as_trained,
    select_tile_grid,
)


def tile_image(
    image: Image.Image, max_tiles: int, use_thumbnail: bool = True, tile_size: int = TILE_SIZE
) -> list[Image.Image]:
    """Split an RGB image into tiles (row-major) plus the thumbnail when there are several."""
    grid = select_tile_grid(image.width, image.height, max_tiles, tile_size=tile_size)
    resized = resize_as_trained(image, (grid.cols * tile_size, grid.rows * tile_size))
    tiles = [
        resized.crop((c * tile_size, r * tile_size, (c + 1) * tile_size, (r + 1) * tile_size))
        for r in range(grid.rows)
        for c in range(grid.cols)
    ]
    if use_thumbnail and len(tiles) > 1:
        tiles.append(resize_as_trained(image, (tile_size, tile_size)))
    return tiles


def normalize_tiles(tiles: list[Image.Image]) -> npt.NDArray[np.float32]:
    """Stack tiles into float32 (N, 3, H, W), scaled to [0, 1] and ImageNet-normalised."""
    batch = np.stack([np.asarray(t.convert("RGB"), dtype=np.float32) for t in tiles])
    batch = (batch / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
