"""Pure sample-to-8-bit mappings shared by the TIFF, DICOM and 16-bit PNG paths."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

UInt8Array = npt.NDArray[np.uint8]

# Percentiles are estimated on a spatial subsample of about this many pixels: exact enough
# for a display stretch, and it keeps a 40-megapixel band from being sorted in full.
_PERCENTILE_SAMPLE_PIXELS = 1_000_000


def unit_to_uint8(unit: npt.NDArray[np.floating[Any]]) -> UInt8Array:
    """[0, 1] floats (NaN counts as 0) to 0..255, clipping and rounding to nearest."""
    finite = np.nan_to_num(unit, nan=0.0, posinf=1.0, neginf=0.0)
    scaled: UInt8Array = np.rint(np.clip(finite, 0.0, 1.0) * 255.0).astype(np.uint8)
    return scaled


def scale_full_range(samples: npt.NDArray[np.generic], max_value: float) -> UInt8Array:
    """Linear 0..max_value to 0..255: 16-bit PNG (65535 -> 255, not clipped at 255)."""
    return unit_to_uint8(samples.astype(np.float32) / np.float32(max_value))


def scale_min_max(samples: npt.NDArray[np.generic]) -> UInt8Array:
    values = samples.astype(np.float32)
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    return unit_to_uint8((values - np.float32(low)) / np.float32(high - low))


def stretch_percentiles(band: npt.NDArray[np.generic], low: float, high: float) -> UInt8Array:
    """Map the ``low``..``high`` percentile range of one band to 0..255 (NaN ignored).

    A constant band has no range to stretch and comes out black.
    """
    step = max(1, math.ceil(math.sqrt(band.size / _PERCENTILE_SAMPLE_PIXELS)))
    sample = band[::step, ::step].astype(np.float32)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return np.zeros(band.shape, np.uint8)
    lo, hi = (float(v) for v in np.percentile(sample, (low, high)))
    if hi <= lo:
        return np.zeros(band.shape, np.uint8)
    return unit_to_uint8((band.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo))


def apply_window(
    values: npt.NDArray[np.floating[Any]], centre: float, width: float, function: str = "LINEAR"
) -> UInt8Array:
    """DICOM VOI window (PS3.3 C.11.2.1.2) to 0..255.

    LINEAR: at or below c - 0.5 - (w-1)/2 is 0, above c - 0.5 + (w-1)/2 is 255, linear between.
    LINEAR_EXACT and SIGMOID follow C.11.2.1.3.2 and C.11.2.1.3.1.
    """
    if function == "SIGMOID":
        return unit_to_uint8(1.0 / (1.0 + np.exp(-4.0 * (values - centre) / width)))
    if function == "LINEAR_EXACT":
        return unit_to_uint8((values - centre) / width + 0.5)
    if width <= 1.0:  # a one-value window is a threshold
        return np.where(values > centre - 0.5, 255, 0).astype(np.uint8)
    return unit_to_uint8((values - (centre - 0.5)) / (width - 1.0) + 0.5)
