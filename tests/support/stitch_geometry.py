"""The inverse of the stitch mapping, for tests that place objects in cameras."""

from __future__ import annotations

from pocketvl.vision.stitch import CAMERA_SIZE, STITCHED_SIZE, VIEW_SIZE, camera_cell


def camera_to_stitched(
    camera: str, x_px: float, y_px: float, camera_size: tuple[int, int] = CAMERA_SIZE
) -> tuple[float, float]:
    """Per-camera pixels as a model point, 0-1000 over the whole stitch (not rounded).

    For questions that mention objects. Whether DriveLM's questions carry integer or
    decimal 0-1000 values is unconfirmed, so rounding is left to the caller.
    """
    col, row = camera_cell(camera)
    width, height = camera_size
    x = col * VIEW_SIZE[0] + x_px / width * VIEW_SIZE[0]
    y = row * VIEW_SIZE[1] + y_px / height * VIEW_SIZE[1]
    return x / STITCHED_SIZE[0] * 1000, y / STITCHED_SIZE[1] * 1000
