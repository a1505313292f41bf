"""Synthetic sample images and requests, drawn deterministically with PIL.

Used for ``schemas/examples/`` (their provenance), the demo and tests: nothing here comes
from a real data set, so the files carry no licence or privacy burden.
"""

from __future__ import annotations

import base64
import io
import random
from typing import Any

from PIL import Image, ImageDraw


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


def inline(data: bytes, media_type: str, name: str | None = None) -> dict[str, Any]:
    image: dict[str, Any] = {
        "kind": "inline",
        "media_type": media_type,
        "data_b64": base64.b64encode(data).decode(),
    }
    if name is not None:
        image["name"] = name
    return image


def example_requests() -> dict[str, dict[str, Any]]:
    """One request per domain, keyed by file stem (``schemas/examples/<stem>.json``)."""
    return {
        "driving.drivelm": {
            "schema_version": "1",
            "event_id": "example-driving-0001",
            "domain": "driving",
            "task": {
                "type": "drivelm",
                "question": "What are the important objects in the current scene?",
            },
            "images": [inline(road_scene(1), "image/jpeg", "CAM_FRONT")],
        },
        "remote_sensing.vqa": {
            "schema_version": "1",
            "event_id": "example-rs-0001",
            "domain": "remote_sensing",
            "task": {"type": "vqa", "question": "Is there a river in the image?"},
            "images": [inline(satellite_tile(2), "image/png")],
        },
        "medical.choice": {
            "schema_version": "1",
            "event_id": "example-medical-0001",
            "domain": "medical",
            "task": {
                "type": "choice",
                "question": "Which finding is visible in this chest radiograph?",
                "options": ["Normal", "Nodule", "Pleural effusion", "Pneumothorax"],
            },
            "images": [inline(chest_xray(3), "image/png")],
        },
    }
