"""Reading driving answers: DriveLM object references and BDD-X control signals.

Pure functions over the model's text; they never raise. The dispatcher in
``pocketvl.domains.parsers`` builds the typed answers from what these return.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TypeGuard, get_args

from pocketvl.contracts.answers import ObjectRef, Quantity
from pocketvl.contracts.common import CameraName
from pocketvl.vision.stitch import CAMERA_SIZE, stitched_to_camera

# A decimal number as a model writes it. The exponent is matched on purpose: otherwise
# "1e999" would read as 1 and the rest would be silently dropped; matched, it becomes inf
# and is refused.
NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"

# The model's normalised reference <c1,CAM_FRONT,[512.3,420]> (facts 2.4). DriveLM's native
# un-bracketed <c1,CAM_FRONT,1088.3,497.5> is already in pixels and is left alone, as
# InternVL's own post-processor leaves it (facts 6.8).
_OBJECT_REF = re.compile(
    rf"<\s*(?P<tag>c\w*)\s*,\s*(?P<camera>\w+)\s*,\s*"
    rf"\[\s*(?P<x>{NUMBER})\s*,\s*(?P<y>{NUMBER})\s*\]\s*>"
)

# BDD-X control signals (facts 3.2: the exact training string is unconfirmed), so the
# keyword is followed by a short gap of words (": ", " is ", " of the car will be ") and
# then the first number. The gap refuses digits, signs and separators so that the number
# read is the one the keyword introduces.
_GAP = r"[^\d+\-.;,\n]{0,30}?"
_SPEED = re.compile(rf"\bspeed\b{_GAP}(?P<value>{NUMBER})", re.IGNORECASE)
_TURN = re.compile(
    rf"\b(?:turn(?:ing)?[\s_-]*angle|steering[\s_-]*angle|turn|course)\b{_GAP}(?P<value>{NUMBER})",
    re.IGNORECASE,
)


def resolve_object_refs(
    text: str, camera_sizes: Mapping[str, tuple[int, int]]
) -> tuple[str, list[ObjectRef]]:
    """Every normalised object reference in ``text``, mapped to its camera's pixels.

    Returns the text with each resolved reference rewritten in DriveLM's native pixel form
    ``<c1,CAM_FRONT,1088.3,497.5>`` (what InternVL's DriveLM evaluation hands to the DriveLM
    scorer), and the references in order. References naming an unknown camera or holding a
    non-finite number are left in the text as written and not listed.
    """
    objects: list[ObjectRef] = []

    def resolve(match: re.Match[str]) -> str:
        ref = _object_ref(match, camera_sizes)
        if ref is None:
            return match.group(0)
        objects.append(ref)
        return f"<{ref.tag},{ref.camera},{ref.x},{ref.y}>"

    return _OBJECT_REF.sub(resolve, text), objects


def _object_ref(
    match: re.Match[str], camera_sizes: Mapping[str, tuple[int, int]]
) -> ObjectRef | None:
    camera = match["camera"]
    x_norm, y_norm = float(match["x"]), float(match["y"])
    if not _is_camera(camera):
        return None  # the model named no camera of the stitch: nothing to map onto
    if not (math.isfinite(x_norm) and math.isfinite(y_norm)):
        return None
    size = camera_sizes.get(camera, CAMERA_SIZE)
    if size[0] <= 0 or size[1] <= 0:
        size = CAMERA_SIZE  # a nonsensical size would map every point onto 0
    point = stitched_to_camera(x_norm, y_norm, camera=camera, camera_size=size)
    return ObjectRef(
        tag=match["tag"],
        camera=camera,
        x=point.x_px,
        y=point.y_px,
        x_norm=x_norm,
        y_norm=y_norm,
    )


def _is_camera(name: str) -> TypeGuard[CameraName]:
    return name in get_args(CameraName)


def read_control_signals(text: str) -> tuple[Quantity, Quantity] | None:
    """(speed in m/s, turning angle in degrees) from BDD-X style text, or None.

    Accepts e.g. "Speed: 5.2; Turn angle: -3.1", "speed 5.2 m/s, turning angle 3.1 degrees",
    "The speed is 2.35 and the turning angle is 0.00". The first number after each keyword
    counts; a missing or non-finite number (nan, 1e999) makes the whole reading None, since
    half a control prediction is not an answer to the question asked.
    """
    speed, angle = _first_number(_SPEED, text), _first_number(_TURN, text)
    if speed is None or angle is None:
        return None
    return Quantity(value=speed, unit="m/s"), Quantity(value=angle, unit="deg")


def _first_number(pattern: re.Pattern[str], text: str) -> float | None:
    match = pattern.search(text)
    if match is None:
        return None
    value = float(match["value"])
    return value if math.isfinite(value) else None
