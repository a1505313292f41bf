"""decode_media: every format decoded to 8-bit RGB as documented, every hostile input refused
with its reason. All samples are generated in memory (tests/unit/media_samples.py)."""

from __future__ import annotations

import logging
import traceback
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import RLELossless

from pocketvl.errors import ImageError
from pocketvl.media import MEDIA_TYPES, DecodeOptions, decode_media
from pocketvl.media.options import RGB_WORK_BYTES_PER_PIXEL as RGB_WORK
from pocketvl.media.video import sample_indices
from tests.support import media_samples as samples
from tests.support.media_samples import OPTIONS, pixels, refused

# --- JPEG, PNG, WebP --------------------------------------------------------------------


def test_jpeg_exif_orientation_6_turns_the_pixels_upright() -> None:
    media = decode_media(samples.jpeg_with_orientation(6), "image/jpeg", OPTIONS)
    rgb = pixels(media)
    # 64x32 stored, displayed rotated 90 degrees clockwise: the left (red) half is on top.
    assert media.original_size == (64, 32) and media.frames[0].size == (32, 64)
    assert rgb[8, 16, 0] > 200 > rgb[8, 16, 2]
    assert rgb[56, 16, 2] > 200 > rgb[56, 16, 0]
    assert "exif orientation 6 applied" in media.notes


def test_cmyk_and_progressive_jpegs_come_out_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    red = pixels(decode_media(samples.encode(cmyk, "JPEG"), "image/jpeg", OPTIONS))
    assert red[8, 8, 0] > 230 and red[8, 8, 1] < 30 and red[8, 8, 2] < 30
    progressive = samples.encode(samples.halves(32, 16), "JPEG", progressive=True)
    rgb = pixels(decode_media(progressive, "image/jpeg", OPTIONS))
    assert rgb[8, 4, 0] > 230 and rgb[8, 28, 2] > 230


def test_png_rgba_drops_alpha_like_training_instead_of_compositing() -> None:
    transparent = Image.new("RGBA", (4, 4), (200, 100, 50, 0))
    media = decode_media(samples.encode(transparent, "PNG"), "image/png", OPTIONS)
    assert tuple(pixels(media)[0, 0]) == (200, 100, 50)  # composited onto black would be 0
    assert "alpha dropped" in media.notes


def test_png_16_bit_is_scaled_not_clipped_and_palette_and_grey_become_rgb() -> None:
    stored = np.array([[0, 257, 32896, 65535]], np.uint16)
    media = decode_media(samples.encode(Image.fromarray(stored), "PNG"), "image/png", OPTIONS)
    assert pixels(media)[0, :, 0].tolist() == [0, 1, 128, 255]
    assert pixels(media)[0, :, 1].tolist() == [0, 1, 128, 255]
    palette = samples.encode(samples.palette_image(), "PNG")
    assert pixels(decode_media(palette, "image/png", OPTIONS))[1, 1].tolist() == [10, 200, 30]
    grey = samples.encode(Image.new("L", (4, 4), 77), "PNG")
    assert pixels(decode_media(grey, "image/png", OPTIONS))[0, 0].tolist() == [77, 77, 77]


def test_webp_decodes() -> None:
    webp = samples.encode(samples.halves(32, 16), "WEBP", lossless=True)
    rgb = pixels(decode_media(webp, "image/webp", OPTIONS))
    assert tuple(rgb[8, 4]) == (255, 0, 0) and tuple(rgb[8, 28]) == (0, 0, 255)


# --- TIFF / GeoTIFF ---------------------------------------------------------------------


def test_16_bit_four_band_tiff_selects_bands_and_stretches_each() -> None:
    data = samples.tiff_bytes(samples.four_band_ramps(), planarconfig="separate")
    options = DecodeOptions(1_000_000, bands=(3, 2, 1), stretch_percentiles=(0, 100))
    media = decode_media(data, "image/tiff", options)
    rgb, (y, x) = pixels(media).astype(int), np.mgrid[0:16, 0:16]
    # A 0..100% stretch of a 16-step ramp maps step k to 17k exactly.
    assert (rgb[..., 0] == 17 * (15 - y)).all()  # band 3: reversed y
    assert (rgb[..., 1] == 17 * (15 - x)).all()  # band 2: reversed x
    assert (rgb[..., 2] == 17 * y).all()  # band 1: y
    assert media.original_size == (16, 16)
    assert media.notes == ("bands 3,2,1 stretched 0-100%",)
    missing = DecodeOptions(1_000_000, bands=(0, 1, 4))
    assert refused(data, "image/tiff", missing).reason == "option_out_of_range"


def test_13_band_pixel_interleaved_geotiff() -> None:
    x = np.mgrid[0:16, 0:16][1]
    bands = np.stack([(x + band) % 16 for band in range(13)], axis=-1) * 1000
    data = samples.tiff_bytes(bands.astype(np.uint16), planarconfig="contig", geo=True)
    options = DecodeOptions(1_000_000, bands=(12, 7, 0), stretch_percentiles=(0, 100))
    media = decode_media(data, "image/tiff", options)
    rgb = pixels(media).astype(int)
    for channel, band in enumerate((12, 7, 0)):
        assert (rgb[..., channel] == 17 * ((x + band) % 16)).all()
    assert media.notes == ("bands 12,7,0 stretched 0-100%", "georeferencing ignored")


def test_many_bands_count_against_the_pixel_cap_in_decoded_bytes() -> None:
    def stack(count: int, dtype: type[np.generic]) -> bytes:
        return samples.tiff_bytes(np.ones((count, 30, 30), dtype), planarconfig="separate")

    # 8 bytes per pixel of the cap: 8000 bytes, and a 30x30 band is 900 pixels
    options = DecodeOptions(max_pixels=1000)
    assert decode_media(stack(4, np.uint16), "image/tiff", options).original_size == (30, 30)
    assert refused(stack(5, np.uint16), "image/tiff", options).reason == "too_many_pixels"
    assert decode_media(stack(8, np.uint8), "image/tiff", options).original_size == (30, 30)
    assert refused(stack(9, np.uint8), "image/tiff", options).reason == "too_many_pixels"


def test_percentile_stretch_clips_both_tails() -> None:
    band = (np.arange(100, dtype=np.uint16) * 100).reshape(10, 10)  # 100 distinct values
    media = decode_media(samples.tiff_bytes(band), "image/tiff", OPTIONS)
    rgb = pixels(media)
    # 2nd / 98th percentiles are 198 and 9702; a single band is replicated to R, G and B.
    assert rgb[0, 1].tolist() == [0, 0, 0]  # value 100: below the 2nd percentile
    assert rgb[9, 8].tolist() == [255, 255, 255]  # value 9800: above the 98th
    assert rgb[5, 0, 0] == round((5000 - 198) / (9702 - 198) * 255)
    assert media.notes == ("bands 0,0,0 stretched 2-98%",)


def test_8_bit_tiffs_keep_their_colours_lzw_and_palette_through_pillow() -> None:
    picture = samples.halves(32, 16)
    for compression in (None, "tiff_lzw"):  # tifffile alone cannot decode LZW
        data = samples.encode(picture, "TIFF", compression=compression)
        media = decode_media(data, "image/tiff", OPTIONS)
        assert np.array_equal(pixels(media), np.asarray(picture))
        assert media.notes == ("bands 0,1,2 8-bit as stored",)
    palette = samples.encode(samples.palette_image(), "TIFF")  # a picture TIFF: Pillow's path
    assert pixels(decode_media(palette, "image/tiff", OPTIONS))[0, 0].tolist() == [10, 200, 30]


# --- DICOM ------------------------------------------------------------------------------

IDENTITY_WINDOW = (128.0, 256.0)  # LINEAR c=128 w=256 maps 0..255 onto itself


def test_dicom_monochrome2_applies_rescale_then_window() -> None:
    stored = np.array([[0, 512], [532, 1000]], np.uint16)
    rescale = {"RescaleSlope": 2, "RescaleIntercept": -1024}
    data = samples.dicom_bytes(stored, {**rescale, "WindowCenter": 40, "WindowWidth": 400})
    media = decode_media(data, "application/dicom", OPTIONS)
    # HU -1024, 0, 40, 976 through c=40 w=400: ((hu - 39.5) / 399 + 0.5) * 255, clipped.
    assert pixels(media)[..., 0].tolist() == [[0, 102], [128, 255]]
    assert media.notes == ("rescale slope=2 intercept=-1024", "window c=40 w=400 linear")
    overridden = DecodeOptions(1_000_000, dicom_window=(0.0, 2000.0))
    wide = pixels(decode_media(data, "application/dicom", overridden))[..., 0]
    assert wide.tolist() == [[0, 128], [133, 252]]
    two = {"WindowCenter": [50.5, 9000], "WindowWidth": [101, 1]}  # the first pair counts
    data = samples.dicom_bytes(np.array([[0, 100]], np.uint16), two)
    assert pixels(decode_media(data, "application/dicom", OPTIONS))[0, :, 0].tolist() == [0, 255]


def test_dicom_monochrome1_is_inverted_after_min_max() -> None:
    stored = np.array([[0, 100, 200, 250]], np.uint8)
    data = samples.dicom_bytes(stored, photometric="MONOCHROME1", bits_stored=8)
    media = decode_media(data, "application/dicom", OPTIONS)
    assert pixels(media)[0, :, 0].tolist() == [255, 153, 51, 0]
    assert media.notes == ("window min-max", "monochrome1 inverted")


def test_dicom_multi_frame_picks_the_middle_or_the_requested_frame() -> None:
    frames = np.stack([np.full((4, 4), 10 * f, np.uint8) for f in range(5)])
    data = samples.dicom_bytes(frames, bits_stored=8)
    middle = decode_media(
        data, "application/dicom", DecodeOptions(1_000_000, dicom_window=IDENTITY_WINDOW)
    )
    assert pixels(middle)[0, 0, 0] == 20 and "frame 2 of 5" in middle.notes
    options = DecodeOptions(1_000_000, dicom_frame=4, dicom_window=IDENTITY_WINDOW)
    assert pixels(decode_media(data, "application/dicom", options))[0, 0, 0] == 40
    past_end = DecodeOptions(1_000_000, dicom_frame=5)
    assert refused(data, "application/dicom", past_end).reason == "option_out_of_range"
    few = DecodeOptions(1_000_000, max_frames=4)
    assert refused(data, "application/dicom", few).reason == "too_many_frames"


def test_dicom_rgb_passes_through_and_rle_is_decoded() -> None:
    colour = np.zeros((4, 6, 3), np.uint8)
    colour[..., 0], colour[..., 1], colour[..., 2] = 10, 150, 250
    data = samples.dicom_bytes(colour, photometric="RGB", bits_stored=8)
    media = decode_media(data, "application/dicom", OPTIONS)
    assert np.array_equal(pixels(media), colour) and media.original_size == (6, 4)
    rle = samples.recompressed(samples.dicom_bytes(np.array([[0, 100]], np.uint16)), RLELossless)
    decoded = decode_media(rle, "application/dicom", OPTIONS)
    assert pixels(decoded)[0, :, 0].tolist() == [0, 255]


def test_dicom_patient_data_never_reaches_notes_messages_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    patient = {"PatientName": "Doe^Jane", "PatientID": "12345", "PatientBirthDate": "19700101"}
    data = samples.dicom_bytes(np.arange(64, dtype=np.uint16).reshape(8, 8), patient)
    texts = list(decode_media(data, "application/dicom", OPTIONS).notes)
    variants = [data[:cut] for cut in range(132, len(data), 9)]
    variants += [data[:at] + b"\xff\xff" + data[at + 2 :] for at in range(132, len(data), 11)]
    with warnings.catch_warnings(record=True) as caught:  # the process's filters, recorded
        for variant in variants:
            try:
                texts.extend(decode_media(variant, "application/dicom", OPTIONS).notes)
            except ImageError as error:  # any other exception type fails the test
                # The whole traceback, as a worker's logger.exception would print it.
                texts.append(f"{error.reason} " + "".join(traceback.format_exception(error)))
    texts += [str(w.message) for w in caught] + [record.getMessage() for record in caplog.records]
    assert any("image_undecodable" in text for text in texts)
    leaked = [text for text in texts if any(value in text for value in samples.PHI)]
    assert leaked == []


# --- Video ------------------------------------------------------------------------------


def test_sample_indices_are_uniform_and_distinct() -> None:
    assert sample_indices(12, 4) == [0, 4, 7, 11]
    assert sample_indices(3, 8) == [0, 1, 2]
    assert sample_indices(0, 8) == []


VIDEOS = {
    "video/mp4": ("mp4", "libx264"),
    "video/webm": ("webm", "libvpx"),
    "video/quicktime": ("mov", "mpeg4"),
}


@pytest.mark.parametrize("media_type", sorted(VIDEOS))
def test_video_samples_frames_uniformly_in_order(media_type: str) -> None:
    data = samples.video_bytes(*VIDEOS[media_type], frames=12)
    media = decode_media(data, media_type, DecodeOptions(1_000_000, video_frames=4))
    reds = [int(pixels(media, i)[24, 32, 0]) for i in range(len(media.frames))]
    assert len(reds) == 4 and media.original_size == (64, 48)
    for red, index in zip(reds, (0, 4, 7, 11), strict=True):
        assert abs(red - 20 * index) <= 12
    assert media.notes == ("4 of 12 frames sampled uniformly",)


def test_video_frame_and_pixel_caps_are_checked_before_decoding() -> None:
    data = samples.video_bytes("mp4", "libx264", frames=12)
    frames = refused(data, "video/mp4", DecodeOptions(1_000_000, max_frames=8))
    # "more than": the packet count refused it; the decode pass would say "over the cap".
    assert frames.reason == "too_many_frames" and "more than the cap of 8" in str(frames)
    assert refused(data, "video/mp4", DecodeOptions(64 * 48 - 1)).reason == "too_many_pixels"
    assert len(decode_media(data, "video/mp4", DecodeOptions(64 * 48, max_frames=12)).frames) == 8


def test_corrupt_videos_are_video_undecodable() -> None:
    data = samples.video_bytes("mp4", "libx264", frames=12)
    assert refused(data[: len(data) // 2], "video/mp4").reason == "video_undecodable"
    assert refused(data[:12] + b"\x00" * 400, "video/mp4").reason == "video_undecodable"
    assert refused(b"\x1a\x45\xdf\xa3" + b"\x07" * 300, "video/webm").reason == "video_undecodable"


# --- Hostile input common to all formats -----------------------------------------------


@pytest.mark.parametrize("media_type", sorted(samples.well_formed()))
def test_truncated_files_are_undecodable(media_type: str) -> None:
    data = samples.well_formed()[media_type]
    assert decode_media(data, media_type, OPTIONS).frames  # the whole file is fine
    assert refused(data[: len(data) * 2 // 3], media_type).reason == "image_undecodable"


def test_declared_type_must_match_the_bytes() -> None:
    files = samples.well_formed()
    error = refused(files["image/png"], "image/jpeg")
    assert error.reason == "media_type_mismatch" and "image/png" in str(error)
    assert refused(files["image/tiff"], "application/dicom").reason == "media_type_mismatch"
    assert refused(files["image/jpeg"], "video/mp4").reason == "media_type_mismatch"
    assert refused(b"", "image/webp").reason == "media_type_mismatch"
    assert refused(files["image/png"], "image/gif").reason == "unsupported_media_type"
    assert "image/gif" not in MEDIA_TYPES


def test_pixel_bombs_are_refused_from_the_header() -> None:
    # The files hold a few bytes of pixel data: decoding would fail as image_undecodable,
    # so too_many_pixels shows the cap was applied before any decoding.
    for width, height in ((30_000, 30_000), (2_000, 1_000)):
        assert refused(samples.png_claiming(width, height), "image/png").reason == "too_many_pixels"
        tiff = samples.tiff_claiming(width, height)
        assert refused(tiff, "image/tiff").reason == "too_many_pixels"
    dicom = samples.dicom_bytes(np.zeros((40, 30), np.uint16))  # Rows x Columns = 1200
    assert refused(dicom, "application/dicom", DecodeOptions(1199)).reason == "too_many_pixels"
    assert decode_media(dicom, "application/dicom", DecodeOptions(1200)).original_size == (30, 40)


def test_invalid_options_are_image_errors() -> None:
    invalid: list[Callable[[], DecodeOptions]] = [
        lambda: DecodeOptions(0),
        lambda: DecodeOptions(1000, video_frames=0),
        lambda: DecodeOptions(1000, stretch_percentiles=(98.0, 2.0)),
        lambda: DecodeOptions(1000, bands=(-1, 0, 0)),
        lambda: DecodeOptions(1000, dicom_window=(40.0, 0.0)),
    ]
    for build in invalid:
        with pytest.raises(ImageError) as caught:
            build()
        assert caught.value.reason == "option_out_of_range"


@pytest.mark.parametrize(
    ("media_type", "data", "expected"),
    [
        ("image/png", samples.encode(samples.halves(32, 16), "PNG"), 32 * 16 * RGB_WORK),
        # 4 bands of 16 bits decoded, then the RGB work
        (
            "image/tiff",
            samples.tiff_bytes(samples.four_band_ramps(), "separate"),
            16 * 16 * (8 + RGB_WORK),
        ),
        # the stored 16-bit frame, its float window, then the RGB work
        (
            "application/dicom",
            samples.dicom_bytes(np.zeros((16, 16), np.uint16)),
            16 * 16 * (2 + 4 + RGB_WORK),
        ),
    ],
)
def test_each_frame_reserves_its_memory_from_the_header_before_decoding(
    media_type: str, data: bytes, expected: int
) -> None:
    asked: list[int] = []
    decode_media(data, media_type, DecodeOptions(max_pixels=1_000_000, reserve=asked.append))
    assert asked == [expected]


def test_a_frame_over_the_pixel_cap_is_refused_before_reserving_anything() -> None:
    asked: list[int] = []
    options = DecodeOptions(max_pixels=1_000_000, reserve=asked.append)
    assert refused(samples.png_claiming(5000, 5000), "image/png", options).reason == (
        "too_many_pixels"
    )
    assert asked == []


def test_a_tiff_decoded_by_pillow_reserves_its_rgb_work_once() -> None:
    asked: list[int] = []
    data = samples.encode(samples.halves(32, 16), "TIFF", compression="tiff_lzw")
    decode_media(data, "image/tiff", DecodeOptions(max_pixels=1_000_000, reserve=asked.append))
    assert asked == [32 * 16 * 3, 32 * 16 * RGB_WORK]  # the decoded samples, then the RGB work
