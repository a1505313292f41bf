"""Magic-byte checks: the bytes must be what the request declares, before any parser runs.

Sniffing first keeps each parser on the input it was chosen for: Pillow, tifffile, pydicom
and FFmpeg all probe formats on their own, and FFmpeg's probing in particular can reach
demuxers (playlists, concat lists) that read other files.
"""

from __future__ import annotations

from collections.abc import Callable

from pocketvl.errors import ImageError

# Top-level atoms that can open a QuickTime file; MP4 writers put ``ftyp`` first.
_QUICKTIME_ATOMS = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")


def _jpeg(data: bytes) -> bool:
    return data.startswith(b"\xff\xd8\xff")


def _png(data: bytes) -> bool:
    return data.startswith(b"\x89PNG\r\n\x1a\n")


def _webp(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def _tiff(data: bytes) -> bool:
    # Classic TIFF (42) and BigTIFF (43), either byte order.
    return data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _dicom(data: bytes) -> bool:
    """Part 10 (preamble, then "DICM"), a Part 10 file without its preamble, or a bare data
    set as older archives send it: its first element in group 0002 (file meta) or 0008
    (identification), little or big endian."""
    if data[128:132] == b"DICM" or data[:4] == b"DICM":
        return True
    return data[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08") and _dicom_tag(data)


def _dicom_tag(data: bytes) -> bool:
    # The element number is small (group length 0000, or an identification element), and
    # an explicit-VR element has two capital letters as its VR; implicit VR has a length.
    little = data[:1] != b"\x00"
    element = int.from_bytes(data[2:4], "little" if little else "big")
    vr = data[4:6]
    explicit = len(vr) == 2 and all(65 <= char <= 90 for char in vr)
    return element < 0x0100 and (explicit or len(data) >= 8)


def _mp4(data: bytes) -> bool:
    return data[4:8] == b"ftyp"


def _quicktime(data: bytes) -> bool:
    return data[4:8] in _QUICKTIME_ATOMS


def _webm(data: bytes) -> bool:
    return data.startswith(b"\x1a\x45\xdf\xa3")  # EBML header (WebM is a Matroska profile)


_SNIFFERS: dict[str, Callable[[bytes], bool]] = {
    "image/jpeg": _jpeg,
    "image/png": _png,
    "image/webp": _webp,
    "image/tiff": _tiff,
    "application/dicom": _dicom,
    "video/mp4": _mp4,
    "video/quicktime": _quicktime,
    "video/webm": _webm,
}

MEDIA_TYPES: frozenset[str] = frozenset(_SNIFFERS)


def check_declared_type(data: bytes, media_type: str) -> None:
    """Raise unless ``media_type`` is supported and the bytes carry its magic."""
    sniffer = _SNIFFERS.get(media_type)
    if sniffer is None:
        raise ImageError(
            "unsupported_media_type",
            f"{media_type[:80]!r} is not one of: {', '.join(sorted(MEDIA_TYPES))}",
        )
    if sniffer(data):
        return
    found = next((name for name, sniff in _SNIFFERS.items() if sniff(data)), "unknown data")
    raise ImageError("media_type_mismatch", f"declared {media_type} but the bytes are {found}")
