"""Several pictures as one model input: the DriveLM six-camera stitch and video frames.

DriveLM is not fed as six images: the six nuScenes cameras
are stitched into one 2688x896 picture, exactly as InternVL's ``images_stitching.py`` did,
and the model answers with points normalised to 0-1000 over that whole picture. The
coordinate helpers map those points to and from per-camera pixels. Video is
one 448x448 tile per frame behind a ``Frame1: <image>`` style prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFont

from pocketvl.vision.tiling import resize_as_trained

# Stitch layout, row-major: row 0 looks forward, row 1 backward.
CAMERA_ROWS = (
    ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"),
    ("CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"),
)
CAMERAS = tuple(camera for row in CAMERA_ROWS for camera in row)
VIEW_SIZE = (896, 448)  # each camera in the stitch: two 448 tiles side by side
STITCHED_SIZE = (VIEW_SIZE[0] * 3, VIEW_SIZE[1] * 2)  # 2688x896: 6x2 tiles + thumbnail
CAMERA_SIZE = (1600, 900)  # nuScenes camera frames, what DriveLM's answers are in
LABEL_COLOUR = (255, 0, 255)
LABEL_FONT_FILE = "DejaVuSans-Bold.ttf"
LABEL_FONT_SIZE = 50
# images_stitching.py saved the stitch with Pillow's default JPEG quality; a producer that
# wants the training artefacts too encodes the stitch with this quality.
TRAINING_JPEG_QUALITY = 75

# Model-card form, no hyphen; see ``video_frame_prefix`` for why.
VIDEO_FRAME_LABEL = "Frame{index}: <image>\n"
VIDEO_FRAME_MAX_TILES = 1  # one tile per frame, so never a thumbnail


class CameraPoint(NamedTuple):
    camera: str
    x_px: float
    y_px: float


def load_label_font(path: str = LABEL_FONT_FILE) -> ImageFont.FreeTypeFont:
    """DejaVuSans-Bold at size 50, the training labels' font; load once and pass it down.

    A bare file name is looked up in the system font folders (Pillow walks
    ``/usr/share/fonts`` on Linux). No fallback font on purpose: another font draws other
    label pixels than the model was trained on, so a missing font is refused with a fix.
    """
    try:
        return ImageFont.truetype(path, LABEL_FONT_SIZE)
    except OSError as exc:
        raise FileNotFoundError(
            f"font {path!r} not found: install DejaVu fonts (Debian: fonts-dejavu-core) "
            "or pass the path of DejaVuSans-Bold.ttf"
        ) from exc


def stitch_drivelm_views(
    views: Mapping[str, Image.Image], font: ImageFont.FreeTypeFont | None = None
) -> Image.Image:
    """The six camera views as one labelled 2688x896 RGB picture (``CAMERA_ROWS`` layout).

    Each view is resized to 896x448 (BICUBIC, as trained) and its camera name drawn at its
    top-left corner in magenta. Missing or unknown camera names raise ValueError.
    """
    _check_cameras(views)
    font = font or load_label_font()
    stitched = Image.new("RGB", STITCHED_SIZE)
    for camera in CAMERAS:
        # convert() copies, so the label is never drawn on the caller's image.
        view = resize_as_trained(views[camera].convert("RGB"), VIEW_SIZE)
        ImageDraw.Draw(view).text((0, 0), camera, fill=LABEL_COLOUR, font=font)
        col, row = camera_cell(camera)
        stitched.paste(view, (col * VIEW_SIZE[0], row * VIEW_SIZE[1]))
    return stitched


def camera_cell(camera: str) -> tuple[int, int]:
    """(col, row) of a camera in the stitch."""
    for row, cameras in enumerate(CAMERA_ROWS):
        if camera in cameras:
            return cameras.index(camera), row
    raise ValueError(f"unknown camera {camera!r}; expected one of {', '.join(CAMERAS)}")


def stitched_to_camera(
    x_norm: float,
    y_norm: float,
    camera: str | None = None,
    camera_size: tuple[int, int] = CAMERA_SIZE,
) -> CameraPoint:
    """A model point (0-1000 over the whole stitch) in per-camera pixels.

    Arithmetic, clamping and ``round(..., 1)`` are the DriveLM evaluation's post-processor.
    The model names the camera in its answer (``<c1,CAM_FRONT,[x,y]>``): pass it to map as
    the evaluation does, relative to that camera's cell even when the point lies outside it
    (then clamped to the frame). Without it, the camera is the cell holding the point.
    """
    camera = camera or _camera_at(x_norm, y_norm)
    col, row = camera_cell(camera)
    width, height = camera_size
    x = (x_norm / 1000) * STITCHED_SIZE[0] - col * VIEW_SIZE[0]
    y = (y_norm / 1000) * STITCHED_SIZE[1] - row * VIEW_SIZE[1]
    x = x / VIEW_SIZE[0] * width
    y = y / VIEW_SIZE[1] * height
    return CameraPoint(
        camera, float(round(max(0, min(width, x)), 1)), float(round(max(0, min(height, y)), 1))
    )


def video_frame_prefix(n_frames: int) -> str:
    """``Frame1: <image>\\nFrame2: <image>\\n...`` to put before the question.

    The model card's and paper's form. InternVL's training video loader writes
    ``Frame-1: <image>`` instead, but only for samples loaded as video, and the BDD
    training data (not published) may just as well have been multi-image samples written
    like the model card; which form the DA-BDD models saw is not published.
    The card's form is what users of these checkpoints send, so it is the one used here.
    """
    if n_frames < 1:
        raise ValueError(f"need at least one frame, got {n_frames}")
    return "".join(VIDEO_FRAME_LABEL.format(index=i) for i in range(1, n_frames + 1))


def _camera_at(x_norm: float, y_norm: float) -> str:
    x = min(max(x_norm, 0.0), 1000.0) / 1000 * STITCHED_SIZE[0]
    y = min(max(y_norm, 0.0), 1000.0) / 1000 * STITCHED_SIZE[1]
    col = min(int(x // VIEW_SIZE[0]), len(CAMERA_ROWS[0]) - 1)
    row = min(int(y // VIEW_SIZE[1]), len(CAMERA_ROWS) - 1)
    return CAMERA_ROWS[row][col]


def _check_cameras(views: Mapping[str, Image.Image]) -> None:
    missing = [c for c in CAMERAS if c not in views]
    unknown = sorted(set(views) - set(CAMERAS))
    if missing or unknown:
        raise ValueError(
            "DriveLM stitch needs exactly the six nuScenes cameras: "
            f"missing {missing or 'none'}, unknown {unknown or 'none'}"
        )
