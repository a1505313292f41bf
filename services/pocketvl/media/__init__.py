"""Untrusted media in, 8-bit RGB frames out: one safe, consistent path per format.

``decode_media(data, media_type, options)`` checks the declared type against the bytes'
magic, checks pixel and frame caps from headers before decoding, and decodes:

=====================  ==========================================  ============================
media type             decoder                                     module
=====================  ==========================================  ============================
image/jpeg, png, webp  Pillow; EXIF orientation, 16-bit scaled     :mod:`.raster`
image/tiff             tifffile (data) or Pillow (pictures)        :mod:`.geotiff`
application/dicom      pydicom; rescale, window, MONOCHROME1       :mod:`.dicom`
video/mp4, quicktime,  PyAV; frames sampled uniformly              :mod:`.video`
video/webm
=====================  ==========================================  ============================

Every failure is an :class:`~pocketvl.errors.ImageError` whose reason is one of
``unsupported_media_type``, ``media_type_mismatch``, ``image_undecodable``,
``video_undecodable``, ``dicom_unsupported``, ``too_many_pixels``, ``too_many_frames`` or
``option_out_of_range`` (a band, frame or window the request asked for does not exist).
"""

from __future__ import annotations

from pocketvl.errors import DlqReason, ImageError
from pocketvl.media.options import DecodedMedia, DecodeOptions
from pocketvl.media.quiet import quiet_decoders
from pocketvl.media.sniff import MEDIA_TYPES, check_declared_type

__all__ = ["MEDIA_TYPES", "DecodeOptions", "DecodedMedia", "decode_media"]

_VIDEO_TYPES = frozenset({"video/mp4", "video/quicktime", "video/webm"})


def decode_media(data: bytes, media_type: str, options: DecodeOptions) -> DecodedMedia:
    """Decode ``data`` declared as ``media_type`` into 8-bit RGB frames, or raise ImageError."""
    quiet_decoders()
    check_declared_type(data, media_type)
    undecodable: DlqReason = (
        "video_undecodable" if media_type in _VIDEO_TYPES else "image_undecodable"
    )
    try:
        return _decode(data, media_type, options)
    except ImageError:
        raise
    except Exception as exc:  # the last line of defence: no foreign exception escapes
        # Only the type, and no chained DICOM exception: a foreign message could quote file
        # metadata, and for DICOM that can be patient data.
        cause = None if media_type == "application/dicom" else exc
        message = f"{media_type} failed to decode ({type(exc).__name__})"
        raise ImageError(undecodable, message) from cause


def _decode(data: bytes, media_type: str, options: DecodeOptions) -> DecodedMedia:
    # Decoders are imported on first use: a worker that never sees video or DICOM never
    # loads FFmpeg or pydicom.
    if media_type == "image/tiff":
        from pocketvl.media.geotiff import decode_tiff

        return decode_tiff(data, options)
    if media_type == "application/dicom":
        from pocketvl.media.dicom import decode_dicom

        return decode_dicom(data, options)
    if media_type in _VIDEO_TYPES:
        from pocketvl.media.video import decode_video

        return decode_video(data, media_type, options)
    from pocketvl.media.raster import decode_still

    return decode_still(data, media_type, options)
