"""Count a TIFF's pages from its header chain, before tifffile builds anything.

tifffile parses every page of the chain when it builds a series, and that work grows
faster than linearly with the page count: a few MB of tiny pages can hold a worker for tens
of seconds. This walk reads only the IFD headers (entry count and next offset), so its cost
is bounded by the caps, whatever the file claims.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pocketvl.errors import ImageError

MAX_PAGES = 64  # pages (IFDs) in the main chain: bands-as-pages and COG overviews fit
MAX_TAGS = 1024  # entries in one IFD: real pictures carry a few dozen


@dataclass(frozen=True)
class _Layout:
    order: str  # struct byte order: "<" or ">"
    count_format: str  # entry count: H (classic) or Q (BigTIFF)
    offset_format: str  # offsets: I (classic) or Q (BigTIFF)
    entry_size: int  # 12 (classic) or 20 (BigTIFF)
    first_offset: int


def _layout(data: bytes) -> _Layout:
    if len(data) < 8 or data[:2] not in (b"II", b"MM"):
        raise ImageError("image_undecodable", "not a TIFF header")
    order = "<" if data[:2] == b"II" else ">"
    (version,) = struct.unpack_from(order + "H", data, 2)
    if version == 42:
        (first,) = struct.unpack_from(order + "I", data, 4)
        return _Layout(order, "H", "I", 12, first)
    if version == 43 and len(data) >= 16:
        (first,) = struct.unpack_from(order + "Q", data, 8)
        return _Layout(order, "Q", "Q", 20, first)
    raise ImageError("image_undecodable", "not a TIFF header")


def count_pages(data: bytes, max_pages: int = MAX_PAGES, max_tags: int = MAX_TAGS) -> int:
    """Pages in the main IFD chain, refusing more than ``max_pages`` (``too_many_frames``)
    and IFDs with more than ``max_tags`` entries or that loop back (``image_undecodable``).
    A chain that runs past the end of the data stops there; tifffile reports that itself."""
    layout = _layout(data)
    count_size = struct.calcsize(layout.count_format)
    offset_size = struct.calcsize(layout.offset_format)
    seen: set[int] = set()
    offset = layout.first_offset
    while offset and offset + count_size <= len(data):
        if offset in seen:
            raise ImageError("image_undecodable", "the TIFF's page chain loops")
        seen.add(offset)
        if len(seen) > max_pages:
            raise ImageError(
                "too_many_frames", f"TIFF with more than {max_pages} pages; the cap is {max_pages}"
            )
        (entries,) = struct.unpack_from(layout.order + layout.count_format, data, offset)
        if entries > max_tags:
            raise ImageError("image_undecodable", f"a TIFF page with {entries} tags")
        next_at = offset + count_size + entries * layout.entry_size
        if next_at + offset_size > len(data):
            break
        (offset,) = struct.unpack_from(layout.order + layout.offset_format, data, next_at)
    return len(seen)
