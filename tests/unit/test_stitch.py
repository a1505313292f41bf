"""DriveLM six-camera stitching, its coordinate mapping, and the video frame helpers."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from pocketvl.vision.stitch import (
    CAMERAS,
    LABEL_COLOUR,
    VIDEO_FRAME_MAX_TILES,
    load_label_font,
    stitch_drivelm_views,
    stitched_to_camera,
    video_frame_prefix,
)
from pocketvl.vision.tiling import preprocess_image, tiles_uint8
from tests.support.stitch_geometry import camera_to_stitched

# One solid colour per camera, none of them near the magenta of the labels.
COLOURS = {
    "CAM_FRONT_LEFT": (200, 30, 30),
    "CAM_FRONT": (30, 200, 30),
    "CAM_FRONT_RIGHT": (30, 30, 200),
    "CAM_BACK_LEFT": (200, 200, 30),
    "CAM_BACK": (30, 200, 200),
    "CAM_BACK_RIGHT": (120, 120, 120),
}
CELLS = {  # camera -> (left, top) of its 896x448 cell
    "CAM_FRONT_LEFT": (0, 0),
    "CAM_FRONT": (896, 0),
    "CAM_FRONT_RIGHT": (1792, 0),
    "CAM_BACK_LEFT": (0, 448),
    "CAM_BACK": (896, 448),
    "CAM_BACK_RIGHT": (1792, 448),
}


@pytest.fixture(scope="module")
def solid_views() -> dict[str, Image.Image]:
    return {camera: Image.new("RGB", (1600, 900), colour) for camera, colour in COLOURS.items()}


@pytest.fixture(scope="module")
def stitched(solid_views: dict[str, Image.Image]) -> npt.NDArray[np.uint8]:
    image = stitch_drivelm_views(solid_views)
    assert image.size == (2688, 896)
    assert image.mode == "RGB"
    return np.asarray(image)


def is_label(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    label: npt.NDArray[np.bool_] = np.all(pixels == LABEL_COLOUR, axis=-1)
    return label


def test_each_camera_lands_in_its_cell(stitched: npt.NDArray[np.uint8]) -> None:
    for camera, (left, top) in CELLS.items():
        # Below the label strip the whole cell is the camera's colour.
        cell = stitched[top + 80 : top + 448, left : left + 896]
        assert np.all(cell == COLOURS[camera]), camera


def test_camera_name_is_drawn_in_magenta_at_each_top_left(stitched: npt.NDArray[np.uint8]) -> None:
    for camera, (left, top) in CELLS.items():
        label = is_label(stitched[top : top + 70, left : left + 200])
        assert label.sum() > 500, camera  # bold 50 px glyphs, solid magenta inside
        assert not is_label(stitched[top + 80 : top + 448, left : left + 896]).any()
    # Longer names reach further right: CAM_FRONT_RIGHT's label is wider than CAM_BACK's.
    front_right = is_label(stitched[0:70, 1792:2688]).any(axis=0).nonzero()[0].max()
    back = is_label(stitched[448:518, 896:1792]).any(axis=0).nonzero()[0].max()
    assert front_right > back


def test_views_of_any_size_are_resized_and_left_untouched() -> None:
    views = {camera: Image.new("RGB", (320, 240), colour) for camera, colour in COLOURS.items()}
    image = stitch_drivelm_views(views)
    assert image.size == (2688, 896)
    assert np.asarray(image)[300, 1300].tolist() == list(COLOURS["CAM_FRONT"])
    assert not is_label(np.asarray(views["CAM_FRONT"])).any()  # drawn on a copy


def test_missing_and_unknown_cameras_are_named(solid_views: dict[str, Image.Image]) -> None:
    five = {c: v for c, v in solid_views.items() if c != "CAM_BACK"}
    with pytest.raises(ValueError, match="CAM_BACK"):
        stitch_drivelm_views(five)
    with pytest.raises(ValueError, match="CAM_TOP"):
        stitch_drivelm_views({**solid_views, "CAM_TOP": solid_views["CAM_BACK"]})


def test_stitch_tiles_into_twelve_half_views_and_a_thumbnail(
    stitched: npt.NDArray[np.uint8],
) -> None:
    tiles = tiles_uint8(Image.fromarray(stitched), max_tiles=12)
    assert tiles.shape == (13, 448, 448, 3)
    # Each camera is two tiles wide: its left half, then its right half.
    row_major = [camera for camera in CAMERAS for _half in range(2)]
    for tile, camera in zip(tiles[:12], row_major, strict=True):
        assert tile[300, 200].tolist() == list(COLOURS[camera])


def test_missing_font_is_refused_with_a_fix() -> None:
    with pytest.raises(FileNotFoundError, match="fonts-dejavu"):
        load_label_font("NoSuchFont-Bold.ttf")


# --- coordinates ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x_norm", "y_norm", "expected"),
    [
        (500, 250, ("CAM_FRONT", 800.0, 450.0)),  # centre of the front camera
        (0, 0, ("CAM_FRONT_LEFT", 0.0, 0.0)),
        (1000, 1000, ("CAM_BACK_RIGHT", 1600.0, 900.0)),
        # x = 268.8 px in cell col 0 -> 480.0; y = 537.6 px, 89.6 into row 1 -> 180.0
        (100, 600, ("CAM_BACK_LEFT", 480.0, 180.0)),
        # x = 895.104 -> 1598.4; y = 99.456 -> 199.8
        (333, 111, ("CAM_FRONT_LEFT", 1598.4, 199.8)),
        # x = 2150.4, 358.4 into col 2 -> 640.0; y = 716.8, 268.8 into row 1 -> 540.0
        (800, 800, ("CAM_BACK_RIGHT", 640.0, 540.0)),
    ],
)
def test_known_points(x_norm: float, y_norm: float, expected: tuple[str, float, float]) -> None:
    assert stitched_to_camera(x_norm, y_norm) == expected


def test_named_camera_maps_relative_to_its_cell_and_clamps_as_the_evaluation() -> None:
    # The point lies in CAM_BACK_LEFT's cell, but the answer named CAM_FRONT.
    assert stitched_to_camera(100, 600, camera="CAM_FRONT") == ("CAM_FRONT", 0.0, 900.0)
    assert stitched_to_camera(1200, -50) == ("CAM_FRONT_RIGHT", 1600.0, 0.0)


def test_camera_to_stitched_known_values() -> None:
    assert camera_to_stitched("CAM_FRONT", 800, 450) == (500.0, 250.0)
    assert camera_to_stitched("CAM_BACK_RIGHT", 1600, 900) == (1000.0, 1000.0)
    assert camera_to_stitched("CAM_BACK_LEFT", 480, 180) == pytest.approx((100.0, 600.0))
    with pytest.raises(ValueError, match="CAM_SIDE"):
        camera_to_stitched("CAM_SIDE", 0, 0)


@pytest.mark.parametrize("camera", CAMERAS)
def test_round_trip_within_rounding(camera: str) -> None:
    for x_px in (0.0, 0.04, 123.45, 799.96, 1599.9, 1600.0):
        for y_px in (0.0, 17.77, 450.0, 899.95, 900.0):
            x_norm, y_norm = camera_to_stitched(camera, x_px, y_px)
            assert 0 <= x_norm <= 1000 and 0 <= y_norm <= 1000
            back = stitched_to_camera(x_norm, y_norm, camera=camera)
            assert back.camera == camera
            assert abs(back.x_px - x_px) <= 0.05 + 1e-9
            assert abs(back.y_px - y_px) <= 0.05 + 1e-9
            if x_px < 1600 and y_px < 900:  # inside the cell: the cell names the camera
                assert stitched_to_camera(x_norm, y_norm).camera == camera


def test_other_camera_sizes() -> None:
    x_norm, y_norm = camera_to_stitched("CAM_FRONT", 320, 180, camera_size=(640, 360))
    assert (x_norm, y_norm) == (500.0, 250.0)
    assert stitched_to_camera(x_norm, y_norm, camera_size=(640, 360)) == ("CAM_FRONT", 320, 180)


# --- video frames -----------------------------------------------------------------------------


def test_video_frame_prefix() -> None:
    assert video_frame_prefix(1) == "Frame1: <image>\n"
    assert video_frame_prefix(3) == "Frame1: <image>\nFrame2: <image>\nFrame3: <image>\n"
    with pytest.raises(ValueError, match="at least one frame"):
        video_frame_prefix(0)


def test_video_frames_are_one_tile_each_without_thumbnail() -> None:
    frames = [Image.new("RGB", (1280, 720), (i * 40, 0, 0)) for i in range(3)]
    # what the model does with a video layout: each frame under the layout's tile cap
    batch = np.concatenate([preprocess_image(f, VIDEO_FRAME_MAX_TILES) for f in frames])
    assert batch.shape == (3, 3, 448, 448)
    red = (np.array([0, 40, 80]) / 255 - 0.485) / 0.229
    np.testing.assert_allclose(batch[:, 0, 100, 100], red, atol=1e-5)
