"""DICOM to one 8-bit RGB picture, with pydicom and its pixel-data plugins.

What archives send: Part 10 files, but also bare data sets (no preamble or file meta),
and mostly compressed pixel data. Native and deflated syntaxes and RLE are decoded by
pydicom itself; JPEG baseline, extended and lossless and JPEG-LS by pylibjpeg-libjpeg;
JPEG 2000 and HTJ2K by pylibjpeg-openjpeg. A bare data set's transfer syntax is the
encoding pydicom read it in (native pixel data only: compressed data needs its syntax).

Greyscale: Rescale Slope/Intercept, then the VOI window (the request's, else the file's first
Window Centre/Width, else min-max), then MONOCHROME1 inversion. Colour (RGB, YBR_*) is
converted to RGB by pydicom; PALETTE COLOR through the file's colour lookup table.
Multi-frame: one frame, the requested or the middle one; enhanced multi-frame objects take
rescale and window from their functional groups.

No patient data leaves this module. The file is read with ``specific_tags``, so patient,
study and equipment elements are skipped unparsed; messages and notes carry only sizes,
names from pydicom's own dictionary and numbers computed here, never element values,
dataset reprs or pydicom's exception texts. pydicom's logger and warnings (which quote
element values, e.g. an unknown character set) are silenced process-wide, and its
exceptions are not chained (``from None``): a logged traceback would print their text.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import pixel_array
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from pocketvl.errors import ImageError
from pocketvl.media.options import (
    RGB_WORK_BYTES_PER_PIXEL,
    DecodedMedia,
    DecodeOptions,
    check_frames,
    check_pixels,
    reserve_memory,
)
from pocketvl.media.scaling import apply_window, scale_full_range, scale_min_max

_PALETTE_TAGS = [
    f"{prefix}{colour}PaletteColorLookupTable{part}"
    for colour in ("Red", "Green", "Blue")
    for prefix, part in (("", "Descriptor"), ("", "Data"), ("Segmented", "Data"))
]
_TAGS = [
    *("Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration"),
    *("BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "NumberOfFrames"),
    *("ExtendedOffsetTable", "ExtendedOffsetTableLengths", "PixelData", "SOPClassUID"),
    *("FloatPixelData", "DoubleFloatPixelData"),  # read only to be refused by name
    *("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth", "VOILUTFunction"),
    *("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"),
    *_PALETTE_TAGS,
]
_GREY = frozenset({"MONOCHROME1", "MONOCHROME2"})
_COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420"})
_PALETTE = "PALETTE COLOR"
_OTHER = frozenset({"YBR_PARTIAL_422", "HSV", "ARGB", "CMYK", "XYB"})
_VOI_FUNCTIONS = frozenset({"LINEAR", "LINEAR_EXACT", "SIGMOID"})
# Functional-group macros that carry per-frame rescale and window in enhanced objects.
_RESCALE = "PixelValueTransformationSequence"
_VOI = "FrameVOILUTSequence"
# Words in the names of SOP classes that hold pixels; a known class without any of them
# (a report, waveform, plan, structure set) is not an image at all.
_IMAGE_CLASS_WORDS = ("Image", "Dose", "Volume", "Slide", "Tomosynthesis", "Photograph")
# Encodings of a bare data set (no file meta), as (implicit VR, little endian).
_BARE_SYNTAXES = {
    (True, True): ImplicitVRLittleEndian,
    (False, True): ExplicitVRLittleEndian,
    (False, False): ExplicitVRBigEndian,
}


def decode_dicom(data: bytes, options: DecodeOptions) -> DecodedMedia:
    ds = _read(data)
    frames, index, photometric = _checked_header(ds, options)
    syntax = _decodable_syntax(ds)
    try:
        stored = pixel_array(ds, index=index)  # decodes this frame only
    except Exception as exc:
        raise ImageError(
            "image_undecodable",
            f"{syntax.name} pixel data could not be decoded ({type(exc).__name__})",
        ) from None
    notes = [f"frame {index} of {frames}"] if frames > 1 else []
    if photometric in _GREY:
        mapping = _grey_mapping(ds, index, photometric, options)
        pixels = _grey_to_uint8(stored, mapping, notes)
    elif photometric == _PALETTE:
        pixels = _palette_to_rgb(stored, ds, notes)
    else:
        pixels = scale_full_range(stored, 2 ** int(ds.BitsStored) - 1)
        notes.append(f"{photometric.lower()} colour as rgb")
    image = Image.fromarray(np.ascontiguousarray(pixels)).convert("RGB")
    return DecodedMedia([image], (int(ds.Columns), int(ds.Rows)), tuple(notes))


def _read(data: bytes) -> Dataset:
    # "DICM" at 0 is a Part 10 file that lost its preamble: pydicom wants the meta at 0.
    body = data[4:] if data.startswith(b"DICM") else data
    try:
        return pydicom.dcmread(io.BytesIO(body), force=True, specific_tags=_TAGS)
    except Exception as exc:
        raise ImageError(
            "image_undecodable", f"not a readable DICOM file ({type(exc).__name__})"
        ) from None


def _checked_header(ds: Dataset, options: DecodeOptions) -> tuple[int, int, str]:
    """Caps and photometric from the header: (frames, frame index, photometric)."""
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        raise ImageError("dicom_unsupported", "float pixel data (parametric maps)")
    if "PixelData" not in ds:
        raise _without_pixels(ds)
    columns, rows = _number(ds, "Columns"), _number(ds, "Rows")
    check_pixels(columns, rows, options)
    frames = _number(ds, "NumberOfFrames") or 1
    check_frames(frames, options)
    stored = rows * columns * (_number(ds, "SamplesPerPixel") or 1)
    stored *= max(1, (_number(ds, "BitsAllocated") or 16) // 8)
    # The stored frames, their float windowing (4 bytes per sample) and the RGB work.
    reserve_memory(options, frames * stored + rows * columns * (4 + RGB_WORK_BYTES_PER_PIXEL))
    index = frames // 2 if options.dicom_frame is None else options.dicom_frame
    if index >= frames:
        raise ImageError("option_out_of_range", f"frame {index} requested of {frames}")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in _GREY | _COLOUR | {_PALETTE}:
        named = photometric if photometric in _OTHER else "unknown"
        raise ImageError("dicom_unsupported", f"photometric interpretation {named}")
    return frames, index, photometric


def _number(ds: Dataset, keyword: str) -> int:
    try:
        return int(ds.get(keyword) or 0)
    except (TypeError, ValueError):
        raise ImageError("image_undecodable", f"{keyword} is not a number") from None


def _without_pixels(ds: Dataset) -> ImageError:
    """No Pixel Data: a non-image object when its SOP class says so, else a cut-off file.

    pydicom stops quietly at the end of a truncated file, so "no pixels" is all it shows of
    a DICOM cut short anywhere before them.
    """
    sop_class = ds.file_meta.get("MediaStorageSOPClassUID") or ds.get("SOPClassUID")
    name = _dictionary_name(sop_class)
    if name is not None and not any(word in name for word in _IMAGE_CLASS_WORDS):
        return ImageError("dicom_unsupported", f"a {name} object holds no image")
    return ImageError("image_undecodable", "DICOM without Pixel Data: the file is cut short")


def _dictionary_name(uid: Any) -> str | None:
    """pydicom's dictionary name of a UID; never the file's own text."""
    if not isinstance(uid, str):
        return None
    name = UID(uid).name
    return None if name == str(uid) else name


def _decodable_syntax(ds: Dataset) -> UID:
    """The transfer syntax, inferred for a bare data set, and a decoder for it."""
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is None:
        encapsulated = ds["PixelData"].is_undefined_length
        implicit, little = ds.original_encoding
        known = not encapsulated and implicit is not None and little is not None
        syntax = _BARE_SYNTAXES.get((bool(implicit), bool(little))) if known else None
        if syntax is None:
            raise ImageError("dicom_unsupported", "compressed pixel data with no transfer syntax")
        ds.file_meta.TransferSyntaxUID = syntax
    # Name only syntaxes pydicom knows; an unknown UID string is the file's own text.
    name = syntax.name if syntax.is_transfer_syntax else "an unknown transfer syntax"
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise ImageError("dicom_unsupported", f"{name} is not supported") from None
    if not decoder.is_available:
        raise ImageError("dicom_unsupported", f"{name}: no decoder for it is installed")
    return UID(syntax)


def _palette_to_rgb(
    stored: npt.NDArray[np.generic], ds: Dataset, notes: list[str]
) -> npt.NDArray[np.uint8]:
    try:
        rgb = apply_color_lut(stored, ds)
    except Exception as exc:
        raise ImageError(
            "image_undecodable", f"PALETTE COLOR lookup table unusable ({type(exc).__name__})"
        ) from None
    notes.append("palette colour lookup applied")
    return scale_full_range(rgb, 255 if rgb.dtype == np.uint8 else 65535)


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
