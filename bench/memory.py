"""Peak memory of one request in the worker, at the configured pixel cap.

Run ``make bench`` (or ``python -m bench.memory``). Each case runs in a fresh process:
imports, settings and a small warm-up request first, then one request through the worker's
own path (fetch from a ``file://`` reference, decode, compose, pack the RGB tensor for
Triton). The
figure is the growth of the process's peak resident set (``ru_maxrss``) over the warm-up
peak: what one such request in flight adds, which the concurrent core sizes its memory
budget with. Results go to ``bench/results/memory.json``.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

RESULTS = Path(__file__).resolve().parent / "results" / "memory.json"
CAP_PIXELS = 40_000_000  # limits.max_image_pixels' default


def _gradient(width: int, height: int, bands: int, dtype: Any) -> npt.NDArray[Any]:
    """Smooth content with a little noise: compresses like a real picture, not a flat one."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    top = np.iinfo(dtype).max
    planes = [((x / width + y / height + b / bands) % 1.0) * top for b in range(bands)]
    noise = np.random.default_rng(0).integers(0, max(top // 4096, 2), (height, width), dtype)
    return np.dstack([(p.astype(dtype) + noise) for p in planes])


def _encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def case_files() -> dict[str, tuple[str, bytes, dict[str, Any]]]:
    """name -> (media type, file bytes, request overrides)."""
    import pydicom
    import tifffile
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.pixels.utils import set_pixel_data
    from pydicom.uid import (
        DeflatedExplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        SecondaryCaptureImageStorage,
    )

    rgb = Image.fromarray(_gradient(8000, 5000, 3, np.uint8))
    noisy = np.random.default_rng(1).integers(0, 40, (5000, 8000, 3), np.uint8)
    photo = Image.fromarray(np.clip(_gradient(8000, 5000, 3, np.uint8) // 2 + noisy, 0, 255))
    tiff = io.BytesIO()
    # The largest TIFF the caps let through: 4 bands of 16 bits at the full pixel cap;
    # zlib makes it a small file (a real scene would be larger, the decode the same).
    tifffile.imwrite(
        tiff,
        np.zeros((5000, 8000, 4), np.uint16),
        photometric="minisblack",
        planarconfig="contig",
        compression="zlib",
    )
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    set_pixel_data(ds, _gradient(3000, 3000, 1, np.uint16)[..., 0], "MONOCHROME2", 16)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    dicom = io.BytesIO()
    pydicom.dcmwrite(dicom, ds, enforce_file_format=True)
    big = Dataset()
    big.file_meta = FileMetaDataset()
    big.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    big.SOPClassUID = SecondaryCaptureImageStorage
    set_pixel_data(big, np.zeros((6000, 6000), np.uint16), "MONOCHROME2", 16)
    big.file_meta.MediaStorageSOPClassUID = big.SOPClassUID
    big.file_meta.MediaStorageSOPInstanceUID = big.SOPInstanceUID
    deflated = io.BytesIO()
    pydicom.dcmwrite(deflated, big, enforce_file_format=True)
    return {
        "PNG 8000x5000 RGB (40 MP, the cap)": ("image/png", _encode(rgb, "PNG"), {}),
        "JPEG 8000x5000 RGB (40 MP)": ("image/jpeg", _encode(rgb, "JPEG", quality=90), {}),
        "JPEG 8000x5000 noisy photo": ("image/jpeg", _encode(photo, "JPEG", quality=80), {}),
        "TIFF 8000x5000 4-band 16-bit (cap)": ("image/tiff", tiff.getvalue(), {}),
        "DICOM 3000x3000 16-bit radiograph": ("application/dicom", dicom.getvalue(), {}),
        "DICOM 6000x6000 16-bit deflated": ("application/dicom", deflated.getvalue(), {}),
    }


def _request(path: Path, data: bytes, media_type: str, domain: str) -> dict[str, Any]:
    task = {"type": "vqa", "question": "What is shown?"}
    return {
        "event_id": "bench",
        "domain": domain,
        "task": task,
        "images": [
            {
                "kind": "ref",
                "uri": path.as_uri(),
                "sha256": hashlib.sha256(data).hexdigest(),
                "media_type": media_type,
                "size_bytes": len(data),
            }
        ],
    }


def _status_mb(field: str) -> float:
    """VmRSS / VmHWM of this process in MB (ru_maxrss would carry the parent's peak
    across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: the high-water mark := now


def child(path: str, media_type: str) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    from pocketvl.adapters.claim_check import image_stores
    from pocketvl.contracts.messages import REQUEST_ADAPTER
    from pocketvl.contracts.triton import pack_images
    from pocketvl.domains.compose import prepare_inputs
    from pocketvl.settings import ImageStoreSettings, LimitSettings
    from pocketvl.worker.images import ImageFetcher

    target = Path(path)
    data = target.read_bytes()
    domain = "medical" if media_type == "application/dicom" else "remote_sensing"
    limits = LimitSettings()  # the default caps
    loader = ImageFetcher(limits, image_stores(ImageStoreSettings(file_roots=[target.parent])))
    small = target.parent / "small.png"
    small.write_bytes(_encode(Image.new("RGB", (64, 64)), "PNG"))
    for file, kind in ((small, "image/png"), (target, media_type)):
        request = REQUEST_ADAPTER.validate_python(_request(file, file.read_bytes(), kind, domain))
        if file == target:
            del data  # the file's bytes come from the loader, as in the worker
            _reset_peak()
            before = _status_mb("VmRSS")
        images = loader.load_all(request.images)
        composed = prepare_inputs(request, images, limits)
        pixels, _ = pack_images(composed.images)  # the adapter's one flat copy
        sent = composed.payload_bytes
        del images, composed, pixels
    figures = {"baseline_mb": round(before, 1), "peak_mb": round(_status_mb("VmHWM"), 1)}
    print(json.dumps({**figures, "sent_bytes": sent}))


def measure(name: str, media_type: str, data: bytes) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input"
        path.write_bytes(data)
        out = subprocess.run(
            [sys.executable, "-m", "bench.memory", "--child", str(path), media_type],
            check=False,
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
    if out.returncode != 0:
        raise SystemExit(f"{name}: the measurement failed:\n{out.stderr[-2000:]}")
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    growth = figures["peak_mb"] - figures["baseline_mb"]
    return {
        "input": name,
        "file_mb": round(len(data) / 2**20, 1),
        "peak_growth_mb": round(growth, 1),
        "rgb_sent_to_triton_mb": round(figures["sent_bytes"] / 2**20, 1),
        **figures,
    }


def main() -> None:
    rows = [measure(name, kind, data) for name, (kind, data, _) in case_files().items()]
    report = {
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
        "method": "fresh process per input; ru_maxrss growth over a warm-up request",
        "results": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'input':40} {'file MB':>8} {'peak +MB':>9} {'RGB to Triton MB':>17}")
    for row in rows:
        print(
            f"{row['input']:40} {row['file_mb']:>8} {row['peak_growth_mb']:>9} "
            f"{row['rgb_sent_to_triton_mb']:>17}"
        )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
