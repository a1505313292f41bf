"""DICOM Part 10 to one 8-bit RGB picture, with pydicom.

Greyscale: Rescale Slope/Intercept, then the VOI window (the request's, else the file's first
Window Centre/Width, else min-max), then MONOCHROME1 inversion. Colour (RGB, YBR_*) passes
through, converted to RGB by pydicom. Multi-frame: one frame, the requested or the middle one;
enhanced multi-frame objects take rescale and window from their functional groups.

No patient data leaves this module. The file is read with ``specific_tags``, so patient,
study and equipment elements are skipped unparsed; messages and notes carry only sizes,
transfer-syntax names and numbers computed here, never element values, dataset reprs or
pydicom's exception texts; pydicom's warnings (which can quote element values) are silenced.
For the same reason pydicom's exceptions are not chained (``from None``): a logged traceback
would print their text. The message keeps the exception's type for debugging.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import pixel_array

from pocketvl.errors import ImageError
from pocketvl.media.options import DecodedMedia, DecodeOptions, check_frames, check_pixels
from pocketvl.media.scaling import apply_window, scale_full_range, scale_min_max

_TAGS = [
    *("Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration"),
    *("BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "NumberOfFrames"),
    *("ExtendedOffsetTable", "ExtendedOffsetTableLengths", "PixelData"),
    *("FloatPixelData", "DoubleFloatPixelData"),  # read only to be refused by name
    *("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth", "VOILUTFunction"),
    *("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"),
]
_GREY = frozenset({"MONOCHROME1", "MONOCHROME2"})
_COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420"})
_OTHER = frozenset({"PALETTE COLOR", "YBR_PARTIAL_422", "HSV", "ARGB", "CMYK", "XYB"})
_VOI_FUNCTIONS = frozenset({"LINEAR", "LINEAR_EXACT", "SIGMOID"})
# Functional-group macros that carry per-frame rescale and window in enhanced objects.
_RESCALE = "PixelValueTransformationSequence"
_VOI = "FrameVOILUTSequence"


def decode_dicom(data: bytes, options: DecodeOptions) -> DecodedMedia:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = _read(data)
        frames, index, photometric = _checked_header(ds, options)
        try:
            stored = pixel_array(ds, index=index)  # decodes this frame only
        except Exception as exc:
            raise ImageError(
                "image_undecodable", f"DICOM pixel data is not decodable ({type(exc).__name__})"
            ) from None
    notes = [f"frame {index} of {frames}"] if frames > 1 else []
    if photometric in _GREY:
        mapping = _grey_mapping(ds, index, photometric, options)
        pixels = _grey_to_uint8(stored, mapping, notes)
    else:
        pixels = scale_full_range(stored, 2 ** int(ds.BitsStored) - 1)
        notes.append(f"{photometric.lower()} colour as rgb")
    image = Image.fromarray(np.ascontiguousarray(pixels)).convert("RGB")
    return DecodedMedia([image], (int(ds.Columns), int(ds.Rows)), tuple(notes))


def _read(data: bytes) -> Dataset:
    try:
        return pydicom.dcmread(io.BytesIO(data), specific_tags=_TAGS)
    except Exception as exc:
        raise ImageError(
            "image_undecodable", f"not a readable DICOM file ({type(exc).__name__})"
        ) from None


def _checked_header(ds: Dataset, options: DecodeOptions) -> tuple[int, int, str]:
    """Caps, photometric and transfer syntax from the header: (frames, frame index, photometric)."""
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        raise ImageError("dicom_unsupported", "float pixel data (parametric maps)")
    if "PixelData" not in ds:
        # An image header without its pixels is a cut-off file; no header at all is a
        # non-image object (structured report, waveform...).
        if "Rows" in ds:
            raise ImageError("image_undecodable", "DICOM image without Pixel Data: truncated?")
        raise ImageError("dicom_unsupported", "no (7FE0,0010) Pixel Data: not a supported image")
    check_pixels(int(ds.get("Columns") or 0), int(ds.get("Rows") or 0), options)
    frames = int(ds.get("NumberOfFrames") or 1)
    check_frames(frames, options)
    index = frames // 2 if options.dicom_frame is None else options.dicom_frame
    if index >= frames:
        raise ImageError("option_out_of_range", f"frame {index} requested of {frames}")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in _GREY | _COLOUR:
        named = photometric if photometric in _OTHER else "unknown"
        raise ImageError("dicom_unsupported", f"photometric interpretation {named}")
    _check_transfer_syntax(ds)
    return frames, index, photometric


def _check_transfer_syntax(ds: Dataset) -> None:
    uid = ds.file_meta.get("TransferSyntaxUID")
    if uid is None:
        raise ImageError("dicom_unsupported", "no transfer syntax in the file meta")
    # Name only syntaxes pydicom knows; an unknown UID string is the file's own text.
    name = uid.name if uid.is_transfer_syntax else "an unknown transfer syntax"
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as exc:
        raise ImageError("dicom_unsupported", f"{name} is not supported") from exc
    if not decoder.is_available:
        raise ImageError("dicom_unsupported", f"{name}: no decoder for it is installed")


@dataclass(frozen=True)
class _GreyMapping:
    """Stored value -> display value for one greyscale frame (modality, then VOI)."""

    rescale: tuple[float, float] | None  # (slope, intercept) when the file has either
    window: tuple[float, float] | None  # (centre, width); None means min-max
    function: str  # VOI LUT Function: LINEAR, LINEAR_EXACT or SIGMOID
    invert: bool  # MONOCHROME1: 0 is white


def _grey_mapping(
    ds: Dataset, index: int, photometric: str, options: DecodeOptions
) -> _GreyMapping:
    slope = _first_number(_frame_value(ds, index, _RESCALE, "RescaleSlope"))
    intercept = _first_number(_frame_value(ds, index, _RESCALE, "RescaleIntercept"))
    rescale = None
    if slope is not None or intercept is not None:
        rescale = (1.0 if slope is None else slope, intercept or 0.0)
    function = str(_frame_value(ds, index, _VOI, "VOILUTFunction") or "").strip().upper()
    return _GreyMapping(
        rescale=rescale,
        window=options.dicom_window or _file_window(ds, index),
        function=function if function in _VOI_FUNCTIONS else "LINEAR",
        invert=photometric == "MONOCHROME1",
    )


def _grey_to_uint8(
    stored: npt.NDArray[np.generic], mapping: _GreyMapping, notes: list[str]
) -> npt.NDArray[np.uint8]:
    values = stored.astype(np.float32)
    if mapping.rescale is not None:
        slope, intercept = mapping.rescale
        values = values * np.float32(slope) + np.float32(intercept)
        notes.append(f"rescale slope={slope:g} intercept={intercept:g}")
    if mapping.window is None:
        pixels = scale_min_max(values)
        notes.append("window min-max")
    else:
        centre, width = mapping.window
        pixels = apply_window(values, centre, width, mapping.function)
        notes.append(f"window c={centre:g} w={width:g} {mapping.function.lower()}")
    if mapping.invert:  # MONOCHROME1 shows low values white: flip to MONOCHROME2's sense
        pixels = np.subtract(255, pixels, dtype=np.uint8)
        notes.append("monochrome1 inverted")
    return pixels


def _file_window(ds: Dataset, index: int) -> tuple[float, float] | None:
    centre = _first_number(_frame_value(ds, index, _VOI, "WindowCenter"))
    width = _first_number(_frame_value(ds, index, _VOI, "WindowWidth"))
    if centre is None or width is None or width <= 0:
        return None
    return centre, width


def _frame_value(ds: Dataset, index: int, sequence: str, keyword: str) -> Any:
    """The frame's functional-group value, else the shared group's, else the top-level one."""
    for groups_keyword, item in (
        ("PerFrameFunctionalGroupsSequence", index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = ds.get(groups_keyword)
        if groups is None or item >= len(groups):
            continue
        macro = groups[item].get(sequence)
        if macro and keyword in macro[0]:
            return macro[0].get(keyword)
    return ds.get(keyword)


def _first_number(value: Any) -> float | None:
    """First of a multi-valued DS, as a float; None when absent or not a number."""
    if value is None or value == "":
        return None
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
