"""DICOM as archives send it: pydicom's own bundled test files (``pydicom.data``), compressed,
palette, without preamble or file meta, cut short, and not images at all."""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import MPEG2MPML

from pocketvl.media import decode_media
from tests.support import media_samples as samples
from tests.support.media_samples import OPTIONS, pixels, refused


def bundled(name: str) -> bytes:
    path = get_testdata_file(name)
    assert isinstance(path, str), f"{name} is not bundled with this pydicom"
    with open(path, "rb") as handle:
        return handle.read()


def decoded(data: bytes) -> npt.NDArray[np.uint8]:
    return pixels(decode_media(data, "application/dicom", OPTIONS))


# (compressed file, lossless twin or None, transfer syntax named in pydicom's dictionary)
COMPRESSED = [
    ("MR_small_RLE.dcm", "MR_small.dcm", "RLE Lossless"),
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm", "JPEG-LS Lossless"),
    ("MR_small_jp2klossless.dcm", "MR_small.dcm", "JPEG 2000 (Lossless Only)"),
    ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle.dcm", "JPEG Lossless (Process 14, SV1)"),
    ("SC_rgb_jpeg_dcmtk.dcm", None, "JPEG Baseline"),
    ("examples_ybr_color.dcm", None, "JPEG Baseline, YBR_FULL_422"),
    ("JPGExtended.dcm", None, "JPEG Extended 12-bit"),
    ("JPEGLSNearLossless_16.dcm", None, "JPEG-LS Near-Lossless"),
    ("JPEG2000.dcm", None, "JPEG 2000"),
    ("image_dfl.dcm", None, "Deflated Explicit VR Little Endian"),
]


@pytest.mark.parametrize(("name", "twin", "syntax"), COMPRESSED, ids=[c[0] for c in COMPRESSED])
def test_compressed_transfer_syntaxes_decode(name: str, twin: str | None, syntax: str) -> None:
    image = decoded(bundled(name))
    assert image.std() > 5, f"{syntax}: the picture came out flat"
    if twin is not None:  # lossless: exactly the pixels of the uncompressed file
        assert np.array_equal(image, decoded(bundled(twin)))


def test_lossy_jpeg_stays_close_to_its_lossless_twin() -> None:
    lossy = decoded(bundled("SC_rgb_jpeg_dcmtk.dcm")).astype(int)
    lossless = decoded(bundled("SC_rgb_rle.dcm")).astype(int)
    assert lossy.shape == lossless.shape
    assert np.abs(lossy - lossless).mean() < 4


def test_palette_color_goes_through_the_colour_lookup_table() -> None:
    media = decode_media(bundled("examples_palette.dcm"), "application/dicom", OPTIONS)
    rgb = pixels(media).astype(int)
    assert media.original_size == (800, 350)
    assert "palette colour lookup applied" in media.notes
    # A palette picture is coloured: a grey rendering would have R == G == B everywhere.
    coloured = (np.abs(rgb[..., 0] - rgb[..., 1]) > 10) | (np.abs(rgb[..., 1] - rgb[..., 2]) > 10)
    assert coloured.mean() > 0.1
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 100


def test_files_without_preamble_or_file_meta_read_as_dicom() -> None:
    part10 = bundled("MR_small.dcm")
    reference = decoded(part10)
    assert np.array_equal(decoded(part10[128:]), reference)  # "DICM" first, no preamble
    assert np.array_equal(decoded(part10[132:]), reference)  # file meta first
    ds = pydicom.dcmread(io.BytesIO(part10))
    del ds.file_meta
    ds.preamble = None
    for implicit in (True, False):
        buffer = io.BytesIO()
        ds.save_as(buffer, implicit_vr=implicit, little_endian=True, enforce_file_format=False)
        assert np.array_equal(decoded(buffer.getvalue()), reference), implicit


@pytest.mark.parametrize(
    ("name", "sop_class"),
    [
        ("ExplVR_LitEndNoMeta.dcm", "RT Ion Plan Storage"),  # bare data sets, no file meta
        ("ExplVR_BigEndNoMeta.dcm", "RT Ion Plan Storage"),
        ("rtstruct.dcm", "RT Structure Set Storage"),
        ("test-SR.dcm", "SR Storage"),
        ("waveform_ecg.dcm", "ECG Waveform Storage"),
        ("rtplan_truncated.dcm", "RT Plan Storage"),
    ],
)
def test_objects_that_are_not_images_are_named(name: str, sop_class: str) -> None:
    error = refused(bundled(name), "application/dicom")
    assert error.reason == "dicom_unsupported"
    assert sop_class in str(error) and "holds no image" in str(error)


def test_a_dicom_cut_short_anywhere_is_undecodable() -> None:
    data = bundled("CT_small.dcm")
    pixel_tag = data.index(b"\xe0\x7f\x10\x00")
    last_pixel_byte = pixel_tag + 12 + 128 * 128 * 2  # explicit VR OW header, 128x128 16-bit
    reasons = {
        refused(data[:cut], "application/dicom").reason
        for cut in [*range(133, pixel_tag, 97), pixel_tag, pixel_tag + 40, last_pixel_byte - 1]
    }
    assert reasons == {"image_undecodable"}
    assert refused(bundled("MR_truncated.dcm"), "application/dicom").reason == "image_undecodable"


def test_undecodable_syntaxes_are_named() -> None:
    # pydicom's JPEG-lossy.dcm (12-bit extended) is one libjpeg cannot read.
    broken = refused(bundled("JPEG-lossy.dcm"), "application/dicom")
    assert broken.reason == "image_undecodable" and "JPEG Extended" in str(broken)
    video = samples.dicom_bytes(np.zeros((4, 4), np.uint16), transfer_syntax=MPEG2MPML)
    unsupported = refused(video, "application/dicom")
    assert unsupported.reason == "dicom_unsupported"
    assert "MPEG2 Main Profile / Main Level is not supported" in str(unsupported)


def test_a_stray_byte_before_the_data_set_is_not_dicom() -> None:
    # pydicom's no_meta.dcm starts with a 0x20 byte before its first tag: pydicom itself
    # reads it as one garbage element, so it is refused as not being DICOM.
    assert refused(bundled("no_meta.dcm"), "application/dicom").reason == "media_type_mismatch"


def test_element_values_never_reach_log_records_or_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An unknown character set is quoted by pydicom's logger and warnings; so is a bad CS.
    marked = {"SpecificCharacterSet": "Doe^Jane", "PatientName": "Doe^Jane", "PatientID": "12345"}
    with warnings.catch_warnings():  # pydicom warns while the samples are written
        warnings.simplefilter("ignore")
        files = [
            samples.dicom_bytes(np.arange(64, dtype=np.uint16).reshape(8, 8), marked),
            samples.dicom_bytes(np.zeros((8, 8), np.uint16), {"PhotometricInterpretation": "Doe"}),
        ]
    caplog.set_level(logging.DEBUG)
    caplog.clear()  # building the samples may log; only decoding counts
    with warnings.catch_warnings(record=True) as caught:  # the process's filters, recorded
        for data in files:
            try:
                decode_media(data, "application/dicom", OPTIONS)
            except Exception as error:
                assert not any(value in str(error) for value in samples.PHI)
    texts = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert [t for t in texts if any(value in t for value in samples.PHI)] == []
