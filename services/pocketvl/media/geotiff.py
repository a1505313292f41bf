"""TIFF and GeoTIFF: 8/16/32-bit or float samples, 1..N bands, to one 8-bit RGB picture.

Two kinds of TIFF arrive. *Data* TIFFs (photometric MINISBLACK or RGB: what GDAL and satellite
pipelines write, often 16-bit and 4 to 13 bands) are read by tifffile into an array; three
bands are chosen and, unless already 8-bit, each is stretched between two percentiles. 8-bit
data is display-ready and is kept as stored, so an ordinary RGB TIFF keeps its colours.
*Picture* TIFFs (palette, MINISWHITE, CMYK, YCbCr, bilevel) need colour handling tifffile
does not do, so they take the Pillow path of the other still formats. Compressions tifffile
cannot decode without imagecodecs (LZW, JPEG) are read by Pillow into the same array path.

Georeferencing tags are ignored (noted): the model sees pixels, not coordinates.
"""

from __future__ import annotations

import io
import math

import numpy as np
import numpy.typing as npt
import tifffile
from PIL import Image
from tifffile import PHOTOMETRIC, TIFF

from pocketvl.errors import ImageError
from pocketvl.media.options import (
    RGB_WORK_BYTES_PER_PIXEL,
    DecodedMedia,
    DecodeOptions,
    check_pixels,
    reserve_memory,
)
from pocketvl.media.raster import decode_still, open_image
from pocketvl.media.scaling import stretch_percentiles
from pocketvl.media.tiff_header import count_pages

Samples = npt.NDArray[np.generic]  # (height, width, bands)

_DATA_PHOTOMETRICS = frozenset({PHOTOMETRIC.MINISBLACK, PHOTOMETRIC.RGB})
# ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory.
_GEO_TAGS = (33550, 33922, 34264, 34735)
# Bands are decoded together, and zlib makes a huge stack of them a small file: the decoded
# samples may take at most this many bytes per pixel of the cap (4 bands of 16 bits at
# the full cap, 320 MB at 40 MP; a 13-band 16-bit Sentinel-2 stack up to 12 MP).
_MAX_DECODED_BYTES_PER_CAP_PIXEL = 8


def decode_tiff(data: bytes, options: DecodeOptions) -> DecodedMedia:
    count_pages(data)  # page and tag caps from the header chain, before tifffile parses it
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages.first
            if page.photometric not in _DATA_PHOTOMETRICS or page.bitspersample == 1:
                samples = None
            else:
                samples = _read_samples(tif, data, options)
            georeferenced = any(code in page.tags for code in _GEO_TAGS)
    except ImageError:
        raise
    except Exception as exc:  # tifffile raises many kinds on hostile files
        raise ImageError(
            "image_undecodable", f"not a readable TIFF ({type(exc).__name__}: {exc})"
        ) from None
    if samples is None:
        return decode_still(data, "image/tiff", options)
    return _compose(samples, options, georeferenced)


def _read_samples(tif: tifffile.TiffFile, data: bytes, options: DecodeOptions) -> Samples:
    """Header sizes first (caps), then decode, as (height, width, bands)."""
    series = tif.series[0]
    axes, shape = series.axes, series.shape
    if "Y" not in axes or "X" not in axes:
        raise ImageError("image_undecodable", f"TIFF axes {axes!r} have no image plane")
    height, width = shape[axes.index("Y")], shape[axes.index("X")]
    check_pixels(width, height, options)
    bands = math.prod(shape) // (height * width)
    decoded = height * width * bands * series.dtype.itemsize
    if decoded > options.max_pixels * _MAX_DECODED_BYTES_PER_CAP_PIXEL:
        raise ImageError(
            "too_many_pixels",
            f"{width}x{height} with {bands} bands of {series.dtype} decodes to {decoded} bytes, "
            f"over the cap of {options.max_pixels * _MAX_DECODED_BYTES_PER_CAP_PIXEL}",
        )
    if not _tifffile_decodes(tif.pages.first.compression):
        reserve_memory(options, decoded)  # open_image reserves the RGB work on top
        return _pillow_samples(data, options)  # Pillow's libtiff has LZW and JPEG built in
    reserve_memory(options, decoded + height * width * RGB_WORK_BYTES_PER_PIXEL)
    planes = np.moveaxis(series.asarray(), (axes.index("Y"), axes.index("X")), (0, 1))
    return planes.reshape(height, width, bands)


def _tifffile_decodes(compression: int) -> bool:
    try:
        TIFF.DECOMPRESSORS[compression]  # a KeyError names the missing imagecodecs codec
    except KeyError:
        return False
    return True


def _pillow_samples(data: bytes, options: DecodeOptions) -> Samples:
    with open_image(data, "image/tiff", options) as image:
        try:
            image.load()
            samples = np.asarray(image)
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise ImageError(
                "image_undecodable", f"TIFF compression not readable here: {exc}"
            ) from exc
    return samples[:, :, np.newaxis] if samples.ndim == 2 else samples


def _compose(samples: Samples, options: DecodeOptions, georeferenced: bool) -> DecodedMedia:
    height, width, count = samples.shape
    if samples.dtype.kind not in "uif":
        raise ImageError("image_undecodable", f"TIFF sample type {samples.dtype} is not pixels")
    picked = pick_bands(count, options.bands)
    label = ",".join(str(band) for band in picked)
    if samples.dtype == np.uint8:
        rgb = samples[:, :, list(picked)]
        notes = [f"bands {label} 8-bit as stored"]
    else:
        low, high = options.stretch_percentiles
        stretched = {band: stretch_percentiles(samples[:, :, band], low, high) for band in picked}
        rgb = np.dstack([stretched[band] for band in picked])
        notes = [f"bands {label} stretched {low:g}-{high:g}%"]
    if georeferenced:
        notes.append("georeferencing ignored")
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    return DecodedMedia([image], (width, height), tuple(notes))


def pick_bands(count: int, requested: tuple[int, int, int] | None) -> tuple[int, int, int]:
    """The requested bands, else the first three, else band 0 for R, G and B."""
    if requested is None:
        return (0, 1, 2) if count >= 3 else (0, 0, 0)
    if max(requested) >= count:
        raise ImageError("option_out_of_range", f"bands {requested} but the TIFF has {count}")
    return requested
