"""What a caller asks of the media decoders, what they hand back, and the shared caps.

Caps are checked from headers, before any pixel buffer is allocated: the decoders call
:func:`check_pixels` and :func:`check_frames` with sizes read from the container, never from
decoded data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from pocketvl.errors import ImageError


@dataclass(frozen=True)
class DecodeOptions:
    """Caps and per-format choices. Invalid values raise ``ImageError("option_out_of_range")``
    because they may come from a request (bands, DICOM frame, window)."""

    max_pixels: int  # decompression-bomb cap per frame, from headers
    max_frames: int = 64  # frames in a video / multi-frame DICOM source
    bands: tuple[int, int, int] | None = None  # TIFF: 0-based source bands for R, G, B
    stretch_percentiles: tuple[float, float] = (2.0, 98.0)  # TIFF: per-band stretch to 8-bit
    dicom_frame: int | None = None  # multi-frame DICOM: this frame, else the middle one
    dicom_window: tuple[float, float] | None = None  # (centre, width) override
    video_frames: int = 8  # frames sampled uniformly across a clip
    # Called with what a frame will cost in memory, from its header, before it is decoded
    # (the worker's decoded-image budget; it may wait there). None: nothing is reserved.
    reserve: Callable[[int], None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        low, high = self.stretch_percentiles
        problems = [
            (self.max_pixels < 1, "max_pixels must be at least 1"),
            (self.max_frames < 1, "max_frames must be at least 1"),
            (self.video_frames < 1, "video_frames must be at least 1"),
            (not 0.0 <= low < high <= 100.0, "stretch_percentiles must be 0 <= low < high <= 100"),
            (self.bands is not None and len(self.bands) != 3, "bands must name R, G and B"),
            (self.bands is not None and min(self.bands) < 0, "bands must be >= 0"),
            (self.dicom_frame is not None and self.dicom_frame < 0, "dicom_frame must be >= 0"),
            (self.dicom_window is not None and self.dicom_window[1] <= 0, "window width <= 0"),
        ]
        for failed, message in problems:
            if failed:
                raise ImageError("option_out_of_range", message)


@dataclass(frozen=True)
class LoadedImage:
    """An encoded input as fetched (inline or from a store): bytes, digest, declared type."""

    data: bytes
    sha256: str
    media_type: str


@dataclass(frozen=True)
class DecodedMedia:
    """8-bit RGB frames (one for stills, several for video), the source size, and notes.

    ``notes`` say what was done to the pixels ("exif orientation 6 applied", "window c=40
    w=400"); they never carry values read from the file's metadata, so no patient data.
    """

    frames: list[Image.Image]
    original_size: tuple[int, int]  # (width, height) before any conversion
    notes: tuple[str, ...] = ()


def check_pixels(width: int, height: int, options: DecodeOptions) -> None:
    """Refuse a frame whose header size is over the cap (or not a real size)."""
    if width < 1 or height < 1:
        raise ImageError("image_undecodable", f"header size {width}x{height} is not an image")
    if width * height > options.max_pixels:
        raise ImageError(
            "too_many_pixels",
            f"{width}x{height} is over the cap of {options.max_pixels} pixels",
        )


# Peak bytes per pixel of one 8-bit RGB frame through decode, conversion, composing and
# packing the raw RGB tensor for Triton: ~9.9 measured at the 40 MP cap for PNG and JPEG
# (bench/results/memory.json).
RGB_WORK_BYTES_PER_PIXEL = 10


def reserve_memory(options: DecodeOptions, nbytes: int) -> None:
    """Ask the caller's memory budget for ``nbytes`` before allocating them."""
    if options.reserve is not None:
        options.reserve(nbytes)


def check_frames(count: int, options: DecodeOptions) -> None:
    if count > options.max_frames:
        raise ImageError(
            "too_many_frames", f"{count} frames is over the cap of {options.max_frames}"
        )
