"""Still pictures through Pillow: JPEG, PNG, WebP, and picture-style TIFFs (palette, CMYK...).

Colour follows InternVL's training pipeline, which ran ``Image.open(...).convert("RGB")``:
alpha is dropped, not composited, so the model sees what it was trained on. Two departures,
both fixes of what convert() gets wrong: EXIF orientation is applied (a phone photo is
otherwise sideways), and 16-bit greyscale is scaled to 8 bits (convert() clips it at 255).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import ExifTags, Image, ImageOps

from pocketvl.errors import ImageError
from pocketvl.media.options import (
    RGB_WORK_BYTES_PER_PIXEL,
    DecodedMedia,
    DecodeOptions,
    check_pixels,
    reserve_memory,
)
from pocketvl.media.scaling import scale_full_range

PIL_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP", "image/tiff": "TIFF"}
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


def open_image(data: bytes, media_type: str, options: DecodeOptions) -> Image.Image:
    """Open lazily (headers only), restricted to the declared format, and check the pixel cap.

    Pillow's own bomb check runs inside open(); past twice ``Image.MAX_IMAGE_PIXELS`` it
    refuses before ours does, which can only be stricter than ``options.max_pixels`` when
    the cap is set above about 179 megapixels.
    """
    try:
        with warnings.catch_warnings():
            # Our cap is the one that counts; Pillow's warning would only add log noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[PIL_FORMATS[media_type]])
    except Image.DecompressionBombError as exc:
        raise ImageError("too_many_pixels", f"over Pillow's bomb limit: {exc}") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError("image_undecodable", f"not a readable {media_type}: {exc}") from exc
    try:
        check_pixels(*image.size, options)
    except ImageError:
        image.close()
        raise
    reserve_memory(options, image.width * image.height * RGB_WORK_BYTES_PER_PIXEL)
    return image


def decode_still(data: bytes, media_type: str, options: DecodeOptions) -> DecodedMedia:
    with open_image(data, media_type, options) as image:
        original = image.size
        notes: list[str] = []
        frames = getattr(image, "n_frames", 1)
        if frames > 1:  # animated PNG / WebP: the first frame is the picture
            notes.append(f"first of {frames} frames")
        try:
            image.load()
            rgb = _to_rgb(_upright(image, notes), notes)
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise ImageError("image_undecodable", f"not a readable {media_type}: {exc}") from exc
    return DecodedMedia([rgb], original, tuple(notes))


def _upright(image: Image.Image, notes: list[str]) -> Image.Image:
    try:
        orientation = int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # a broken EXIF block should not cost the picture
        notes.append("exif unreadable: orientation not applied")
        return image
    if orientation not in range(2, 9):
        return image
    notes.append(f"exif orientation {orientation} applied")
    return ImageOps.exif_transpose(image)


def _to_rgb(image: Image.Image, notes: list[str]) -> Image.Image:
    if image.mode in _SIXTEEN_BIT_MODES:
        notes.append("16-bit scaled to 8-bit")
        return Image.fromarray(scale_full_range(np.asarray(image), 65535.0)).convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        notes.append("alpha dropped")
    elif image.mode == "CMYK":
        notes.append("cmyk converted to rgb")
    return image.convert("RGB")
