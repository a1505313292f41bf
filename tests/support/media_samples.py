"""Sample media for test_media, generated in memory: no binary fixtures.

Each builder returns the encoded bytes of a small file whose decoded pixels a test can
predict exactly (or within a codec's tolerance). ``pixels`` and ``refused`` read results.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Mapping

import av
import numpy as np
import numpy.typing as npt
import pytest
import tifffile
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels.utils import set_pixel_data
from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from pocketvl.errors import ImageError
from pocketvl.media import DecodedMedia, DecodeOptions, decode_media

PHI = ("Doe^Jane", "Doe", "Jane", "12345", "19700101")  # must never surface
OPTIONS = DecodeOptions(max_pixels=1_000_000)


def pixels(media: DecodedMedia, frame: int = 0) -> npt.NDArray[np.uint8]:
    """One decoded frame as an array, checking the contract that it is 8-bit RGB."""
    image = media.frames[frame]
    assert image.mode == "RGB"
    return np.asarray(image)


def refused(data: bytes, media_type: str, options: DecodeOptions = OPTIONS) -> ImageError:
    with pytest.raises(ImageError) as caught:
        decode_media(data, media_type, options)
    return caught.value


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def halves(width: int, height: int) -> Image.Image:
    """Left half red, right half blue: orientation shows in where the colours end up."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = (255, 0, 0)
    pixels[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(pixels)


def palette_image() -> Image.Image:
    """Palette index 1 everywhere, which is (10, 200, 30)."""
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 10, 200, 30])
    return image


def jpeg_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(halves(64, 32), "JPEG", quality=95, exif=exif.tobytes())


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header declaring width x height RGB with a near-empty IDAT: a pixel-bomb claim."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + png_chunk(b"IEND", b"")
    )


def tiff_claiming(width: int, height: int) -> bytes:
    """A little-endian TIFF IFD declaring width x height 16-bit, 4 bands, 16 bytes of data."""
    entries = [
        (256, 4, width),  # ImageWidth
        (257, 4, height),  # ImageLength
        (258, 3, 16),  # BitsPerSample
        (259, 3, 1),  # Compression: none
        (262, 3, 1),  # Photometric: MINISBLACK
        (273, 4, 0),  # StripOffsets, patched below
        (277, 3, 4),  # SamplesPerPixel
        (278, 4, height),  # RowsPerStrip
        (279, 4, 16),  # StripByteCounts
    ]
    data_offset = 8 + 2 + 12 * len(entries) + 4
    ifd = struct.pack("<H", len(entries))
    for tag, kind, declared in entries:
        value = data_offset if tag == 273 else declared
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, 1) + packed
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 4 + b"\x00" * 16


# ModelPixelScale and ModelTiepoint: what makes a TIFF a GeoTIFF (UTM-like metres).
GEO_TAGS = [
    (33550, 12, 3, (10.0, 10.0, 0.0), False),
    (33922, 12, 6, (0.0, 0.0, 0.0, 500000.0, 4000000.0, 0.0), False),
]


def four_band_ramps() -> npt.NDArray[np.uint16]:
    """(4, 16, 16) 16-bit bands: x ramp, y ramp, reversed x, reversed y (steps of 3000)."""
    y, x = np.mgrid[0:16, 0:16]
    steps = np.stack([x, y, 15 - x, 15 - y])
    ramps: npt.NDArray[np.uint16] = (steps * 3000 + 1000).astype(np.uint16)
    return ramps


def tiff_bytes(
    samples: npt.NDArray[np.generic], planarconfig: str | None = None, geo: bool = False
) -> bytes:
    """Grey / multi-band data as tifffile writes it (``planarconfig="separate"``: one plane
    per band, as GDAL's band-interleaved GeoTIFFs; "contig": pixel-interleaved)."""
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        samples,
        photometric="minisblack",
        planarconfig=planarconfig,
        extratags=GEO_TAGS if geo else None,
    )
    return buffer.getvalue()


def dicom_bytes(
    pixels: npt.NDArray[np.generic],
    attributes: Mapping[str, object] | None = None,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 16,
    transfer_syntax: UID = ExplicitVRLittleEndian,
) -> bytes:
    """A Secondary Capture Part 10 file; ``pixels`` is (rows, cols[, 3]) or (frames, ...)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    set_pixel_data(ds, pixels, photometric, bits_stored)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in (attributes or {}).items():
        setattr(ds, keyword, value)
    if transfer_syntax != ExplicitVRLittleEndian:
        # Any bytes will do: the decoder must refuse before it reads them.
        ds.file_meta.TransferSyntaxUID = transfer_syntax
        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 60])
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def recompressed(data: bytes, transfer_syntax: UID) -> bytes:
    """The same DICOM file, its pixel data really encoded with pydicom's own encoder."""
    ds = dcmread(io.BytesIO(data))
    ds.compress(transfer_syntax)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def video_bytes(container: str, codec: str, frames: int, size: tuple[int, int] = (64, 48)) -> bytes:
    """Frame i is a flat colour with red = 20 * i, so sampled frames can be told apart."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as output:
        stream = output.add_stream(codec, rate=10)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(frames):
            pixels = np.full((size[1], size[0], 3), (20 * index, 64, 64), np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return buffer.getvalue()


def well_formed() -> dict[str, bytes]:
    """One small, valid file per still media type."""
    picture = halves(32, 16)
    return {
        "image/jpeg": encode(picture, "JPEG"),
        "image/png": encode(picture, "PNG"),
        "image/webp": encode(picture, "WEBP"),
        "image/tiff": tiff_bytes(four_band_ramps(), planarconfig="separate"),
        "application/dicom": dicom_bytes(np.zeros((16, 16), np.uint16)),
    }
