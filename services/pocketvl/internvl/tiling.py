"""InternVL2 dynamic high-resolution tiling, exactly as trained (internvl_facts.md section 2.1).

The image is resized to a grid of 448-pixel tiles whose aspect ratio is closest to the
image's, cropped row-major, and followed by a 448x448 thumbnail when there is more than one
tile. Each tile is normalised with ImageNet statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

TILE_SIZE = 448
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass(frozen=True)
class Grid:
    cols: int
    rows: int

    @property
    def tiles(self) -> int:
        return self.cols * self.rows


def candidate_grids(min_tiles: int, max_tiles: int) -> list[Grid]:
    """All grids with min_tiles <= cols*rows <= max_tiles, fewest tiles first.

    Built from a set and sorted by tile count, as InternVL does: the order of grids with the
    same tile count is CPython's (deterministic) set order, which decides exact ties.
    """
    pairs = {
        (cols, rows)
        for n in range(min_tiles, max_tiles + 1)
        for cols in range(1, n + 1)
        for rows in range(1, n + 1)
        if min_tiles <= cols * rows <= max_tiles
    }
    return [Grid(c, r) for c, r in sorted(pairs, key=lambda p: p[0] * p[1])]


def select_tile_grid(
    width: int, height: int, max_tiles: int, min_tiles: int = 1, tile_size: int = TILE_SIZE
) -> Grid:
    """The grid whose cols/rows is closest to width/height.

    On an exact tie a later (larger) grid wins only if the image covers more than half of
    that grid's canvas.
    """
    aspect = width / height
    area = width * height
    best, best_diff = Grid(1, 1), float("inf")
    for grid in candidate_grids(min_tiles, max_tiles):
        diff = abs(aspect - grid.cols / grid.rows)
        if diff < best_diff:
            best, best_diff = grid, diff
        elif diff == best_diff and area > 0.5 * tile_size * tile_size * grid.tiles:
            best = grid
    return best


def tile_image(
    image: Image.Image, max_tiles: int, use_thumbnail: bool = True, tile_size: int = TILE_SIZE
) -> list[Image.Image]:
    """Split an RGB image into tiles (row-major) plus the thumbnail when there are several."""
    grid = select_tile_grid(image.width, image.height, max_tiles, tile_size=tile_size)
    resized = image.resize((grid.cols * tile_size, grid.rows * tile_size), Image.Resampling.BICUBIC)
    tiles = [
        resized.crop((c * tile_size, r * tile_size, (c + 1) * tile_size, (r + 1) * tile_size))
        for r in range(grid.rows)
        for c in range(grid.cols)
    ]
    if use_thumbnail and len(tiles) > 1:
        tiles.append(image.resize((tile_size, tile_size), Image.Resampling.BICUBIC))
    return tiles


def normalize_tiles(tiles: list[Image.Image]) -> npt.NDArray[np.float32]:
    """Stack tiles into float32 (N, 3, H, W), scaled to [0, 1] and ImageNet-normalised."""
    batch = np.stack([np.asarray(t.convert("RGB"), dtype=np.float32) for t in tiles])
    batch = (batch / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
