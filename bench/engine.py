"""Engine throughput with full-size random weights (no downloads): images/s and tokens/s.

    python -m bench.engine [--device cuda] [--sizes 1b 2b 4b] [--batches 1 4 8]

Two workloads: DriveLM-shaped (one 2688x896 stitched image -> 12 tiles + thumbnail) and a
single 448x448 tile. Random weights rarely emit the stop token, so each request generates
its full token budget. Needs CUDA by default; without it the run is skipped with a message
(CI never has a GPU). Results go to bench/results/engine-<device>.json with the device name.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tests.support.samples import road_scene, satellite_tile

from pocketvl.modeltools.catalog import SIZES
from pocketvl.modeltools.tiny import build_tiny_checkpoint
from pocketvl.serving.engine import GenerationRequest, InternVLEngine
from pocketvl.vision.stitch import CAMERAS, stitch_drivelm_views

RESULTS = Path(__file__).resolve().parent / "results"


def _workloads() -> dict[str, tuple[Image.Image, int]]:
    views = {
        name: Image.open(io.BytesIO(road_scene(i, (1600, 900)))) for i, name in enumerate(CAMERAS)
    }
    with Image.open(io.BytesIO(satellite_tile(1, (448, 448)))) as tile:
        single = tile.convert("RGB")
    return {
        "drivelm_13_tiles": (stitch_drivelm_views(views), 12),
        "single_tile": (single, 1),
    }


def _measure(
    engine: InternVLEngine, image: Image.Image, tiles: int, batch: int, new_tokens: int
) -> dict[str, Any]:
    requests = [
        GenerationRequest([image], f"Describe scene {i}.", new_tokens, tiles) for i in range(batch)
    ]
    engine.generate_batch(requests)  # warm-up
    times = []
    generated = 0
    for _ in range(3):
        if engine.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        results = engine.generate_batch(requests)
        if engine.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        generated = sum(getattr(r, "generated_tokens", 0) for r in results)
    seconds = statistics.median(times)
    return {
        "batch": batch,
        "seconds": round(seconds, 3),
        "images_per_s": round(batch / seconds, 2),
        "generated_tokens_per_s": round(generated / seconds, 1),
        "generated_tokens": generated,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", nargs="+", default=["1b", "2b", "4b"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--workloads", nargs="+", default=["drivelm_13_tiles", "single_tile"])
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench.engine: skipped, no CUDA device here (run with --device cpu to force CPU)")
        return 0
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    device_name = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            backbone = SIZES[size][0]
            tokenizer_dir = build_tiny_checkpoint(Path(tmp) / backbone, backbone=backbone)
            engine = InternVLEngine(tokenizer_dir, dtype, args.device, dummy_size=size)
            workloads = {k: v for k, v in _workloads().items() if k in args.workloads}
            for workload, (image, tiles) in workloads.items():
                for batch in args.batches:
                    row = {
                        "size": size,
                        "workload": workload,
                        **_measure(engine, image, tiles, batch, args.new_tokens),
                    }
                    print(json.dumps(row), flush=True)
                    rows.append(row)
            del engine
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    report = {
        "device": device_name,
        "dtype": str(dtype),
        "torch": torch.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "new_tokens": args.new_tokens,
        "results": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"engine-{args.device.split(':')[0]}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
