"""CPU per request on the data path, worker and model apart, before and after raw RGB.

Run ``make bench`` (or ``python -m bench.datapath``). For each domain shape the worker's
part (decode, compose, build the Triton input tensors) and the model's part (read the
tensors, tile, normalise) are timed side by side for both data paths:

- before: the worker encoded every composed image as PNG and the model decoded it again;
- after: the worker sends the decoded RGB pixels (``contracts.triton``); the model reads
  them as they are. "model (GPU host)" leaves out the normalisation, which a GPU engine
  does on the device.

Then the model's preprocessing runs behind a real Triton (the ``preprocess_only`` stand-in)
with one instance and with two, under concurrent DriveLM-shaped requests: throughput with
two over throughput with one shows whether the work spreads across instances. Both ways of
sending the pixels take turns: inside the gRPC message and through system shared memory
(``triton.shared_memory``), which leaves the client and Triton's front end less to copy.
Last, CPU cores per GPU: this machine's CPU per request over an ESTIMATE of the GPU time per
request (the FLOP floor of ``shared/reference/serving_and_consumption.md`` §3.2: ViT, projector
and LLM prefill per tile at 40-50 % of an H100's dense BF16 peak; decoding left out, so the
GPU time is a floor and the cores an upper bound). No GPU was measured.
Results go to ``bench/results/datapath.json``; Markdown tables are printed.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tests.support.examples import example
from tests.support.samples import dicom_radiograph, multiband_tiff

import pocketvl
from bench.preprocess import camera_like, jpeg, machine
from pocketvl.adapters import triton_client
from pocketvl.contracts import triton as tc
from pocketvl.contracts.messages import AnyRequest
from pocketvl.domains.compose import Composed, prepare_inputs
from pocketvl.media.options import LoadedImage
from pocketvl.serving.engine import normalize_tiles
from pocketvl.serving.triton_inputs import rgb_images
from pocketvl.settings import LimitSettings
from pocketvl.vision.tiling import preprocess_image, tiles_uint8
from pocketvl.worker.codec import decode_request

RUNS = 7
WARMUP = 1
RESULTS = Path(__file__).resolve().parent / "results" / "datapath.json"
LIMITS = LimitSettings()
# The encoded-image tensor the worker used to send (kept here only to measure it).
_PNG_IMAGES = tc.TensorSpec("IMAGES", "TYPE_STRING", (-1,))
_SERVICES = str(Path(pocketvl.__file__).resolve().parents[1])

Shape = tuple[AnyRequest, list[LoadedImage], int]

# Estimates, not measurements: TFLOP per 448x448 tile (ViT 0.724 + projector + the LLM's
# prefill of the tile's 256 tokens), the H100's dense BF16 peak, and the MFU range assumed.
TFLOP_PER_TILE = {
    "1b": 0.724 + 0.0023 + 0.183,
    "2b": 0.724 + 0.0064 + 0.773,
    "4b": 0.724 + 0.0113 + 1.855,
}
H100_BF16_TFLOPS = 989.0
MFU = (0.4, 0.5)


# --- the domain shapes ------------------------------------------------------------------------


def _loaded(data: bytes, media_type: str) -> LoadedImage:
    return LoadedImage(data, hashlib.sha256(data).hexdigest(), media_type)


def _request(name: str, images: int | None = None) -> AnyRequest:
    body = example(name)
    if images is not None:
        body["images"] = [dict(body["images"][0], name=f"frame-{i}") for i in range(images)]
    return decode_request(json.dumps(body).encode(), str(body["domain"]))


def domain_shapes() -> dict[str, Shape]:
    cameras = [_loaded(jpeg(camera_like(1600, 900, i), 90), "image/jpeg") for i in range(6)]
    frames = [_loaded(jpeg(camera_like(1280, 720, 20 + i), 90), "image/jpeg") for i in range(8)]
    tiff = _loaded(multiband_tiff(3, (1024, 1024), bands=4), "image/tiff")
    dicom = _loaded(dicom_radiograph(5, (2048, 2048)), "application/dicom")
    return {
        "DriveLM 6x1600x900 JPEG": (_request("driving.drivelm"), cameras, 12),
        "BDD 8x1280x720 JPEG": (_request("driving.bdd", images=8), frames, 1),
        "GeoTIFF 4-band uint16 1024x1024": (_request("remote_sensing.classify"), [tiff], 12),
        "DICOM uint16 2048x2048": (_request("medical.vqa"), [dicom], 6),
    }


# --- the two paths, each in two halves -----------------------------------------------------


def _png(pixels: tc.RgbImage) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _compose(shape: Shape) -> Composed:
    request, images, _ = shape
    return prepare_inputs(request, images, LIMITS)


def worker_before(shape: Shape) -> list[bytes]:
    pngs = [_png(pixels) for pixels in _compose(shape).images]
    triton_client._bytes_input(_PNG_IMAGES, pngs)  # what the adapter serialised
    return pngs


def worker_after(shape: Shape) -> tuple[Any, Any]:
    pixels, shapes = tc.pack_images(_compose(shape).images)
    triton_client._array_input(tc.PIXELS, pixels)
    triton_client._array_input(tc.IMAGE_SHAPES, shapes)
    return pixels, shapes


def model_before(pngs: list[bytes], max_tiles: int) -> int:
    tiles = 0
    for data in pngs:
        with Image.open(io.BytesIO(data)) as image:
            tiles += len(preprocess_image(image.convert("RGB"), max_tiles))
    return tiles


def model_after(packed: tuple[Any, Any], max_tiles: int, normalise: bool = True) -> int:
    tiles = [tiles_uint8(image, max_tiles) for image in rgb_images(*packed)]
    batch = torch.from_numpy(np.concatenate(tiles))
    if normalise:
        normalize_tiles(batch, torch.float32)
    return len(batch)


# --- measuring ------------------------------------------------------------------------------


def _cpu_and_wall(paths: dict[str, Callable[[], object]]) -> dict[str, dict[str, float]]:
    """Median process CPU ms and wall ms of each path; the paths take turns."""
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    wall: dict[str, list[float]] = {name: [] for name in paths}
    for run in range(WARMUP + RUNS):
        for name, path in paths.items():
            c, w = time.process_time(), time.perf_counter()
            path()
            if run >= WARMUP:
                cpu[name].append((time.process_time() - c) * 1e3)
                wall[name].append((time.perf_counter() - w) * 1e3)
    return {
        name: {
            "cpu_ms": round(statistics.median(cpu[name]), 1),
            "wall_ms": round(statistics.median(wall[name]), 1),
        }
        for name in paths
    }


def measure_shape(name: str, shape: Shape) -> dict[str, Any]:
    max_tiles = shape[2]
    pngs, packed = worker_before(shape), worker_after(shape)
    assert model_before(pngs, max_tiles) == model_after(packed, max_tiles)  # same tiles
    timed = _cpu_and_wall(
        {
            "worker_before": lambda: worker_before(shape),
            "worker_after": lambda: worker_after(shape),
            "model_before": lambda: model_before(pngs, max_tiles),
            "model_after": lambda: model_after(packed, max_tiles),
            "model_after_gpu_host": lambda: model_after(packed, max_tiles, normalise=False),
        }
    )
    return {
        "shape": name,
        "tiles": model_after(packed, max_tiles),
        "png_bytes": sum(len(p) for p in pngs),
        "rgb_bytes": int(packed[0].nbytes),
        **timed,
    }


_FORKED: dict[str, tuple[Any, Any]] = {}  # what forked workers preprocess (no pickling)


def _preprocess_forked(_: int) -> int:
    return sum(len(preprocess_image(i, 12, threads=1)) for i in rgb_images(*_FORKED["input"]))


ROUNDS = 5  # the machine is shared: 1 and 2 take turns, and the medians are compared


def _ratio(out: dict[str, Any], one: str, two: str) -> dict[str, Any]:
    """Median rates of ``one`` and ``two`` over the rounds, and their ratio."""
    medians = {key: round(statistics.median(out[key]), 2) for key in (one, two)}
    return {
        **out,
        **{f"{k}_median": v for k, v in medians.items()},
        "speedup_2_over_1": round(medians[two] / medians[one], 2),
    }


def process_scaling(requests: int = 32) -> dict[str, Any]:
    """Requests/s of the model's host preprocessing in one process and in two (Triton's
    Python instances are processes): whether the work has anything that serialises it."""
    composed = _compose(domain_shapes()["DriveLM 6x1600x900 JPEG"])
    _FORKED["input"] = tc.pack_images(composed.images)
    out: dict[str, Any] = {"requests": requests, "processes_1": [], "processes_2": []}
    context = multiprocessing.get_context("fork")
    for _ in range(ROUNDS):
        for processes in (1, 2):
            with context.Pool(processes) as pool:
                pool.map(_preprocess_forked, range(processes))  # warm-up
                start = time.perf_counter()
                pool.map(_preprocess_forked, range(requests), chunksize=1)
                rate = requests / (time.perf_counter() - start)
            out[f"processes_{processes}"].append(round(rate, 2))
    return _ratio(out, "processes_1", "processes_2")


def instance_scaling(requests: int = 48, concurrency: int = 4) -> dict[str, Any]:
    """Requests/s of the ``preprocess_only`` stand-in with one instance and with two, the
    pixels sent inside the gRPC message and through shared memory (``triton.shared_memory``),
    taking turns in each round."""
    from pocketvl.adapters.triton_client import TritonInference
    from pocketvl.devstack.paths import stand_in_repository
    from pocketvl.devstack.stack import LocalStack
    from pocketvl.settings import TritonSettings

    composed = _compose(domain_shapes()["DriveLM 6x1600x900 JPEG"])
    with tempfile.TemporaryDirectory(prefix="pocketvl-datapath-") as tmp:
        repo = Path(tmp) / "models"
        source = stand_in_repository() / "preprocess_only"
        for count in (1, 2):
            target = repo / f"preprocess_x{count}"
            shutil.copytree(source, target)
            config = (target / "config.pbtxt").read_text()
            config = config.replace('name: "preprocess_only"', f'name: "preprocess_x{count}"')
            (target / "config.pbtxt").write_text(config.replace("count: 1", f"count: {count}"))
            # Triton's Python stub ignores PYTHONPATH (isolated interpreter): point it at the
            # pocketvl this benchmark imports, or a checkout's stand-in would run another's.
            shell = target / "1" / "model.py"
            future = "from __future__ import annotations\n"
            path_line = f"{future}import sys\nsys.path.insert(0, {_SERVICES!r})\n"
            shell.write_text(shell.read_text().replace(future, path_line, 1))
        models = ("preprocess_x1", "preprocess_x2")
        stack = LocalStack(Path(tmp) / "run", repo, Path(tmp), models, components=("triton",))
        out: dict[str, Any] = {"requests": requests, "concurrency": concurrency}
        with stack as state:
            for transport in TRANSPORTS:
                out[transport] = {model: [] for model in models}
                out[transport]["client_cpu_ms_per_request"] = []
            for _ in range(ROUNDS):
                for transport in TRANSPORTS:
                    settings = TritonSettings(
                        url=state.triton_url, shared_memory=transport == "shared_memory"
                    )
                    triton = TritonInference(settings)
                    for model in models:
                        rate, client_ms = _rate(triton, model, composed, requests, concurrency)
                        out[transport][model].append(rate)
                        # The client shares the cores with Triton: what it takes of them.
                        out[transport]["client_cpu_ms_per_request"].append(client_ms)
                    triton.close()
    for transport in TRANSPORTS:
        out[transport] = _ratio(out[transport], *models)
    return out


TRANSPORTS = ("message", "shared_memory")


def _rate(
    triton: Any, model: str, composed: Composed, requests: int, concurrency: int
) -> tuple[float, float]:
    """(requests/s, client CPU ms per request) of ``requests`` sent ``concurrency`` at once."""

    def ask(_: int) -> object:
        return triton.generate(model, composed.images, "Q", 1, 12)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(ask, range(concurrency)))  # warm-up
        start, cpu = time.perf_counter(), time.process_time()
        list(pool.map(ask, range(requests)))
    rate = requests / (time.perf_counter() - start)
    return round(rate, 2), round((time.process_time() - cpu) * 1e3 / requests, 1)


def cores_per_gpu(row: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """Cores that keep one H100 busy with this shape: (worker + model host CPU ms) over the
    estimated GPU ms per request, for each model size; and the GPU ms range used."""
    cpu_ms = row["worker_after"]["cpu_ms"] + row["model_after_gpu_host"]["cpu_ms"]
    out = {}
    for size, tflop in TFLOP_PER_TILE.items():
        fast, slow = (row["tiles"] * tflop / (H100_BF16_TFLOPS * m) * 1e3 for m in MFU[::-1])
        out[size] = {
            "gpu_ms_estimate": [round(fast, 1), round(slow, 1)],
            "cores": [round(cpu_ms / slow, 1), round(cpu_ms / fast, 1)],
        }
    return out


def print_cores(rows: list[dict[str, Any]]) -> None:
    print("\n| shape | CPU ms (worker + model host) | 1B cores/GPU | 2B cores/GPU | 4B cores/GPU |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        cpu = r["worker_after"]["cpu_ms"] + r["model_after_gpu_host"]["cpu_ms"]
        cells = [
            "{:.1f}-{:.1f}".format(*r["cores_per_h100_estimate"][size]["cores"])
            for size in TFLOP_PER_TILE
        ]
        print(f"| {r['shape']} | {cpu:.0f} | " + " | ".join(cells) + " |")
    print("\nGPU time per request is an ESTIMATE (FLOP floor, 40-50 % MFU on an H100, no decode).")


def print_table(rows: list[dict[str, Any]], scaling: dict[str, Any]) -> None:
    print(
        "| shape | tiles | worker before | worker after | model before | model after "
        "| model after (GPU host) | PNG MB | RGB MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ms = [
            r[k]["cpu_ms"]
            for k in (
                "worker_before",
                "worker_after",
                "model_before",
                "model_after",
                "model_after_gpu_host",
            )
        ]
        print(
            f"| {r['shape']} | {r['tiles']} | "
            + " | ".join(f"{m:.0f}" for m in ms)
            + f" | {r['png_bytes'] / 1e6:.1f} | {r['rgb_bytes'] / 1e6:.1f} |"
        )
    host = scaling["host_processes"]
    print(
        "\nCPU ms per request (process CPU time, median). The model's preprocessing, "
        f"DriveLM-shaped, medians of {ROUNDS} rounds, behind Triton with 1 and 2 instances "
        "(the client on the same cores):"
    )
    print("\n| pixels sent | 1 instance | 2 instances | 2 over 1 | client CPU ms / request |")
    print("|---|---:|---:|---:|---:|")
    for transport in TRANSPORTS:
        row = scaling[transport]
        client = round(statistics.median(row["client_cpu_ms_per_request"]), 1)
        print(
            f"| {transport.replace('_', ' ')} | {row['preprocess_x1_median']} req/s "
            f"| {row['preprocess_x2_median']} req/s | {row['speedup_2_over_1']}x | {client} |"
        )
    print(
        f"\nWithout Triton, in 1 and 2 processes: {host['processes_1_median']} and "
        f"{host['processes_2_median']} req/s ({host['speedup_2_over_1']}x)."
    )


def main() -> None:
    torch.set_num_threads(1)  # the model side's normalise: no OpenMP threads left spinning
    before = {**machine(), "runs": RUNS, "warmup": WARMUP}
    rows = [measure_shape(name, shape) for name, shape in domain_shapes().items()]
    for row in rows:
        row["cores_per_h100_estimate"] = cores_per_gpu(row)
    scaling = instance_scaling()
    scaling["host_processes"] = process_scaling()
    report = {
        "machine": before,
        "load_average_after": machine()["load_average"],
        "runs": RUNS,
        "results": rows,
        "instance_scaling": scaling,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print_table(rows, scaling)
    print_cores(rows)
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
