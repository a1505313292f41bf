"""Types shared by every message: image references, decoding and generation parameters."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION: Final = "1"
ModelSize = Literal["1b", "2b", "4b"]
MediaType = Literal[
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/tiff",
    "application/dicom",
    "video/mp4",
    "video/webm",
    "video/quicktime",
]
VIDEO_MEDIA_TYPES: Final = ("video/mp4", "video/webm", "video/quicktime")

# The six nuScenes cameras of a DriveLM request, in the stitch's order (front row, back row).
DRIVELM_CAMERAS: Final = (
    "CAM_FRONT_LEFT",
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_BACK_LEFT",
    "CAM_BACK",
    "CAM_BACK_RIGHT",
)
CameraName = Literal[
    "CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"
]

EventId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Strict(BaseModel):
    """Base for contract models: unknown fields are errors, not silently dropped, and a
    float field refuses NaN and infinity (``1e999`` parses as infinity)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class InlineImage(Strict):
    """Image bytes carried in the message itself (base64), under the configured inline cap."""

    kind: Literal["inline"] = "inline"
    media_type: MediaType
    data_b64: str = Field(min_length=4, description="standard base64 of the encoded image file")
    name: str | None = Field(default=None, max_length=64, description="e.g. a camera name")


class ImageReference(Strict):
    """Claim check: the image lives elsewhere; the worker fetches it and checks its digest."""

    kind: Literal["ref"] = "ref"
    uri: str = Field(
        min_length=8,
        max_length=2048,
        description="file:// under a configured root, https:// from allowed hosts, "
        "or s3://bucket/key in an allowed bucket",
    )
    sha256: Sha256Hex
    media_type: MediaType
    size_bytes: int = Field(ge=1)
    name: str | None = Field(default=None, max_length=64, description="e.g. a camera name")


Image = Annotated[InlineImage | ImageReference, Field(discriminator="kind")]


def inline_image(data: bytes, media_type: str, name: str | None = None) -> dict[str, Any]:
    """The JSON of an inline image carrying ``data``, as a producer writes it."""
    image: dict[str, Any] = {
        "kind": "inline",
        "media_type": media_type,
        "data_b64": base64.b64encode(data).decode(),
    }
    if name is not None:
        image["name"] = name
    return image


class DecodeParams(Strict):
    """How to turn non-RGB sources into the 8-bit RGB the model was trained on."""

    bands: tuple[int, int, int] | None = Field(
        default=None, description="TIFF/GeoTIFF: 0-based band indices for R, G, B"
    )
    stretch_percentiles: tuple[float, float] = Field(
        default=(2.0, 98.0), description="TIFF/GeoTIFF: per-band percentile stretch to 0-255"
    )
    dicom_frame: int | None = Field(default=None, ge=0, description="multi-frame DICOM frame")
    dicom_window: tuple[float, float] | None = Field(
        default=None, description="DICOM (centre, width) override; default: from the file"
    )
    video_frames: int = Field(default=8, ge=1, le=64, description="frames sampled from a video")

    @model_validator(mode="after")
    def _ordered(self) -> DecodeParams:
        low, high = self.stretch_percentiles
        if not 0 <= low < high <= 100:
            raise ValueError("stretch_percentiles must be 0 <= low < high <= 100")
        if self.dicom_window is not None and self.dicom_window[1] <= 0:
            raise ValueError("dicom_window width must be positive")
        return self


class GenerationParams(Strict):
    """Decoding is greedy (as in the DA evaluations); these only bound the work."""

    max_new_tokens: int | None = Field(default=None, ge=1, le=1024)
    max_tiles: int | None = Field(default=None, ge=1, le=40)
