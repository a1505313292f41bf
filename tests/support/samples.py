"""Synthetic sample images and requests, drawn deterministically with PIL.

Used for ``schemas/examples/`` (their provenance), the demo and tests: nothing here comes
from a real data set, so the files carry no licence or privacy burden.
"""

from __future__ import annotations

import io
import random
from typing import Any

from PIL import Image, ImageDraw

from pocketvl.contracts.common import inline_image as inline


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, quality=85) if fmt == "JPEG" else image.save(buffer, format=fmt)
    return buffer.getvalue()


def road_scene(seed: int = 0, size: tuple[int, int] = (400, 225)) -> bytes:
    """A camera-like frame: sky, road with lane markings, a few box 'vehicles' (JPEG)."""
    rng = random.Random(seed)
    w, h = size
    img = Image.new("RGB", size, (135, 180, 230))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, h // 2, w, h), fill=(90, 90, 95))
    for x in range(0, w, 40):
        draw.rectangle((x, int(h * 0.75), x + 20, int(h * 0.77)), fill=(240, 240, 240))
    for _ in range(3):
        x, y = rng.randrange(0, w - 60), rng.randrange(h // 2, h - 40)
        color = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.rectangle((x, y, x + 60, y + 30), fill=color)
    return _encode(img, "JPEG")


def satellite_tile(seed: int = 0, size: tuple[int, int] = (256, 256)) -> bytes:
    """A top-down tile: fields, a river and rectangular buildings (PNG)."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, (70, 120, 60))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        draw.rectangle((x, y, x + 50, y + 40), fill=(150 + rng.randrange(60), 140, 80))
    draw.line((0, size[1] // 3, size[0], size[1] // 2), fill=(40, 80, 160), width=12)
    for _ in range(5):
        x, y = rng.randrange(size[0] - 20), rng.randrange(size[1] - 20)
        draw.rectangle((x, y, x + 14, y + 10), fill=(200, 200, 205))
    return _encode(img, "PNG")


def chest_xray(seed: int = 0, size: tuple[int, int] = (256, 256)) -> bytes:
    """A grayscale radiograph-like image: two lung fields and a spine (PNG, mode L)."""
    rng = random.Random(seed)
    w, h = size
    img = Image.new("L", size, 20)
    draw = ImageDraw.Draw(img)
    draw.ellipse((w * 0.12, h * 0.15, w * 0.46, h * 0.85), fill=70)
    draw.ellipse((w * 0.54, h * 0.15, w * 0.88, h * 0.85), fill=70)
    draw.rectangle((w * 0.47, h * 0.05, w * 0.53, h * 0.95), fill=200)
    x, y = rng.randrange(w // 5, w // 2), rng.randrange(h // 4, h // 2)
    draw.ellipse((x, y, x + 18, y + 18), fill=140)
    return _encode(img, "PNG")


def multiband_tiff(seed: int = 0, size: tuple[int, int] = (160, 160), bands: int = 4) -> bytes:
    """A 16-bit, ``bands``-band satellite-like GeoTIFF-style raster (band-interleaved, like
    GDAL output): fields and a river, values in a sensor-like 0-12000 range."""
    import numpy as np
    import tifffile

    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    base = 2000 + 1500 * np.sin(x / 17.0) * np.cos(y / 23.0)
    river = np.abs(y - (h / 3 + x / 4)) < 6
    cube = np.stack([base * (0.6 + 0.25 * b) for b in range(bands)], axis=0)
    water = np.array([300.0 + 200 * b for b in range(bands)])  # dark in every band
    cube[:, river] = water[:, None]
    cube += rng.normal(0, 120, cube.shape)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.clip(cube, 0, 12000).astype("uint16"), photometric="minisblack")
    return buffer.getvalue()


def dicom_radiograph(seed: int = 0, size: tuple[int, int] = (192, 192)) -> bytes:
    """A synthetic 16-bit MONOCHROME2 DICOM with rescale slope/intercept and a window.

    Identifiers are placeholders: nothing here describes a person."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    gray = np.asarray(Image.open(io.BytesIO(chest_xray(seed, size))), dtype=np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[f"pocketvl-{seed}"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.PatientName, ds.PatientID, ds.Modality = "SYNTHETIC^PHANTOM", "SYNTH-0001", "DX"
    ds.Rows, ds.Columns = gray.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 4, -1024
    ds.WindowCenter, ds.WindowWidth = -500, 1000
    ds.PixelData = (gray * 4).astype("<u2").tobytes()  # stored values 0..1020
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def example_requests() -> dict[str, dict[str, Any]]:
    """One request per domain and task, keyed by file stem (``schemas/examples/<stem>.json``)."""
    from pocketvl.contracts.common import DRIVELM_CAMERAS

    tile = inline(satellite_tile(2), "image/png")

    def request(
        event_id: str, domain: str, task: dict[str, Any], images: list[dict[str, Any]], **extra: Any
    ) -> dict[str, Any]:
        return {
            "schema_version": "1",
            "event_id": event_id,
            "domain": domain,
            "task": task,
            "images": images,
            **extra,
        }

    return {
        "driving.drivelm": request(
            "example-driving-drivelm-0001",
            "driving",
            {"type": "drivelm", "question": "What are the important objects in the current scene?"},
            [
                inline(road_scene(10 + i, (320, 180)), "image/jpeg", name)
                for i, name in enumerate(DRIVELM_CAMERAS)
            ],
        ),
        "driving.bdd": request(
            "example-driving-bdd-0001",
            "driving",
            {"type": "bdd", "predict": "control"},
            [inline(road_scene(20 + i, (320, 180)), "image/jpeg", f"frame-{i}") for i in range(4)],
        ),
        "remote_sensing.vqa": request(
            "example-rs-vqa-0001",
            "remote_sensing",
            {"type": "vqa", "question": "Is there a river in the image?"},
            [tile],
        ),
        "remote_sensing.classify": request(
            "example-rs-classify-0001",
            "remote_sensing",
            {
                "type": "classify",
                "labels": ["farmland", "forest", "river", "residential area", "airport"],
            },
            [inline(multiband_tiff(3, (96, 96)), "image/tiff")],
            decode={"bands": [2, 1, 0]},
        ),
        "remote_sensing.ground": request(
            "example-rs-ground-0001",
            "remote_sensing",
            {"type": "ground", "expression": "the river"},
            [tile],
        ),
        "remote_sensing.caption": request(
            "example-rs-caption-0001",
            "remote_sensing",
            {"type": "caption"},
            [inline(satellite_tile(4), "image/png")],
        ),
        "medical.vqa": request(
            "example-medical-vqa-0001",
            "medical",
            {"type": "vqa", "question": "Is there a nodule in the left lung?"},
            [inline(dicom_radiograph(5, (128, 128)), "application/dicom")],
        ),
        "medical.choice": request(
            "example-medical-choice-0001",
            "medical",
            {
                "type": "choice",
                "question": "Which finding is visible in this chest radiograph?",
                "options": ["Normal", "Nodule", "Pleural effusion", "Pneumothorax"],
            },
            [inline(chest_xray(3), "image/png")],
        ),
    }
