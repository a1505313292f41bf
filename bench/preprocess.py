"""Image preprocessing: the fast path against a plain implementation of the same rule.

Run ``make bench`` (or ``python -m bench.preprocess``, or ``python bench/preprocess.py``).
Each input is JPEG bytes; both paths decode them the same way, inside the timing. The plain
path is InternVL's dataset code written plainly: whole-grid PIL resize, a crop per tile,
and torchvision's ToTensor + Normalize per tile (written in torch). Also timed, for the
record: a torch ``interpolate(bicubic, antialias=True)`` resize, rejected if its tiles
differ from Pillow's by more than 1/255. Results go to ``bench/results/preprocess.json``.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import PIL
import torch
from PIL import Image
from tests.support.samples import road_scene

from pocketvl.vision.stitch import (
    CAMERAS,
    TRAINING_JPEG_QUALITY,
    stitch_drivelm_views,
)
from pocketvl.vision.tiling import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Grid,
    preprocess_image,
    resize_as_trained,
    select_tile_grid,
    tiles_uint8,
)

MAX_TILES = 12
RUNS = 15  # timed runs per path and input, after WARMUP
WARMUP = 2
PAUSE_S = 0.05
RESULTS = Path(__file__).resolve().parent / "results" / "preprocess.json"

Pixels = npt.NDArray[np.float32]


# --- inputs ---------------------------------------------------------------------------------


def camera_like(width: int, height: int, seed: int) -> Image.Image:
    """A synthetic road scene plus sensor-like noise, so the JPEG has realistic detail."""
    scene = Image.open(io.BytesIO(road_scene(seed, (width, height)))).convert("RGB")
    noise = np.random.default_rng(seed).normal(0, 10, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(scene) + noise, 0, 255).astype(np.uint8))


def jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def bench_inputs() -> dict[str, bytes]:
    views = {camera: camera_like(1600, 900, seed) for seed, camera in enumerate(CAMERAS)}
    stitched = stitch_drivelm_views(views)
    return {
        "camera 1600x900": jpeg(camera_like(1600, 900, 10), 90),
        "DriveLM stitch 2688x896": jpeg(stitched, TRAINING_JPEG_QUALITY),
        "4K 3840x2160": jpeg(camera_like(3840, 2160, 11), 90),
    }


# --- the paths ------------------------------------------------------------------------------


def decode(data: bytes) -> Image.Image:
    """As the engine decodes: open, then convert to RGB."""
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def plain_grid(width: int, height: int, max_num: int) -> Grid:
    """InternVL's find_closest_aspect_ratio, as written there."""
    ratios = {
        (i, j)
        for n in range(1, max_num + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if 1 <= i * j <= max_num
    }
    aspect, best, best_diff = width / height, (1, 1), float("inf")
    for cols, rows in sorted(ratios, key=lambda r: r[0] * r[1]):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and width * height > 0.5 * 448 * 448 * cols * rows:
            best = (cols, rows)
    return Grid(*best)


def plain_tiles(image: Image.Image) -> list[Image.Image]:
    grid = plain_grid(image.width, image.height, MAX_TILES)
    resized = resize_as_trained(image, (grid.cols * 448, grid.rows * 448))
    tiles = [
        resized.crop((c * 448, r * 448, (c + 1) * 448, (r + 1) * 448))
        for r in range(grid.rows)
        for c in range(grid.cols)
    ]
    if len(tiles) > 1:
        tiles.append(resize_as_trained(image, (448, 448)))
    return tiles


def to_tensor_normalize(tile: Image.Image) -> torch.Tensor:
    """torchvision's ToTensor then Normalize(IMAGENET_MEAN, IMAGENET_STD), for one tile."""
    pixels = torch.from_numpy(np.array(tile, dtype=np.uint8, copy=True))
    pixels = pixels.permute(2, 0, 1).contiguous().to(torch.float32).div(255)
    mean = torch.as_tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.as_tensor(IMAGENET_STD).view(3, 1, 1)
    return pixels.sub(mean).div(std)


def plain_path(data: bytes) -> Pixels:
    tiles = plain_tiles(decode(data))
    batch: Pixels = torch.stack([to_tensor_normalize(t) for t in tiles]).numpy()
    return batch


def fast_path(data: bytes) -> Pixels:
    return preprocess_image(decode(data), MAX_TILES)


def torch_resize_tiles(image: Image.Image) -> npt.NDArray[np.uint8]:
    """The candidate: tiles resized by torch's antialiased bicubic on uint8 (AVX2 path)."""
    grid = select_tile_grid(image.width, image.height, MAX_TILES)
    source = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]
    sizes = [(grid.rows * 448, grid.cols * 448)] + ([(448, 448)] if grid.tiles > 1 else [])
    resized = [
        torch.nn.functional.interpolate(source, size=s, mode="bicubic", antialias=True)[0]
        for s in sizes
    ]
    blocks = resized[0].reshape(3, grid.rows, 448, grid.cols, 448).permute(1, 3, 2, 4, 0)
    tiles = [*blocks.reshape(grid.tiles, 448, 448, 3), *(r.permute(1, 2, 0) for r in resized[1:])]
    return torch.stack(tiles).numpy()


def torch_resize_path(data: bytes) -> Pixels:
    tiles = torch.from_numpy(torch_resize_tiles(decode(data)))
    pixels = tiles.permute(0, 3, 1, 2).to(torch.float32).contiguous()
    mean = torch.as_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.as_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    batch: Pixels = pixels.div_(255).sub_(mean).div_(std).numpy()
    return batch


# --- measuring ------------------------------------------------------------------------------


def median_ms(paths: Mapping[str, Callable[[bytes], object]], data: bytes) -> dict[str, float]:
    """Median wall time of each path.

    The paths take turns, so load from other processes hits them alike, and each run
    starts after a short pause: threads that one path leaves spinning (torch's OpenMP
    pool) would otherwise slow the next path's threads on a two-core machine.
    """
    times: dict[str, list[float]] = {name: [] for name in paths}
    for run in range(WARMUP + RUNS):
        for name, path in paths.items():
            time.sleep(PAUSE_S)
            start = time.perf_counter()
            path(data)
            if run >= WARMUP:
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: round(statistics.median(t), 2) for name, t in times.items()}


def max_abs_diff(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def measure(name: str, data: bytes) -> dict[str, Any]:
    image = decode(data)
    grid = select_tile_grid(image.width, image.height, MAX_TILES)
    plain_u8 = np.stack([np.asarray(t) for t in plain_tiles(image)])
    fast_u8 = tiles_uint8(image, MAX_TILES)
    torch_u8 = torch_resize_tiles(image)
    paths = {
        "decode": decode,
        "plain": plain_path,
        "fast": fast_path,
        "torch_resize": torch_resize_path,
    }
    ms = median_ms(paths, data)
    return {
        "input": name,
        "size": list(image.size),
        "jpeg_bytes": len(data),
        "grid": f"{grid.cols}x{grid.rows}",
        "tiles": len(fast_u8),
        "grids_equal": grid == plain_grid(image.width, image.height, MAX_TILES)
        and len(fast_u8) == len(plain_u8),
        "decode_ms": ms["decode"],
        "plain_ms": ms["plain"],
        "fast_ms": ms["fast"],
        "speedup": round(ms["plain"] / ms["fast"], 2),
        "max_abs_diff_uint8": max_abs_diff(fast_u8, plain_u8),
        "max_abs_diff_normalised": max_abs_diff(fast_path(data), plain_path(data)),
        "torch_resize_candidate": {
            "ms": ms["torch_resize"],
            "speedup": round(ms["plain"] / ms["torch_resize"], 2),
            "max_abs_diff_uint8": max_abs_diff(torch_u8, plain_u8),
            "within_1_of_255": max_abs_diff(torch_u8, plain_u8) <= 1,
        },
    }


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else "unknown"


def machine() -> dict[str, Any]:
    return {
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "runs": RUNS,
        "warmup": WARMUP,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'input':<24} {'grid':>4} {'tiles':>5} {'decode':>7} {'plain ms':>9} "
        f"{'fast ms':>8} {'speed-up':>8} {'max|d|u8':>8} {'grids=':>6} "
        f"{'torch ms':>8} {'torch|d|':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        t = r["torch_resize_candidate"]
        print(
            f"{r['input']:<24} {r['grid']:>4} {r['tiles']:>5} {r['decode_ms']:>7.1f} "
            f"{r['plain_ms']:>9.1f} {r['fast_ms']:>8.1f} {r['speedup']:>7.2f}x "
            f"{r['max_abs_diff_uint8']:>8.0f} {r['grids_equal']!s:>6} "
            f"{t['ms']:>8.1f} {t['max_abs_diff_uint8']:>8.0f}"
        )


def main() -> None:
    before = machine()
    rows = [measure(name, data) for name, data in bench_inputs().items()]
    # Other processes on the machine skew timings: keep the load seen before and after.
    report = {
        "machine": before,
        "load_average_after": machine()["load_average"],
        # torch's resize is used only if it stays within 1/255 of Pillow on every input.
        "torch_resize_accepted": all(r["torch_resize_candidate"]["within_1_of_255"] for r in rows),
        "results": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print_table(rows)
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
