"""InternVL2 dynamic high-resolution tiling, exactly as trained (InternVL's ``dynamic_preprocess``).

The image is resized to a grid of 448-pixel tiles whose aspect ratio is closest to the
image's, split row-major, and followed by a 448x448 thumbnail when there is more than one
tile. Each tile is scaled to [0, 1] and normalised with ImageNet statistics.

``preprocess_image`` resizes each target size once, splits the grid into tiles as array
views and writes them straight into one float32 batch; the resizes run on two threads, since
Pillow releases the GIL while it resamples. It resamples with ``resize_as_trained``:
Pillow's BICUBIC, horizontal pass first. The tests hold the plain per-tile reference
(``tests/support/reference_tiling.py``, as InternVL's dataset code reads) and check that
both give the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt
from PIL import Image

TILE_SIZE = 448
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_MEAN_CHW = IMAGENET_MEAN.reshape(3, 1, 1)
_STD_CHW = IMAGENET_STD.reshape(3, 1, 1)

# The worker machines have two cores; Pillow and numpy release the GIL while they work.
_THREADS = 2
# Below this many rows (or columns) a pass is not worth cutting into strips.
_MIN_STRIP = 64

Size = tuple[int, int]


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


def resize_as_trained(image: Image.Image, size: Size) -> Image.Image:
    """``image.resize(size)`` (BICUBIC) as the Pillow InternVL trained with did it.

    Pillow resamples in two passes and rounds to 8 bits in between, so the pass order shows
    in the pixels. Pillow up to at least 10.4 always ran the horizontal pass first; the
    pinned Pillow 13 runs the vertical pass first when the width grows and the height
    shrinks. That is exactly a nuScenes camera (1600x900) going to its 4x2 grid (1792x896):
    on a camera-like image a single call there changes a fifth of the pixels, by up to 6
    levels. Two single-axis calls reproduce the old order bit for bit (a test pins Pillow
    10.4's bytes).
    """
    width, height = size
    if image.width != width:
        image = image.resize((width, image.height), Image.Resampling.BICUBIC)
    if image.height != height:
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    return image


def preprocess_image(
    image: Image.Image, max_tiles: int, use_thumbnail: bool = True, threads: int = _THREADS
) -> npt.NDArray[np.float32]:
    """The model's pixel input for one image: float32 (N, 3, 448, 448), thumbnail last.

    Same values as the plain per-tile reference (crop each tile, stack, normalise): the uint8
    tiles are identical and the arithmetic is torchvision's (ToTensor's /255, then
    Normalize), in the same order. ``threads``: resizes at once (1 where processes already
    fill the cores, as several Triton instances do).
    """
    with ThreadPoolExecutor(max_workers=threads) as pool:
        tiles = _uint8_tile_views(pool, image, max_tiles, use_thumbnail)
        batch = np.empty((len(tiles), 3, TILE_SIZE, TILE_SIZE), dtype=np.float32)
        # Tile by tile, each normalised while still in cache, shared between the threads.
        list(pool.map(_normalize_into, tiles, batch))  # list() surfaces thread exceptions
    return batch


def tiles_uint8(
    image: Image.Image, max_tiles: int, use_thumbnail: bool = True, threads: int = _THREADS
) -> npt.NDArray[np.uint8]:
    """The tiles ``preprocess_image`` normalises, as uint8 (N, 448, 448, 3)."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return np.stack(_uint8_tile_views(pool, image, max_tiles, use_thumbnail))


def _uint8_tile_views(
    pool: ThreadPoolExecutor, image: Image.Image, max_tiles: int, use_thumbnail: bool
) -> list[npt.NDArray[np.uint8]]:
    """Row-major (448, 448, 3) tiles as views into one resized grid, then the thumbnail."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    grid = select_tile_grid(image.width, image.height, max_tiles)
    sizes = [(grid.cols * TILE_SIZE, grid.rows * TILE_SIZE)]
    if use_thumbnail and grid.tiles > 1:
        sizes.append((TILE_SIZE, TILE_SIZE))
    resized = [np.asarray(r) for r in _resize_to_each(pool, image, sizes)]
    blocks = resized[0].reshape(grid.rows, TILE_SIZE, grid.cols, TILE_SIZE, 3)
    tiles = [blocks[r, :, c] for r in range(grid.rows) for c in range(grid.cols)]
    return tiles + resized[1:]


def _normalize_into(tile: npt.NDArray[np.uint8], out: npt.NDArray[np.float32]) -> None:
    """ToTensor's ``/ 255`` then Normalize's ``(x - mean) / std``, float32, as torchvision.

    Same operations in the same order and precision, so the values are torchvision's to
    the bit. The strided copy does the uint8 -> float32 cast and the HWC -> CHW move at
    once. Measured alternatives: a 256-entry lookup table (uint8 -> normalised float) was
    slower than this; torch's in-place ops were as fast but leave OpenMP threads spinning
    that slow the next image's resize threads on a two-core machine.
    """
    np.copyto(out, tile.transpose(2, 0, 1))
    np.divide(out, np.float32(255), out=out)
    np.subtract(out, _MEAN_CHW, out=out)
    np.divide(out, _STD_CHW, out=out)


def _resize_to_each(
    pool: ThreadPoolExecutor, image: Image.Image, sizes: Sequence[Size]
) -> list[Image.Image]:
    """``resize_as_trained(image, size)`` for each size, spread over the pool's threads.

    All horizontal passes run side by side, then all vertical ones. A pass with nothing to
    run beside it (the DriveLM stitch needs only its thumbnail) is cut into two strips.
    """
    widened = _one_pass(pool, [image] * len(sizes), [(w, image.height) for w, _ in sizes])
    return _one_pass(pool, widened, sizes)


def _one_pass(
    pool: ThreadPoolExecutor, images: list[Image.Image], sizes: Sequence[Size]
) -> list[Image.Image]:
    """Resize images[i] to sizes[i]; each differs from its target along one axis at most."""
    todo = [i for i, image in enumerate(images) if image.size != sizes[i]]
    out = list(images)
    if len(todo) == 1:
        out[todo[0]] = _resize_in_strips(pool, images[todo[0]], sizes[todo[0]])
        return out
    resized = pool.map(lambda i: images[i].resize(sizes[i], Image.Resampling.BICUBIC), todo)
    for i, image in zip(todo, resized, strict=True):
        out[i] = image
    return out


def _resize_in_strips(pool: ThreadPoolExecutor, image: Image.Image, size: Size) -> Image.Image:
    """A single-axis resize as two strips cut along the other axis, resized in parallel.

    Identical pixels: in a horizontal pass each output row depends on its own input row
    only (columns likewise in a vertical pass), so cutting across rows changes nothing.
    """
    horizontal = image.width != size[0]
    length = image.height if horizontal else image.width
    if length < 2 * _MIN_STRIP:
        return image.resize(size, Image.Resampling.BICUBIC)
    cuts = (0, length // 2, length)
    if horizontal:
        boxes = [(0, a, image.width, b) for a, b in pairwise(cuts)]
        targets = [(size[0], b - a) for a, b in pairwise(cuts)]
    else:
        boxes = [(a, 0, b, image.height) for a, b in pairwise(cuts)]
        targets = [(b - a, size[1]) for a, b in pairwise(cuts)]
    parts = pool.map(
        lambda job: image.crop(job[0]).resize(job[1], Image.Resampling.BICUBIC),
        zip(boxes, targets, strict=True),
    )
    out = Image.new(image.mode, size)
    for box, part in zip(boxes, parts, strict=True):
        out.paste(part, box[:2])
    return out
