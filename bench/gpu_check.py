"""The PyTorch engine on a GPU, against the compute floor: one command, ``bench/gpu_check.sh``.

    python -m bench.gpu_check [--sizes 1b 2b 4b] [--batches 1 2 4 8 16] [--new-tokens 32]

For each size, with full-size random weights (``InternVLEngine(dummy_size=...)``, no
downloads): vision tiles/s (InternViT + projector alone, batches of tiles) and requests/s
(whole requests: tiling, prompt, vision, prefill, ``--new-tokens`` of decode; random
weights rarely stop early) for the DriveLM shape (six 1600x900 cameras stitched to
2688x896: 13 tiles) and two remote-sensing shapes (DIOR 800x800: 5 tiles; RSVQA 256x256:
1 tile), at batch 1 and at the best batch of the sweep. Each figure is set against the FLOP
floor (``bench/flop_floor.py``) as a fraction of peak. Results go to
``bench/results/gpu-check-<gpu>.json`` and ``.md``, with the GPU named.

Without CUDA it prints why it skipped and exits 0. ``--device cpu --tiny`` runs the same
code on the tiny checkpoints (numbers meaningless) so tests can prove the script works.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tests.support.samples import road_scene, satellite_tile

from bench import flop_floor
from pocketvl.modeltools.catalog import SIZES
from pocketvl.modeltools.tiny import build_tiny_checkpoint
from pocketvl.serving.engine import GenerationRequest, InternVLEngine
from pocketvl.vision.stitch import CAMERAS, stitch_drivelm_views

RESULTS = Path(__file__).resolve().parent / "results"
SLOW_S = 30.0  # stop growing the batch once one run takes this long


def _rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def shapes() -> dict[str, tuple[Image.Image, int, int]]:
    """name -> (the RGB image the worker would send, max tiles, tiles it makes)."""
    views = {n: _rgb(road_scene(i, (1600, 900))) for i, n in enumerate(CAMERAS)}
    return {
        "drivelm_2688x896": (stitch_drivelm_views(views), 12, 13),
        "rs_dior_800x800": (_rgb(satellite_tile(1, (800, 800))), 12, 5),
        "rs_vqa_256x256": (_rgb(satellite_tile(2, (256, 256))), 12, 1),
    }


def timed(run: Callable[[], Any], cuda: bool, reps: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(reps):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sweep(measure: Callable[[int], dict[str, Any]], batches: list[int]) -> list[dict[str, Any]]:
    """Measure each batch size in turn; stop at out-of-memory or once a run gets slow."""
    rows = []
    for batch in batches:
        try:
            row = measure(batch)
        except torch.cuda.OutOfMemoryError:
            rows.append({"batch": batch, "error": "out of GPU memory"})
            torch.cuda.empty_cache()
            break
        rows.append(row)
        if row["seconds"] > SLOW_S:
            break
    return rows


def best(rows: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    done = [r for r in rows if key in r]
    return max(done, key=lambda r: r[key]) if done else None


def summarise(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    batch1 = next((r for r in rows if r.get("batch") == 1 and key in r), None)
    return {"batch_1": batch1, "best": best(rows, key), "sweep": rows}


def vision_rows(engine: InternVLEngine, size: str, batches: list[int], peak: float | None) -> Any:
    cuda = engine.device.type == "cuda"

    def measure(tiles: int) -> dict[str, Any]:
        pixels = torch.randn(tiles, 3, 448, 448, device=engine.device, dtype=engine.dtype)

        def run() -> None:
            with torch.inference_mode():
                engine.model.get_image_features(pixel_values=pixels)

        seconds = timed(run, cuda, reps=3)
        row = {"batch": tiles, "seconds": round(seconds, 4), "tiles_per_s": tiles / seconds}
        if peak:
            row["fraction_of_peak"] = flop_floor.vision_flops(size, tiles) / seconds / peak / 1e12
        return row

    return summarise(sweep(measure, batches), "tiles_per_s")


def request_rows(
    engine: InternVLEngine, size: str, shape: tuple[Image.Image, int, int], args: argparse.Namespace
) -> Any:
    image, max_tiles, tiles = shape
    cuda = engine.device.type == "cuda"
    peak = args.peak

    def measure(batch: int) -> dict[str, Any]:
        requests = [
            GenerationRequest([image], f"Describe scene {i}.", args.new_tokens, max_tiles)
            for i in range(batch)
        ]
        results: list[Any] = []

        def run() -> None:
            results[:] = engine.generate_batch(requests)

        seconds = timed(run, cuda, reps=2)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            raise RuntimeError(f"generation failed: {failed[0]}")
        prompt = sum(r.prompt_tokens for r in results)
        generated = sum(r.generated_tokens for r in results)
        row: dict[str, Any] = {
            "batch": batch,
            "seconds": round(seconds, 4),
            "requests_per_s": batch / seconds,
            "tiles_per_s": batch * tiles / seconds,
            "prompt_tokens": prompt,
            "generated_tokens": generated,
        }
        if peak:
            flops = flop_floor.vision_flops(size, batch * tiles)
            flops += flop_floor.llm_flops(size, prompt + generated)
            row["floor_seconds"] = flop_floor.floor_seconds(flops, peak)
            row["fraction_of_peak"] = row["floor_seconds"] / seconds
        return row

    return {"tiles": tiles, **summarise(sweep(measure, args.batches), "requests_per_s")}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# PyTorch engine on {report['device']} ({report['dtype']}, torch {report['torch']})",
        "",
        f"{report['date']}; {report['weights']}; {report['new_tokens']} new tokens per "
        f"request; peak {report['peak_tflops'] or 'unknown (pass --peak-tflops)'} TFLOP/s "
        "dense BF16. Fraction of peak = FLOP floor / measured time.",
        "",
        "| size | what | batch 1 | best (batch) | fraction of peak at best |",
        "|---|---|---|---|---|",
    ]
    for size, result in report["sizes"].items():
        for what, data in [("vision tiles/s", result["vision"]), *result["requests"].items()]:
            key = "tiles_per_s" if what == "vision tiles/s" else "requests_per_s"
            one, top = data["batch_1"], data["best"]
            first = f"{one[key]:.2f}" if one else "n/a"
            peak = f"{top.get('fraction_of_peak', float('nan')):.2f}" if top else "n/a"
            top_text = f"{top[key]:.2f} ({top['batch']})" if top else "n/a"
            label = what if key == "tiles_per_s" else f"{what} req/s"
            lines.append(f"| {size} | {label} | {first} | {top_text} | {peak} |")
    return "\n".join(lines) + "\n"


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", nargs="+", default=["1b", "2b", "4b"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    parser.add_argument("--tile-batches", nargs="+", type=int, default=[1, 13, 26, 52, 104])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--peak-tflops", type=float, help="peak dense BF16 of this GPU")
    parser.add_argument("--tiny", action="store_true", help="tiny checkpoints (tests only)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print(
            "bench.gpu_check: skipped: no CUDA device here (torch.cuda.is_available() is False, "
            f"torch {torch.__version__}); nothing was measured or written"
        )
        return 0
    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    args.peak = args.peak_tflops or flop_floor.peak_tflops(device_name)
    dtype = torch.bfloat16 if cuda else torch.float32
    report: dict[str, Any] = {
        "device": device_name,
        "dtype": str(dtype),
        "torch": torch.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "new_tokens": args.new_tokens,
        "peak_tflops": args.peak,
        "weights": "tiny checkpoints" if args.tiny else "full-size random (dummy_weights)",
        "sizes": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            backbone = SIZES[size][0]
            checkpoint = build_tiny_checkpoint(Path(tmp) / backbone, backbone=backbone)
            dummy = None if args.tiny else size
            engine = InternVLEngine(checkpoint, dtype, args.device, dummy_size=dummy)
            result = {"vision": vision_rows(engine, size, args.tile_batches, args.peak)}
            result["requests"] = {
                n: request_rows(engine, size, s, args) for n, s in shapes().items()
            }
            report["sizes"][size] = result
            print(json.dumps({size: result["vision"]["best"]}), flush=True)
            del engine
            if cuda:
                torch.cuda.empty_cache()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"gpu-check-{slug(device_name)}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    print(markdown(report), end="")
    print(f"wrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
